//! The reference client on a real socket against the fake server: connect,
//! subscribe, de-dup, every close code, refused upgrades, stalled
//! handshakes, shutdown, and the closure (load-test) mode.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use odin_harness::client::{
    Client, ClientConfig, ClientEvent, MessageKind, MessageView, TestClient,
};
use odin_harness::wait::LIMIT;
use odin_protocol::ServerMessage;
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::peer::{FakeServer, heartbeat, market, price};

/// Channels every test client subscribes to.
const CHANNELS: [&str; 2] = ["token.BTC", "market"];

/// A config with millisecond back-off so reconnects are quick.
fn config(server: &FakeServer) -> ClientConfig {
    ClientConfig::new(server.url(), CHANNELS)
        .with_backoff(Duration::from_millis(5), Duration::from_millis(40))
}

/// A token source minting `tok-1`, `tok-2`, … one per attempt.
fn minted_tokens() -> (
    impl Fn() -> String + Send + Sync + 'static,
    Arc<AtomicUsize>,
) {
    let minted = Arc::new(AtomicUsize::new(0));
    let counter = minted.clone();
    let source = move || format!("tok-{}", counter.fetch_add(1, Ordering::SeqCst) + 1);
    (source, minted)
}

fn nonce_of(message: &ServerMessage) -> String {
    message.nonce().to_string()
}

#[tokio::test]
async fn subscribes_then_delivers_each_nonce_once_with_its_latency() {
    let mut server = FakeServer::start().await;
    let (tokens, _) = minted_tokens();
    let mut client = TestClient::spawn(config(&server), tokens);
    let mut conn = server.accept().await;
    assert_eq!(conn.token().as_deref(), Some("tok-1"));
    let req = conn.handshake().await;
    assert_eq!(req.channels, CHANNELS);
    let ack = client.wait_subscribed(LIMIT).await.unwrap();
    assert_eq!(ack.channels, CHANNELS);
    assert!(client.stats().live);

    conn.send(&price("BTC", "n1", 1.0)).await;
    conn.send(&price("BTC", "n1", 1.0)).await;
    conn.send(&market("n2")).await;
    let first = client
        .wait_for("n1", LIMIT, |e| match e {
            ClientEvent::Message {
                message,
                latency_us,
            } => Some((message, latency_us)),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(nonce_of(&first.0), "n1");
    assert!((0..5_000_000).contains(&first.1), "latency {} µs", first.1);
    let dup = client
        .wait_for("duplicate", LIMIT, |e| match e {
            ClientEvent::Duplicate { nonce } => Some(nonce),
            ClientEvent::Message { message, .. } => {
                panic!("delivered {message:?} before the duplicate")
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(dup, "n1");
    assert_eq!(nonce_of(&client.next_message(LIMIT).await.unwrap()), "n2");

    let stats = client.stats();
    assert_eq!(
        (stats.received, stats.delivered, stats.duplicates),
        (3, 2, 1)
    );
    assert_eq!(
        (stats.connects, stats.reconnects, stats.connect_failures),
        (1, 0, 0)
    );
    client.shutdown(LIMIT).await.unwrap();
}

#[tokio::test]
async fn every_server_close_leads_to_a_fresh_token_a_resubscribe_and_no_repeated_snapshot() {
    let mut server = FakeServer::start().await;
    let (tokens, minted) = minted_tokens();
    let mut client = TestClient::spawn(config(&server), tokens);
    let mut conn = server.accept().await;
    conn.handshake().await;
    client.wait_subscribed(LIMIT).await.unwrap();
    conn.send(&price("BTC", "p-0", 100.0)).await;
    client.next_message(LIMIT).await.unwrap();

    // Going away, token expired, no pong, slow consumer, and a dead socket.
    let closes = [Some(1001), Some(4001), Some(4002), Some(4008), None];
    for (round, code) in closes.into_iter().enumerate() {
        match code {
            Some(code) => conn.close(code).await,
            None => drop(conn),
        }
        assert_eq!(client.wait_disconnected(LIMIT).await.unwrap(), code);
        conn = server.accept().await;
        assert_eq!(
            conn.token(),
            Some(format!("tok-{}", round + 2)),
            "no fresh token"
        );
        let req = conn.handshake().await;
        assert_eq!(req.channels, CHANNELS, "did not re-subscribe");
        client.wait_subscribed(LIMIT).await.unwrap();
        // The snapshot repeats the latest price the client already has…
        conn.send(&price("BTC", &format!("p-{round}"), 100.0)).await;
        // …and then a new one follows.
        let next = format!("p-{}", round + 1);
        conn.send(&price("BTC", &next, 101.0)).await;
        let got = client
            .wait_for(&next, LIMIT, |e| match e {
                ClientEvent::Message { message, .. } => Some(message),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(
            nonce_of(&got),
            next,
            "the snapshot repeat was delivered again"
        );
    }
    let stats = client.stats();
    assert_eq!(stats.reconnects, 5);
    assert_eq!(stats.disconnects, 5);
    assert_eq!(stats.duplicates, 5);
    assert_eq!(stats.delivered, 6);
    assert_eq!(stats.last_close_code, Some(4008));
    assert_eq!(minted.load(Ordering::SeqCst), 6);
    client.shutdown(LIMIT).await.unwrap();
}

#[tokio::test]
async fn refused_upgrades_are_retried_with_growing_capped_back_off() {
    let mut server = FakeServer::start().await;
    server.refuse_next(4);
    let (tokens, _) = minted_tokens();
    let mut client = TestClient::spawn(config(&server), tokens);
    let ceilings = [5, 10, 20, 40].map(Duration::from_millis);
    for ceiling in ceilings {
        let status = client
            .wait_for("connect failure", LIMIT, |e| match e {
                ClientEvent::ConnectFailed { status, .. } => Some(status),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(status, Some(401));
        let delay = client
            .wait_for("back-off", LIMIT, |e| match e {
                ClientEvent::BackingOff { delay } => Some(delay),
                _ => None,
            })
            .await
            .unwrap();
        assert!(delay <= ceiling, "waited {delay:?}, ceiling {ceiling:?}");
    }
    let mut conn = server.accept().await;
    assert_eq!(conn.token().as_deref(), Some("tok-5"));
    conn.handshake().await;
    client.wait_subscribed(LIMIT).await.unwrap();
    let stats = client.stats();
    assert_eq!((stats.connect_failures, stats.connects), (4, 1));
    client.shutdown(LIMIT).await.unwrap();
}

#[tokio::test]
async fn a_server_that_never_establishes_is_left_and_retried() {
    let mut server = FakeServer::start().await;
    let (tokens, _) = minted_tokens();
    let cfg = config(&server).with_timeouts(Duration::from_millis(200));
    let mut client = TestClient::spawn(cfg, tokens);
    let silent = server.accept().await;
    assert_eq!(client.wait_disconnected(LIMIT).await.unwrap(), None);
    let mut conn = server.accept().await;
    drop(silent);
    conn.handshake().await;
    client.wait_subscribed(LIMIT).await.unwrap();
    client.shutdown(LIMIT).await.unwrap();
}

#[tokio::test]
async fn invalid_frames_are_counted_and_the_connection_carries_on() {
    let mut server = FakeServer::start().await;
    let (tokens, _) = minted_tokens();
    let mut client = TestClient::spawn(config(&server), tokens);
    let mut conn = server.accept().await;
    conn.handshake().await;
    client.wait_subscribed(LIMIT).await.unwrap();
    conn.send_raw(Message::binary(vec![1, 2, 3])).await;
    conn.send_text("not json".into()).await;
    conn.send_text(r#"{"type":"price_update","tokenId":"BTC"}"#.into())
        .await;
    conn.send(&price("BTC", "ok", 1.0)).await;
    for _ in 0..3 {
        client
            .wait_for("invalid frame", LIMIT, |e| {
                matches!(e, ClientEvent::Invalid { .. }).then_some(())
            })
            .await
            .unwrap();
    }
    assert_eq!(nonce_of(&client.next_message(LIMIT).await.unwrap()), "ok");
    assert_eq!(client.stats().invalid_frames, 3);
    client.shutdown(LIMIT).await.unwrap();
}

#[tokio::test]
async fn heartbeats_keep_a_connection_and_silence_ends_it() {
    let mut server = FakeServer::start().await;
    let (tokens, _) = minted_tokens();
    // Silent for 2.5 × 40 ms = 100 ms is dead.
    let mut client = TestClient::spawn(config(&server), tokens);
    let mut conn = server.accept().await;
    conn.heartbeat_ms = 40;
    conn.handshake().await;
    client.wait_subscribed(LIMIT).await.unwrap();
    // 300 ms of heartbeats every 20 ms: three silence limits, never silent.
    for _ in 0..15 {
        conn.send(&heartbeat()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client.stats().disconnects,
        0,
        "a heartbeating server was given up"
    );
    // Then the server stalls (still connected, sending nothing).
    let reason = client
        .wait_for("silence disconnect", LIMIT, |e| match e {
            ClientEvent::Disconnected { code: None, reason } => Some(reason),
            _ => None,
        })
        .await
        .unwrap();
    assert!(reason.contains("silent"), "{reason}");
    let mut next = server.accept().await;
    drop(conn);
    next.handshake().await;
    client.wait_subscribed(LIMIT).await.unwrap();
    client.shutdown(LIMIT).await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_with_1000_and_stops() {
    let mut server = FakeServer::start().await;
    let (tokens, _) = minted_tokens();
    let client = TestClient::spawn(config(&server), tokens);
    let mut conn = server.accept().await;
    conn.handshake().await;
    let stats = client.stats_handle();
    let stopping = tokio::spawn(client.shutdown(LIMIT));
    match conn.next_frame().await {
        Some(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a 1000 close, got {other:?}"),
    }
    drop(conn);
    timeout(LIMIT, stopping).await.unwrap().unwrap().unwrap();
    assert!(!stats.is_live());
}

#[tokio::test]
async fn load_mode_reports_every_message_to_a_closure_with_its_latency() {
    const N: usize = 500;
    let mut server = FakeServer::start().await;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let (done_tx, done_rx) = oneshot::channel();
    let mut done_tx = Some(done_tx);
    let seen = latencies.clone();
    let observer = move |view: &MessageView<'_>, latency_us: i64| {
        assert_eq!(view.kind(), MessageKind::PriceUpdate);
        let mut seen = seen.lock().unwrap();
        seen.push(latency_us);
        if seen.len() == N {
            done_tx.take().map(|tx| tx.send(()));
        }
    };
    let client = Client::new(config(&server), || "tok".to_owned(), observer);
    let stats = client.stats();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(client.run(shutdown.clone()));
    let mut conn = server.accept().await;
    conn.handshake().await;
    for i in 0..N {
        conn.send(&price("BTC", &format!("n{i}"), i as f64)).await;
    }
    timeout(LIMIT, done_rx)
        .await
        .expect("all messages observed")
        .unwrap();
    shutdown.cancel();
    let _observer = timeout(LIMIT, running).await.unwrap().unwrap();
    let latencies = latencies.lock().unwrap();
    assert!(
        latencies.iter().all(|l| (0..5_000_000).contains(l)),
        "{latencies:?}"
    );
    let counters = stats.snapshot();
    assert_eq!(
        (counters.received, counters.delivered),
        (N as u64, N as u64)
    );
}
