//! The bare forwarder in-process against real NATS (the harness's) and a
//! plain WebSocket client: what `PROTOCOL.md` asks of it (the greeting,
//! subscribe, the event bytes unchanged, ping, heartbeat, close, bad input,
//! shutdown). The load tool's runs against its binary are in
//! `loadtests/tests/forwarder.rs`.

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use odin_forwarder::{Config, Forwarder};
use odin_harness::nats::NatsServer;
use odin_protocol::ServerMessage;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every await on the network gets this long.
const WAIT: Duration = Duration::from_secs(10);

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
