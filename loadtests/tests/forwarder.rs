//! The bare forwarder (`odin-forwarder`), two ways:
//!
//! - in-process against real NATS and a plain WebSocket client: what
//!   `PROTOCOL.md` asks of it (the greeting, subscribe, the event bytes
//!   unchanged, ping, heartbeat, close, bad input, shutdown);
//! - as the load tool runs it: `odin-load run quick --server forwarder` with
//!   real NATS, the built `odin-forwarder` and `odin-publisher` (found through
//!   `ODIN_BIN_DIR`, else built by the harness), zero loss, and a stepped run
//!   with `compare_forwarder` that prints the comparison of issue #8.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use odin_harness::nats::NatsServer;
use odin_loadtests::forwarder::{Config, Forwarder};
use odin_protocol::ServerMessage;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every await on the network gets this long.
const WAIT: Duration = Duration::from_secs(10);

/// The load runs share two cores: one at a time.
static LOAD_RUNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a frame in time")
        .expect("the stream is open")
        .expect("a valid frame")
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match next(ws).await {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connects in time")
        .expect("upgrades");
    ws
}

async fn send(ws: &mut Ws, text: &str) {
    tokio::time::timeout(WAIT, ws.send(Message::text(text)))
        .await
        .expect("sends in time")
        .expect("sends");
}

/// The close code the forwarder ends with, reading past anything else.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("no close frame: {e}"),
            None => return None,
        }
    }
}

#[tokio::test]
async fn the_forwarder_speaks_the_protocol() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let config = Config::try_parse_from([
        "odin-forwarder",
        "--ws-addr",
        "127.0.0.1:0",
        "--nats-url",
        &nats.url(),
        "--heartbeat-interval-ms",
        "300",
    ])
    .unwrap();
    let forwarder = Forwarder::bind(&config).await.expect("the forwarder binds");
    let url = format!("{}?token=not-checked", forwarder.ws_url());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(forwarder.run(async move {
        let _ = stopped.await;
    }));
    let publisher = async_nats::connect(nats.url()).await.unwrap();

    // Only /ws upgrades.
    let other = url.replace("/ws?", "/other?");
    match tokio_tungstenite::connect_async(other).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 404),
        other => panic!("expected 404, got {other:?}"),
    }

    let mut ws = connect(&url).await;
    let hello = next_json(&mut ws).await;
    // Every field the protocol requires, typed as it says.
    let decoded: ServerMessage = serde_json::from_value(hello.clone()).expect("{hello}");
    let ServerMessage::ConnectionEstablished(hello) = decoded else {
        panic!("first message is not connection_established: {hello}");
    };
    assert_eq!(hello.protocol_version, 1);
    assert_eq!(hello.heartbeat_interval_ms, 300);
    assert!(hello.client_id.starts_with(&hello.server_id));

    send(
        &mut ws,
        r#"{"type":"subscribe","channels":["token.BTC","batch"],"id":"s1"}"#,
    )
    .await;
    let subscribed = next_json(&mut ws).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(
        subscribed["channels"],
        serde_json::json!(["token.BTC", "batch"])
    );
    assert_eq!(subscribed["id"], "s1");
    assert!(subscribed["nonce"].is_string() && subscribed["timestamp"].is_number());

    // The event's bytes, unchanged; other tokens' events not at all.
    let event = r#"{"type":"price_update","tokenId":"BTC","price":1.5,"source":"trade","timestamp":1.0,"nonce":"n-1"}"#;
    let other = event.replace("BTC", "ETH").replace("n-1", "n-2");
    let batch = r#"{"type":"batch_update","source":"scheduler","updates":[],"timestamp":1.0,"nonce":"n-3"}"#;
    publisher
        .publish("odin.token.ETH.price", other.into())
        .await
        .unwrap();
    publisher
        .publish("odin.token.BTC.price", event.into())
        .await
        .unwrap();
    publisher
        .publish("odin.token.batch.update", batch.into())
        .await
        .unwrap();
    publisher.flush().await.unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let Message::Text(t) = next(&mut ws).await
            && serde_json::from_str::<Value>(&t).unwrap()["type"] != "heartbeat"
        {
            texts.push(t.to_string());
        }
    }
    assert_eq!(texts, [event, batch]);

    send(&mut ws, r#"{"type":"ping","id":"p1"}"#).await;
    send(&mut ws, r#"{"type":"nope"}"#).await;
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let (mut pong, mut error, mut ws_pong, mut heartbeat, mut ws_ping) =
        (false, false, false, false, false);
    while !(pong && error && ws_pong && heartbeat && ws_ping) {
        match next(&mut ws).await {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str().unwrap() {
                    "pong" => pong = v["id"] == "p1",
                    "error" => error = v["code"] == "invalid_message",
                    "heartbeat" => heartbeat = v["serverId"] == hello.server_id.as_str(),
                    other => panic!("unexpected {other}: {v}"),
                }
            }
            Message::Pong(p) => ws_pong = &p[..] == b"hi",
            Message::Ping(_) => ws_ping = true,
            other => panic!("unexpected {other:?}"),
        }
    }

    // The client closes: the forwarder answers with the same code.
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));

    // Bad input ends that connection only.
    let mut bad = connect(&url).await;
    next_json(&mut bad).await;
    bad.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut bad).await, Some(1003));
    let mut big = connect(&url).await;
    next_json(&mut big).await;
    big.send(Message::text("x".repeat(5000))).await.unwrap();
    assert_eq!(close_code(&mut big).await, Some(1009));

    // Shutdown closes every client with 1001.
    let mut last = connect(&url).await;
    next_json(&mut last).await;
    stop.send(()).unwrap();
    assert_eq!(close_code(&mut last).await, Some(1001));
    tokio::time::timeout(WAIT, served)
        .await
        .expect("the forwarder stops in time")
        .unwrap()
        .unwrap();
}

/// Runs `odin-load` with `args` and returns its stdout, asserting exit 0.
fn odin_load(args: &[&str], out: &Path) -> String {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
    odin_load_with(args, &scenarios, out)
}

fn odin_load_with(args: &[&str], scenarios: &Path, out: &Path) -> String {
    let run = Command::new(env!("CARGO_BIN_EXE_odin-load"))
        .args(args)
        .arg("--no-progress")
        .arg("--scenario-file")
        .arg(scenarios)
        .arg("--out")
        .arg(out)
        .output()
        .expect("odin-load runs");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(0),
        "odin-load failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_load_run_against_the_forwarder_loses_nothing() {
    let _one_at_a_time = LOAD_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let stdout = odin_load(
        &[
            "run",
            "quick",
            "--server",
            "forwarder",
            "--users",
            "200",
            "--ramp-rate",
            "200",
            "--hold",
            "3s",
        ],
        out.path(),
    );
    let report = read_json(&out.path().join("report.json"));
    assert_eq!(report["users"]["live"], 200, "{report:#}");
    let accounting = &report["accounting"];
    assert!(accounting["expected"].as_u64().unwrap() > 0, "{accounting}");
    assert_eq!(accounting["delivered"], accounting["expected"]);
    assert_eq!(accounting["lost"], 0);
    assert_eq!(accounting["duplicates"], 0);
    let server = &report["server"];
    assert_eq!(server["binary"], "odin-forwarder", "{server}");
    assert!(
        report["target"]
            .as_str()
            .unwrap()
            .contains("odin-forwarder")
    );
    assert!(
        server["cpuPerDeliveryUs"].as_f64().unwrap() > 0.0,
        "{server}"
    );
    assert!(server["processAfter"]["rssBytes"].as_u64().unwrap() > 0);
    assert!(
        server.get("statsAfter").is_none_or(Value::is_null),
        "{server}"
    );
    assert!(
        stdout.contains("odin-forwarder, the bare forwarder"),
        "{stdout}"
    );
    assert!(stdout.contains("µs per delivery"), "{stdout}");
    assert!(
        stdout.contains("server /stats") && stdout.contains("n/a"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS"), "{stdout}");
}

#[test]
fn a_stepped_run_compares_odin_with_the_forwarder() {
    let _one_at_a_time = LOAD_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios.toml");
    std::fs::write(
        &scenarios,
        r#"
[defaults]
tokens = 20
subscriptions = 5
publish_rate = 20
tick = "60s"
ramp_rate = 200
hold = "3s"
drain = "1s"
warmup = "1s"
thresholds = ["loss<=0"]

[scenario.small]
users = 100

[step.tiny]
scenario = "small"
rates = [20]
cooldown = "1s"
run_every_rate = true
compare_forwarder = true
compare_pairs = 2
thresholds = ["connect-success>=100%", "loss<=0", "duplicates<=0"]
"#,
    )
    .unwrap();
    let out = dir.path().join("run");
    let stdout = odin_load_with(&["run", "tiny"], &scenarios, &out);
    assert!(
        stdout.contains("server CPU per delivery at 20 events/s: odin-server "),
        "{stdout}"
    );
    assert!(stdout.contains(", bare forwarder "), "{stdout}");
    assert!(
        stdout.contains("(medians of 2 alternating runs each)"),
        "{stdout}"
    );
    let steps = read_json(&out.join("report.json"));
    assert_eq!(steps["name"], "tiny", "{steps:#}");
    assert_eq!(steps["steps"][0]["server"], "odin-server");
    let c = &steps["forwarderComparison"];
    assert_eq!(c["rate"], 20.0, "{c}");
    assert_eq!(c["forwarder"]["server"], "odin-forwarder");
    assert_eq!(c["forwarder"]["lost"], 0, "{c}");
    assert!(
        c["odin"]["serverCpuPerDeliveryUs"].as_f64().unwrap() > 0.0,
        "{c}"
    );
    assert!(
        c["forwarder"]["serverCpuPerDeliveryUs"].as_f64().unwrap() > 0.0,
        "{c}"
    );
    assert!(c["odinOverForwarderPercent"].is_number(), "{c}");
    assert_eq!(c["repeats"][0]["odin"]["server"], "odin-server", "{c}");
    assert_eq!(
        c["repeats"][0]["forwarder"]["server"], "odin-forwarder",
        "{c}"
    );
    assert!(c["odinMedianUs"].as_f64().unwrap() > 0.0, "{c}");
    // Each run keeps its own full report.
    let forwarder = read_json(&out.join("tiny-20-forwarder/report.json"));
    assert_eq!(forwarder["server"]["binary"], "odin-forwarder");
    assert!(out.join("tiny-20/report.json").exists());
    assert!(out.join("tiny-20-odin-2/report.json").exists());
    assert!(out.join("tiny-20-forwarder-2/report.json").exists());
    assert!(
        std::fs::read_to_string(out.join("steps.md"))
            .unwrap()
            .contains("bare forwarder")
    );
}
