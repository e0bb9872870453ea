//! Hostile clients on the TLS port: garbage and plain HTTP where a TLS
//! handshake belongs, and handshakes that never finish. Each is refused or
//! timed out without disturbing a subscribed client, and a handshake in
//! progress counts toward the budget of upgrades under way.

use std::time::Duration;

use odin_harness::wait::{LIMIT, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::support::{TlsStack, receives};

/// Writes `bytes` to `addr` and waits until the server closes the socket.
async fn closed_after_sending(addr: std::net::SocketAddr, bytes: &[u8]) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    let mut sink = Vec::new();
    // A TLS alert or nothing, then the end (or a reset).
    let _ = timeout(LIMIT, socket.read_to_end(&mut sink))
        .await
        .expect("the server closes the socket");
}

#[tokio::test]
async fn garbage_and_plain_http_on_the_tls_ports_are_refused_and_disturb_no_one() {
    let mut stack = TlsStack::start().await;
    let mut control = stack.subscribed_client().await;
    let ws = stack.endpoint().ws_addr;
    let http = stack.endpoint().http_addr;

    let plain = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n";
    let garbage = [0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad, 0xbe, 0xef];
    for _ in 0..20 {
        closed_after_sending(ws, plain).await;
        closed_after_sending(ws, &garbage).await;
        closed_after_sending(http, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
        closed_after_sending(http, &garbage).await;
    }
    let stats = stack
        .endpoint()
        .wait_for_stats(LIMIT, |s| s.tls_handshake_failures >= 40)
        .await
        .unwrap();
    assert_eq!(stats.connection_count, 1, "{stats:?}");

    let nonce = stack.publisher.price("BTC", 5.0).await;
    receives(&mut control, &nonce).await;
    assert_eq!(control.stats().connects, 1);
    // HTTPS still answers.
    let health = stack.endpoint().get("/health").await.unwrap();
    assert_eq!(health.status, 200, "{health:?}");
}

/// `odin_upgrades_refused_total` from `/metrics` (over HTTPS).
async fn upgrades_refused(stack: &TlsStack) -> u64 {
    let metrics = stack.endpoint().get("/metrics").await.unwrap().body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("odin_upgrades_refused_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no odin_upgrades_refused_total in\n{metrics}"))
}

#[tokio::test]
async fn a_handshake_that_never_finishes_holds_an_upgrade_slot_until_the_handshake_timeout() {
    let mut stack = TlsStack::start_with(|config| {
        config.max_pending_upgrades = 2;
        config.handshake_timeout = Duration::from_secs(2);
    })
    .await;
    let mut control = stack.subscribed_client().await;
    let ws = stack.endpoint().ws_addr;

    // Two sockets that start a TLS record and never finish it take both
    // slots of upgrades under way.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(ws).await.unwrap();
        socket
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();
        stalled.push(socket);
    }
    // A third is dropped at accept: the handshakes count toward the budget.
    eventually(LIMIT, "a connection dropped at accept", async || {
        let mut socket = TcpStream::connect(ws).await.ok()?;
        let mut byte = [0u8; 1];
        let read = timeout(Duration::from_millis(500), socket.read(&mut byte)).await;
        let refused = upgrades_refused(&stack).await;
        (matches!(read, Ok(Ok(0)) | Ok(Err(_))) && refused > 0).then_some(())
    })
    .await;

    // The handshake timeout closes both stalled sockets.
    for mut socket in stalled {
        let mut sink = Vec::new();
        let _ = timeout(LIMIT, socket.read_to_end(&mut sink))
            .await
            .expect("a stalled handshake is closed at the handshake timeout");
    }
    // Then the slots are free again, and the control client never noticed.
    let mut late = stack.subscribed_client().await;
    let nonce = stack.publisher.price("BTC", 6.0).await;
    receives(&mut control, &nonce).await;
    receives(&mut late, &nonce).await;
    assert_eq!(control.stats().connects, 1);
}
