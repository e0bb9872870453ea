//! `PROTOCOL.md` §5: every row of the bad-input table, and that one bad
//! client never affects another.

use std::time::Duration;

use bytes::Bytes;
use odin_harness::wait::LIMIT;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::support::{Stack, Ws};

async fn expect_error(ws: &mut Ws, code: &str) -> serde_json::Value {
    let v = ws.next_of_type("error").await;
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(
        v["nonce"].as_str().is_some() && v["timestamp"].as_f64().is_some(),
        "{v}"
    );
    v
}

#[tokio::test]
async fn invalid_messages_get_an_error_and_the_connection_stays() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    for bad in [
        "not json".to_string(),
        "[]".into(),
        json!({"type": "dance"}).to_string(),
        json!({"channels": ["batch"]}).to_string(),
        json!({"type": "subscribe"}).to_string(),
        json!({"type": "subscribe", "channels": "batch"}).to_string(),
        json!({"type": "subscribe", "channels": ["batch", 7]}).to_string(),
        json!({"type": "ping", "id": 5}).to_string(),
    ] {
        ws.send_text(bad.clone()).await;
        expect_error(&mut ws, "invalid_message").await;
    }
    // An id that can be read is echoed even when the message is invalid.
    ws.send_json(json!({"type": "subscribe", "channels": [1], "id": "r9"}))
        .await;
    assert_eq!(expect_error(&mut ws, "invalid_message").await["id"], "r9");
    ws.send_json(json!({"type": "ping", "id": "still-here"}))
        .await;
    assert_eq!(ws.next_of_type("pong").await["id"], "still-here");
}

#[tokio::test]
async fn invalid_channels_are_named_and_valid_ones_still_subscribe() {
    let mut stack = Stack::start().await;
    let mut ws = stack.client().await;
    let bad = [
        "token.*",
        "token.>",
        "token.a.b",
        "token.",
        "token. x",
        "",
        "BATCH",
        "prices",
    ];
    let mut channels: Vec<&str> = vec!["token.OK"];
    channels.extend(bad);
    ws.send_json(json!({"type": "subscribe", "channels": channels, "id": "m"}))
        .await;
    let sub = ws.next_of_type("subscribed").await;
    assert_eq!(sub["channels"], json!(["token.OK"]));
    for channel in bad {
        let e = expect_error(&mut ws, "invalid_channel").await;
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{channel:?}")),
            "message should name {channel:?}: {e}"
        );
    }
    let live = stack.publisher.price("OK", 1.0).await;
    assert_eq!(ws.next_text().await, live);
    // Injection attempts never reach NATS: a wildcard subscriber sees only
    // the one event we published.
    assert_eq!(stack.server.stats().await.unwrap().messages_received, 1);
}

#[tokio::test]
async fn the_channel_limit_counts_across_requests() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    let first: Vec<String> = (0..60).map(|i| format!("token.T{i}")).collect();
    let second: Vec<String> = (60..120).map(|i| format!("token.T{i}")).collect();
    let sub = ws
        .subscribe(&first.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(sub["channels"].as_array().unwrap().len(), 60);
    ws.send_json(json!({"type": "subscribe", "channels": second}))
        .await;
    let sub = ws.next_of_type("subscribed").await;
    assert_eq!(sub["channels"], json!(second[..40]));
    expect_error(&mut ws, "too_many_channels").await;
    // Leaving channels frees room.
    ws.send_json(json!({"type": "unsubscribe", "channels": ["token.T0", "token.T1"]}))
        .await;
    ws.next_of_type("unsubscribed").await;
    let sub = ws.subscribe(&["token.X", "token.Y"]).await;
    assert_eq!(sub["channels"], json!(["token.X", "token.Y"]));
}

#[tokio::test]
async fn flooding_is_rate_limited_and_ten_strikes_close_with_1008() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    // 40 burst + a little refill: of 60 pings sent at once, some are refused.
    for i in 0..60 {
        ws.send_json(json!({"type": "ping", "id": i.to_string()}))
            .await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    let close = loop {
        match ws.try_next_text(LIMIT).await {
            Ok(Some(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(v["code"], "rate_limited");
                        limited += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Ok(None) => panic!("no close"),
            Err(code) => break code,
        }
    };
    assert!(pongs >= 40, "the burst of 40 is served ({pongs})");
    // The 10th rate-limited message gets its error, then the close.
    assert_eq!(limited, 10, "pongs {pongs}");
    assert_eq!(close, Some(1008));
}

#[tokio::test]
async fn a_message_is_a_json_object_not_an_array_with_the_type_first() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    for bad in [json!(["ping"]), json!(["subscribe", ["batch"], "a1"])] {
        ws.send_json(bad).await;
        expect_error(&mut ws, "invalid_message").await;
    }
    ws.send_json(json!({"type": "ping", "id": "object"})).await;
    assert_eq!(ws.next_of_type("pong").await["id"], "object");
}

#[tokio::test]
async fn ten_invalid_messages_close_with_1008_after_the_tenth_error() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    for _ in 0..9 {
        ws.send_text("nope").await;
        expect_error(&mut ws, "invalid_message").await;
    }
    ws.send_json(json!({"type": "ping"})).await;
    ws.next_of_type("pong").await;
    ws.send_text("nope").await;
    expect_error(&mut ws, "invalid_message").await;
    assert_eq!(ws.closed().await, Some(1008));
}

#[tokio::test]
async fn size_limit_is_4096_bytes_in_one_frame_or_fragmented() {
    let stack = Stack::start().await;
    // Exactly 4096 bytes is accepted.
    let mut ws = stack.client().await;
    let head = r#"{"type":"ping","id":""#;
    let pad = 4096 - head.len() - 2;
    let exact = format!("{head}{}\"}}", "x".repeat(pad));
    assert_eq!(exact.len(), 4096);
    ws.send_text(exact).await;
    assert_eq!(
        ws.next_of_type("pong").await["id"].as_str().unwrap().len(),
        pad
    );

    // 4097 in one frame closes with 1009.
    let mut big = stack.client().await;
    big.send_text("x".repeat(4097)).await;
    assert_eq!(big.closed().await, Some(1009));

    // Fragments that add up to more than 4096 close with 1009 too.
    let mut frag = stack.client().await;
    let part = Bytes::from("y".repeat(3000));
    frag.send_raw(Message::Frame(Frame::message(
        part.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    frag.send_raw(Message::Frame(Frame::message(
        part,
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    assert_eq!(frag.closed().await, Some(1009));

    // The well-behaved client is unaffected.
    ws.send_json(json!({"type": "ping", "id": "ok"})).await;
    assert_eq!(ws.next_of_type("pong").await["id"], "ok");
}

#[tokio::test]
async fn a_binary_frame_closes_with_1003() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    ws.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(ws.closed().await, Some(1003));
    stack
        .server
        .wait_for_stats(LIMIT, |s| s.connection_count == 0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007_and_others_carry_on() {
    let stack = Stack::start().await;
    let mut bystander = stack.client().await;
    let mut ws = stack.client().await;
    // A masked text frame (mask 0) whose payload is JSON but for two bytes
    // that are no UTF-8: no text at all, so RFC 6455's 1007, not an error.
    let payload = b"{\"type\":\"ping\",\"id\":\"\xff\xfe\"}";
    let mut frame = vec![0x81u8, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    ws.send_raw_bytes(&frame).await;
    assert_eq!(ws.closed().await, Some(1007));
    bystander
        .send_json(json!({"type": "ping", "id": "still"}))
        .await;
    assert_eq!(bystander.next_of_type("pong").await["id"], "still");
    stack
        .server
        .wait_for_stats(LIMIT, |s| s.connection_count == 1)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_oversized_frame_header_does_not_make_the_server_buffer_it() {
    // A frame that announces 1 GiB: refused from its header, and the
    // connection is gone within the close grace period.
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    let started = std::time::Instant::now();
    let mut header = vec![0x81u8, 0xFF]; // FIN + text, masked, 64-bit length
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]); // mask key
    ws.send_raw_bytes(&header).await;
    let code = ws.closed().await;
    assert!(matches!(code, Some(1009) | None), "{code:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    stack
        .server
        .wait_for_stats(LIMIT, |s| s.connection_count == 0)
        .await
        .unwrap();
}
