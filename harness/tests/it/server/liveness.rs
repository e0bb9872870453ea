//! `PROTOCOL.md` §4.4–4.5: heartbeats and pings, the pong deadline, and
//! slow consumers (conflation first, then `4008`).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::support::Stack;
use crate::support::WAIT;

#[tokio::test]
async fn heartbeats_and_pings_arrive_every_interval() {
    let stack = Stack::start_with(|c| c.heartbeat_interval = Duration::from_millis(200)).await;
    let mut ws = stack.client().await;
    assert_eq!(ws.hello["heartbeatIntervalMs"], 200);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let hb = ws.next_of_type("heartbeat").await;
        assert_eq!(hb["serverId"], stack.server.server_id());
    }
    // Three intervals passed and the connection (which answers pings, as
    // tungstenite does for us) is still open.
    assert!(started.elapsed() >= Duration::from_millis(550));
    ws.send_json(json!({"type": "ping", "id": "alive"})).await;
    assert_eq!(ws.next_of_type("pong").await["id"], "alive");
}

#[tokio::test]
async fn a_client_that_never_answers_pings_is_closed_with_4002() {
    let stack = Stack::start_with(|c| c.heartbeat_interval = Duration::from_millis(200)).await;
    let ws = stack.client().await;
    // Read nothing (so no pong is sent) until the server has had two
    // intervals to notice; its log of the connection is gone from /stats.
    stack
        .server
        .wait_for_stats(WAIT, |s| s.connection_count == 0)
        .await
        .expect("the silent client is disconnected");
    // What it finds when it finally reads: a heartbeat, a ping, then 4002.
    let mut ws = ws;
    let mut saw_ping = false;
    let code = loop {
        match tokio::time::timeout(WAIT, ws_next(&mut ws))
            .await
            .expect("frame")
        {
            Some(Message::Ping(_)) => saw_ping = true,
            Some(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Some(_) => {}
            None => break None,
        }
    };
    assert!(saw_ping, "the server pinged before giving up");
    assert_eq!(code, Some(4002));
}

async fn ws_next(ws: &mut super::support::Ws) -> Option<Message> {
    ws.inner_mut().next().await.and_then(Result::ok)
}

/// A price update padded to `size` bytes (unknown fields are forwarded as
/// published), so a few thousand of them overflow any socket buffer.
fn padded_price(stack: &mut Stack, token: &str, price: f64, size: usize) -> (String, String) {
    let e = stack.publisher.price_event(token, price);
    let mut v: Value = serde_json::from_str(&e.to_json()).unwrap();
    let pad = size.saturating_sub(v.to_string().len() + 10);
    v["pad"] = Value::String("p".repeat(pad));
    (e.nonce().to_string(), v.to_string())
}

// Several threads, as in production: the server, the publisher and the
// readers must not take turns on one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_conflated_to_the_latest_price() {
    let mut stack = Stack::start_with(|c| c.max_queue_bytes = 4 << 20).await;
    let mut slow = stack.client().await;
    slow.subscribe(&["token.HOT"]).await;
    let mut fast = stack.client().await;
    fast.subscribe(&["token.HOT"]).await;

    // 40 MB of price updates of one token while `slow` reads nothing: far
    // more than the socket buffers hold, so the rest waits in the outbox,
    // where each newer price replaces the pending one.
    const N: usize = 10_000;
    let mut last = String::new();
    let fast_reader = tokio::spawn(async move {
        // It may be conflated a little too if it falls behind for a moment;
        // what matters is that it is never stalled and ends on the latest.
        let mut prev = 0.0;
        while prev < N as f64 {
            let v: Value = serde_json::from_str(&fast.next_text().await).unwrap();
            let price = v["price"].as_f64().unwrap();
            assert!(price > prev);
            prev = price;
        }
        fast
    });
    for i in 0..N {
        let (nonce, text) = padded_price(&mut stack, "HOT", i as f64 + 1.0, 4000);
        stack
            .publisher
            .raw("odin.token.HOT.price".into(), Some(&nonce), text.clone())
            .await;
        last = text;
    }
    stack.publisher.client.flush().await.unwrap();
    // The reader that keeps up gets every update, in order.
    let _fast = tokio::time::timeout(Duration::from_secs(60), fast_reader)
        .await
        .expect("fast reader done")
        .unwrap();
    stack
        .server
        .wait_for_stats(WAIT, |s| s.conflated > 0)
        .await
        .expect("the stalled reader's updates were conflated");

    // The slow reader now catches up: prices only rise, it ends on the
    // latest, and it got fewer frames than were published.
    let mut seen = 0usize;
    let mut prev = 0.0;
    loop {
        let text = slow.next_text().await;
        let v: Value = serde_json::from_str(&text).unwrap();
        let price = v["price"].as_f64().unwrap();
        assert!(price > prev, "out of order: {price} after {prev}");
        prev = price;
        seen += 1;
        if text == last {
            break;
        }
    }
    assert!(seen < N, "nothing was conflated ({seen} of {N})");
    let stats = stack.server.stats().await.unwrap();
    assert_eq!(stats.slow_consumer_disconnects, 0);
}

// Several threads, as in production: the server, the publisher and the
// readers must not take turns on one thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_dropped_as_a_slow_consumer() {
    let mut stack = Stack::start_with(|c| {
        c.max_queue_bytes = 256 * 1024;
        // Far beyond WAIT: the overflow itself must end the stalled client,
        // even while its writer is stuck on a full socket.
        c.write_timeout = Duration::from_secs(600);
    })
    .await;
    let mut stalled = stack.client().await;
    stalled.subscribe(&["token.T"]).await;
    let mut healthy = stack.client().await;
    healthy.subscribe(&["token.T"]).await;

    // Trades are never conflated: 20 MB of them overflow the stalled client.
    // They go out in chunks the healthy client reads before the next one, so
    // it is never behind, while the stalled one only falls further back.
    const N: u64 = 5_000;
    const CHUNK: u64 = 25; // 100 KB: fits the healthy client's queue
    for start in (0..N).step_by(CHUNK as usize) {
        for i in start..start + CHUNK {
            let e = stack.publisher.trade_event("T", i);
            let mut v: Value = serde_json::from_str(&e.to_json()).unwrap();
            v["pad"] = Value::String("p".repeat(4000));
            stack
                .publisher
                .raw(
                    "odin.trades.T".into(),
                    Some(e.nonce().as_str()),
                    v.to_string(),
                )
                .await;
        }
        stack.publisher.client.flush().await.unwrap();
        for i in start..start + CHUNK {
            let text = healthy.next_text().await;
            assert!(
                text.contains(&format!(r#""tradeId":"t{i}""#)),
                "trade {i} missing"
            );
        }
    }
    let stats = stack
        .server
        .wait_for_stats(WAIT, |s| {
            s.slow_consumer_disconnects == 1 && s.connection_count == 1
        })
        .await
        .expect("the stalled client is disconnected and counted");
    assert_eq!(stats.slow_consumer_disconnects, 1);
    // The stalled client finds its buffered frames and then the end: a 4008
    // close when the close frame fit, else a dropped TCP connection.
    let code = stalled.closed().await;
    assert!(matches!(code, Some(4008) | None), "{code:?}");
    healthy.send_json(json!({"type": "ping", "id": "ok"})).await;
    assert_eq!(healthy.next_of_type("pong").await["id"], "ok");
}
