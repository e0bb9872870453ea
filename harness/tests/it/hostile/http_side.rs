//! Hostile HTTP clients on the HTTP port (`/health`, `/stats`, `/metrics`,
//! the page) and half-open sockets on the WebSocket port: every socket has a
//! deadline, each listener its own budget, and one source address cannot
//! take the HTTP port's, while `/health`, new WebSocket clients and the
//! control client carry on.
//!
//! The attackers are bare `TcpStream`s: half-sent requests, byte drips and
//! silent sockets need byte-level control no WebSocket client gives. The
//! clients that must still be served are the library's `RawClient`.

use std::net::SocketAddr;
use std::time::Duration;

use odin_harness::client::{RawAuth, RawClient};
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::message::ChannelRequest;
use odin_protocol::{ClientMessage, ServerMessage};
use odin_server::HttpLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use super::control::Control;
use crate::server::support::Stack;

/// A half-sent request: the header block never ends.
const HALF_SENT: &[u8] = b"GET /health HTTP/1.1\r\nHost: odin\r\n";

/// Connects to `to` from the loopback address `from` (all of 127/8 is
/// loopback, so a test has as many "source addresses" as it likes).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    tokio::time::timeout(LIMIT, socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads until the server closes the socket, within `limit`: what it sent,
/// or `None` when it is still open at the limit.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// What the server sends each of `streams` before closing it within `limit`
/// (`None`: still open), all read at once.
async fn answers_within(streams: &mut [TcpStream], limit: Duration) -> Vec<Option<Vec<u8>>> {
    futures_util::future::join_all(streams.iter_mut().map(|s| read_to_close(s, limit))).await
}

/// How many of `streams` the server closes within `limit` (all read at once).
async fn closed_within(streams: &mut [TcpStream], limit: Duration) -> usize {
    let answers = answers_within(streams, limit).await;
    answers.iter().filter(|closed| closed.is_some()).count()
}

/// The value of counter `name` in `/metrics`.
pub(super) async fn counter(stack: &Stack, name: &str) -> u64 {
    let metrics = stack.server.endpoint().get("/metrics").await.unwrap().body;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn idle_and_half_sent_http_requests_are_closed_after_the_idle_timeout() {
    let stack = Stack::start_with(|c| {
        c.http_limits = HttpLimits {
            idle_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        };
    })
    .await;
    let control = Control::start(&stack).await;
    let http = stack.server.endpoint().http_addr;
    let mut sockets = Vec::new();
    for i in 0..20 {
        let mut stream = TcpStream::connect(http).await.unwrap();
        if i % 2 == 0 {
            stream.write_all(HALF_SENT).await.unwrap();
        }
        sockets.push(stream);
    }
    for (i, stream) in sockets.iter_mut().enumerate() {
        let closed = read_to_close(stream, LIMIT).await;
        assert!(closed.is_some(), "socket {i} still open after {LIMIT:?}");
    }
    assert_eq!(
        stack.server.endpoint().get("/health").await.unwrap().status,
        200
    );
    control.finish().await;
}

#[tokio::test]
async fn a_slow_drip_of_bytes_is_closed_at_the_connection_lifetime() {
    let lifetime = Duration::from_millis(1500);
    let stack = Stack::start_with(|c| {
        c.http_limits = HttpLimits {
            idle_timeout: Duration::from_millis(800),
            max_lifetime: lifetime,
            ..HttpLimits::default()
        };
    })
    .await;
    let mut stream = TcpStream::connect(stack.server.endpoint().http_addr)
        .await
        .unwrap();
    let started = Instant::now();
    // One byte every 200 ms keeps the idle timeout from firing: only the
    // lifetime can end it.
    let closed_after = loop {
        if stream.write_all(b"X").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < LIMIT,
            "the dripping client is never closed"
        );
    };
    assert!(
        closed_after >= lifetime - Duration::from_millis(100),
        "closed after {closed_after:?}, before the lifetime: the idle timeout fired while bytes came"
    );
}

#[tokio::test]
async fn one_address_cannot_take_the_http_port_and_health_stays_up() {
    const CAP: usize = 16;
    const ATTACK: usize = 40;
    let stack = Stack::start_with(|c| {
        c.http_limits = HttpLimits {
            max_connections: 64,
            max_per_address: CAP,
            ..HttpLimits::default()
        };
    })
    .await;
    let control = Control::start(&stack).await;
    let http = stack.server.endpoint().http_addr;
    let mut streams = Vec::new();
    for _ in 0..ATTACK {
        streams.push(connect_from([127, 0, 0, 2], http).await);
    }
    // A refused connection is answered and closed at once; a held one
    // waits for its request (for the 10 s idle timeout), which then never
    // ends.
    let answers = answers_within(&mut streams, Duration::from_secs(2)).await;
    let mut held = Vec::new();
    for (mut stream, answer) in streams.into_iter().zip(answers) {
        match answer {
            Some(answer) => {
                let text = String::from_utf8_lossy(&answer);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(text.contains("Retry-After: 1"), "{text}");
            }
            None => {
                stream.write_all(HALF_SENT).await.unwrap();
                held.push(stream);
            }
        }
    }
    assert_eq!(held.len(), CAP, "one address holds at most its cap");
    // Another address is served while the first holds its whole share.
    let health = stack.server.endpoint().get("/health").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(
        counter(&stack, "odin_http_refused_total").await,
        (ATTACK - CAP) as u64
    );
    // WebSocket clients do not share the HTTP budget.
    let mut late = stack.client().await;
    late.subscribe(&["token.LATE"]).await;
    control.finish().await;
}

#[tokio::test]
async fn silent_sockets_on_the_websocket_port_have_a_budget_of_their_own() {
    const BUDGET: usize = 8;
    const SILENT: usize = 20;
    let stack = Stack::start_with(|c| c.max_pending_upgrades = BUDGET).await;
    let control = Control::start(&stack).await;
    let ws = stack.server.endpoint().ws_addr;
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(ws).await.unwrap());
    }
    // Over the budget, a socket is dropped at accept; within it, a socket
    // waits for its request until the handshake timeout (10 s).
    let dropped = closed_within(&mut silent, Duration::from_secs(2)).await;
    assert_eq!(
        dropped,
        SILENT - BUDGET,
        "every socket over the budget is dropped"
    );
    assert_eq!(
        counter(&stack, "odin_upgrades_refused_total").await,
        (SILENT - BUDGET) as u64
    );
    // Once they give up, the budget is back for real clients (as soon as
    // the server has read their end of file).
    drop(silent);
    let ep = stack.server.endpoint();
    let mut late = eventually(
        LIMIT,
        "a client admitted after the silent sockets left",
        async || RawClient::connect(&ep.ws_url(), &RawAuth::query(ep.token("late"))).await,
    )
    .await;
    late.send_json(&ClientMessage::Subscribe(ChannelRequest {
        channels: vec!["token.LATE".to_owned()],
        id: None,
    }))
    .await
    .unwrap();
    loop {
        match late.next_message(LIMIT).await {
            Ok(ServerMessage::Subscribed(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("the late client does not subscribe: {e:#}"),
        }
    }
    control.finish().await;
}

#[tokio::test]
async fn every_http_answer_forbids_framing_and_foreign_or_inline_code() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    for path in ["/", "/app.js", "/health", "/stats", "/metrics", "/nope"] {
        let answer = ep.get(path).await.unwrap();
        let csp = answer
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "connect-src ws: wss:",
        ] {
            assert!(csp.contains(directive), "{path}: {csp} lacks {directive}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            answer.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn with_few_descriptors_each_listener_keeps_its_share() {
    // 400 open files: 64 reserved, HTTP 42 (10 per address), WebSocket 294.
    const WEBSOCKET_SHARE: usize = 294;
    // This process holds both ends of every socket.
    rlimit::increase_nofile_limit(4096).unwrap();
    let stack = Stack::start_with(|c| c.max_open_files = Some(400)).await;
    let control = Control::start(&stack).await;
    let ep = stack.server.endpoint().clone();
    // Silent sockets on the WebSocket port: past its share, each is closed
    // at accept (the control client holds one admitted connection).
    let mut silent = Vec::new();
    for _ in 0..WEBSOCKET_SHARE + 30 {
        silent.push(TcpStream::connect(ep.ws_addr).await.unwrap());
    }
    let dropped = closed_within(&mut silent, Duration::from_secs(2)).await;
    assert_eq!(
        dropped,
        30 + 1,
        "the WebSocket share is {WEBSOCKET_SHARE}, one of it admitted"
    );
    // Half-sent requests from one address: it gets a quarter of HTTP's share.
    let mut attack = Vec::new();
    for _ in 0..30 {
        attack.push(connect_from([127, 0, 0, 2], ep.http_addr).await);
    }
    let answers = answers_within(&mut attack, Duration::from_secs(2)).await;
    for answer in answers.iter().flatten() {
        assert!(answer.starts_with(b"HTTP/1.1 503"), "{answer:?}");
    }
    let held = answers.iter().filter(|a| a.is_none()).count();
    assert_eq!(held, 10, "one address holds a quarter of HTTP's share");
    // The others' HTTP share and NATS are intact.
    let health = ep.get("/health").await.unwrap();
    assert_eq!(
        (
            health.status,
            health.json::<serde_json::Value>().unwrap()["nats"].as_str()
        ),
        (200, Some("connected"))
    );
    control.finish().await;
}
