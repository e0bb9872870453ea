//! The `reconnect` advisory (`PROTOCOL.md` §4.6, version 2) from outside,
//! against the real binary: on SIGTERM every version 2 client gets it, with
//! a delay of its own spread over `--reconnect-spread`, then the `1001`
//! close, all within the drain time, while a version 1 client gets the bare
//! `1001`; at the end of a connection's lifetime (`--max-connection-lifetime`
//! with jitter) connections close at spread times with `4003`, the advisory
//! first for version 2; and the reference client, speaking version 2, waits
//! the advised delay before it returns.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use odin_harness::client::{ClientConfig, ClientEvent, TestClient};
use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::wait::LIMIT;
use odin_protocol::message::ReconnectReason;
use odin_protocol::{ProtocolVersion, ServerMessage};
use serde_json::Value;

use super::support::Ws;

/// Version 2 clients in the shutdown test (the figure).
const V2_CLIENTS: usize = 200;
/// Version 1 clients beside them.
const V1_CLIENTS: usize = 20;

/// What one client saw at the end: its texts before the close, the close
/// code, and when the close came.
struct Ending {
    version: u32,
    texts: Vec<Value>,
    code: Option<u16>,
    at: Instant,
}

/// Reads every client to its close at once, so none waits on another.
async fn endings(clients: Vec<(u32, Ws)>) -> Vec<Ending> {
    join_all(clients.into_iter().map(|(version, mut ws)| async move {
        let (texts, code) = ws.texts_until_close().await;
        Ending {
            version,
            texts,
            code,
            at: Instant::now(),
        }
    }))
    .await
}

/// The delay of an ending's advisory, checking it is the last text, of
/// `reason`, and well formed.
fn advised_delay(ending: &Ending, reason: &str) -> u64 {
    let advisory = ending
        .texts
        .last()
        .unwrap_or_else(|| panic!("no advisory before the close {:?}", ending.code));
    assert_eq!(advisory["type"], "reconnect", "{advisory}");
    assert_eq!(advisory["reason"], reason, "{advisory}");
    assert!(advisory["timestamp"].as_f64().is_some_and(|t| t > 0.0));
    assert!(advisory["nonce"].as_str().is_some_and(|n| !n.is_empty()));
    let others = ending.texts.iter().filter(|t| t["type"] == "reconnect");
    assert_eq!(others.count(), 1, "one advisory: {:?}", ending.texts);
    advisory["delayMs"]
        .as_u64()
        .unwrap_or_else(|| panic!("delayMs is a whole number: {advisory}"))
}

#[tokio::test]
async fn sigterm_advises_every_v2_client_with_spread_delays_then_1001_within_the_drain() {
    let nats = NatsServer::start().await.unwrap();
    let drain = Duration::from_secs(4);
    let mut server = ServerProcess::start(
        &nats.url(),
        &["--drain-timeout", "4s", "--reconnect-spread", "3s"],
    )
    .await
    .unwrap();
    let mut clients = Vec::new();
    for i in 0..V2_CLIENTS + V1_CLIENTS {
        let version = if i % 11 == 10 { 1 } else { 2 };
        let ws = Ws::connect_version(server.endpoint(), version).await;
        assert_eq!(ws.hello["protocolVersion"], version, "{}", ws.hello);
        clients.push((version, ws));
    }
    let signalled = Instant::now();
    server.signal("TERM").unwrap();
    let endings = endings(clients).await;
    assert_eq!(
        server.wait(drain + Duration::from_secs(2)).await.unwrap(),
        Some(0)
    );

    let mut delays = Vec::new();
    for ending in &endings {
        assert_eq!(
            ending.code,
            Some(1001),
            "v{} {:?}",
            ending.version,
            ending.texts
        );
        assert!(
            ending.at - signalled < drain,
            "closed {:?} after the signal, beyond the drain",
            ending.at - signalled
        );
        if ending.version == 2 {
            delays.push(advised_delay(ending, "shutdown"));
        } else {
            assert!(ending.texts.is_empty(), "v1 got {:?}", ending.texts);
        }
    }
    assert_eq!(delays.len(), V2_CLIENTS);
    assert_eq!(endings.len() - delays.len(), V1_CLIENTS);
    let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
    // 200 uniform draws over 3 s: all inside it, and spread over nearly all
    // of it (each end missed by 10 % with chance 0.9^200, about 1e-9).
    assert!(*max <= 3000, "a delay beyond the spread: {max}");
    assert!(*min < 300 && *max > 2700, "delays not spread: {min}..{max}");
    let mut distinct = delays.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() > V2_CLIENTS / 2,
        "{} distinct delays",
        distinct.len()
    );
}

#[tokio::test]
async fn connections_end_at_spread_lifetimes_with_4003_and_the_advisory_first() {
    let nats = NatsServer::start().await.unwrap();
    let server = ServerProcess::start(
        &nats.url(),
        &[
            "--max-connection-lifetime",
            "2s",
            "--connection-lifetime-jitter",
            "0.5",
            "--reconnect-spread",
            "1s",
        ],
    )
    .await
    .unwrap();
    let mut clients = Vec::new();
    let mut opened = Vec::new();
    for i in 0..24 {
        let version = if i % 4 == 3 { 1 } else { 2 };
        opened.push(Instant::now());
        clients.push((
            version,
            Ws::connect_version(server.endpoint(), version).await,
        ));
    }
    let endings = endings(clients).await;
    let mut lived = Vec::new();
    for (ending, opened) in endings.iter().zip(opened) {
        assert_eq!(
            ending.code,
            Some(4003),
            "v{} {:?}",
            ending.version,
            ending.texts
        );
        let life = ending.at - opened;
        // Drawn in [1 s, 2 s]; the client's clock starts a little before
        // the server's and stops a little after.
        assert!(
            life > Duration::from_millis(950) && life < Duration::from_secs(3),
            "lived {life:?}"
        );
        lived.push(life);
        if ending.version == 2 {
            assert!(advised_delay(ending, "lifetime") <= 1000);
        } else {
            assert!(ending.texts.is_empty(), "v1 got {:?}", ending.texts);
        }
    }
    let (min, max) = (lived.iter().min().unwrap(), lived.iter().max().unwrap());
    // 24 uniform draws over 1 s span more than 300 ms but for a chance of
    // about 1e-10.
    assert!(
        *max - *min > Duration::from_millis(300),
        "lifetimes {min:?}..{max:?}"
    );
}

#[tokio::test]
async fn the_reference_client_waits_the_advised_delay_before_it_returns() {
    let nats = NatsServer::start().await.unwrap();
    let server = ServerProcess::start(
        &nats.url(),
        &[
            "--max-connection-lifetime",
            "1s",
            "--connection-lifetime-jitter",
            "0",
            "--reconnect-spread",
            "2s",
        ],
    )
    .await
    .unwrap();
    let ep = server.endpoint().clone();
    // A back-off of a millisecond: without the advisory it would be back
    // at once.
    let config = ClientConfig::new(ep.ws_url(), ["batch"])
        .with_backoff(Duration::from_millis(1), Duration::from_secs(10))
        .with_protocol(ProtocolVersion::V2);
    let mut client = TestClient::spawn(config, move || ep.token("ref"));
    client.wait_subscribed(LIMIT).await.unwrap();
    let advised = client
        .wait_for("reconnect advisory", LIMIT, |e| match e {
            ClientEvent::Control(ServerMessage::Reconnect(m)) => Some(m),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(advised.reason, ReconnectReason::Lifetime);
    let code = client.wait_disconnected(LIMIT).await.unwrap();
    let closed = Instant::now();
    assert_eq!(code, Some(4003));
    let delay = client
        .wait_for("back-off", LIMIT, |e| match e {
            ClientEvent::BackingOff { delay } => Some(delay),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        delay,
        Duration::from_millis(advised.delay_ms),
        "the advised delay"
    );
    let hello = client
        .wait_for("reconnect", LIMIT, |e| match e {
            ClientEvent::Connected(m) => Some(m),
            _ => None,
        })
        .await
        .unwrap();
    assert!(
        closed.elapsed() >= delay,
        "back after {:?}, advised {delay:?}",
        closed.elapsed()
    );
    assert_eq!(hello.protocol_version, 2);
    let stats = client.stats();
    assert_eq!(
        (stats.advisories, stats.connect_failures),
        (1, 0),
        "{stats:?}"
    );
    client.shutdown(LIMIT).await.unwrap();
}
