//! `PROTOCOL.md` §4.4–4.5: heartbeats and pings, the pong deadline, and
//! slow consumers (conflation first, then `4008`).

use std::time::Duration;

use futures_util::StreamExt;
use odin_harness::wait::LIMIT;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::support::Stack;

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
        .wait_for_stats(LIMIT, |s| s.connection_count == 0)
        .await
        .expect("the silent client is disconnected");
    // What it finds when it finally reads: a heartbeat, a ping, then 4002.
    let mut ws = ws;
    let mut saw_ping = false;
    let code = loop {
        match tokio::time::timeout(LIMIT, ws_next(&mut ws))
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
        .wait_for_stats(LIMIT, |s| s.conflated > 0)
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
    let (mut stack, mut stalled, mut healthy) = stalled_and_healthy().await;
    overflow_all_but(&mut stack, &mut healthy).await;
    let stats = stack
        .server
        .wait_for_stats(LIMIT, |s| {
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

/// A server with a 256 KiB queue bound and two clients on `token.T`: one
/// that will stop reading and one that keeps up.
async fn stalled_and_healthy() -> (Stack, super::support::Ws, super::support::Ws) {
    let stack = Stack::start_with(|c| {
        c.max_queue_bytes = 256 * 1024;
        // Far beyond LIMIT: the overflow itself must end the stalled client,
        // even while its writer is stuck on a full socket.
        c.write_timeout = Duration::from_secs(600);
    })
    .await;
    let mut stalled = stack.client().await;
    stalled.subscribe(&["token.T"]).await;
    let mut healthy = stack.client().await;
    healthy.subscribe(&["token.T"]).await;
    (stack, stalled, healthy)
}

/// Publishes 20 MB of trades on `token.T`, which are never conflated, in
/// chunks that `healthy` reads before the next one: it is never behind,
/// while a subscriber that reads nothing overflows any small queue.
async fn overflow_all_but(stack: &mut Stack, healthy: &mut super::support::Ws) {
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
}

// The overflow stops the writer wherever it is, often in the middle of a
// frame on the full socket. A client that starts reading again at once
// drains the socket within the closing grace: it must find whole frames,
// then the 4008 close starting on a frame boundary, not a broken stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_resumes_reads_whole_frames_then_4008() {
    let (mut stack, mut stalled, mut healthy) = stalled_and_healthy().await;
    let watch = tokio::spawn({
        let server = stack.server.endpoint().clone();
        async move {
            server
                .wait_for_stats(LIMIT * 4, |s| s.slow_consumer_disconnects == 1)
                .await
        }
    });
    let reader = tokio::spawn(async move {
        // Read again the moment the server gives up on this client.
        watch.await.unwrap().expect("the stalled client is counted");
        let mut frames = 0u64;
        let code = loop {
            match stalled.try_next_text(LIMIT).await {
                Ok(Some(text)) => {
                    let v: Value = serde_json::from_str(&text).expect("a whole JSON frame");
                    assert!(v["type"].is_string(), "{text:.80}");
                    frames += 1;
                }
                Ok(None) => panic!("not closed within {LIMIT:?}"),
                Err(code) => break code,
            }
        };
        (frames, code)
    });
    overflow_all_but(&mut stack, &mut healthy).await;
    let (frames, code) = reader.await.unwrap();
    assert!(frames > 0, "the stalled client had frames buffered");
    assert_eq!(code, Some(4008), "after {frames} whole frames");
}

#[tokio::test]
async fn a_websocket_ping_is_answered_with_a_pong_of_its_payload() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    ws.send_raw(Message::Ping(b"odin-ping-42"[..].into())).await;
    let pong = loop {
        match tokio::time::timeout(LIMIT, ws_next(&mut ws))
            .await
            .expect("a pong in time")
        {
            Some(Message::Pong(payload)) => break payload,
            Some(Message::Close(f)) => panic!("closed instead: {f:?}"),
            Some(_) => {}
            None => panic!("connection ended before the pong"),
        }
    };
    assert_eq!(&pong[..], b"odin-ping-42");
}

/// The close the server answers a client's close with, read after sending
/// `close`; and that the server then ends the TCP connection.
async fn answer_to_close(
    close: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>,
) -> Option<(u16, String)> {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    ws.inner_mut().close(close).await.expect("close sent");
    let answer = loop {
        match tokio::time::timeout(LIMIT, ws.inner_mut().next())
            .await
            .expect("an answer in time")
        {
            Some(Ok(Message::Close(f))) => {
                break f.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => {}
            other => panic!("no close frame in answer: {other:?}"),
        }
    };
    // After the closing handshake the server drops the connection.
    let end = tokio::time::timeout(LIMIT, ws.inner_mut().next())
        .await
        .expect("the connection ends in time");
    assert!(end.is_none() || matches!(end, Some(Err(_))), "{end:?}");
    stack
        .server
        .wait_for_stats(LIMIT, |s| s.connection_count == 0)
        .await
        .expect("the server forgets the connection");
    answer
}

#[tokio::test]
async fn a_client_close_is_answered_with_its_code() {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let answer = answer_to_close(Some(CloseFrame {
        code: CloseCode::from(4100),
        reason: "done here".into(),
    }))
    .await;
    assert_eq!(answer.map(|(code, _)| code), Some(4100));
}

#[tokio::test]
async fn a_client_close_without_a_code_is_answered_without_one() {
    assert_eq!(answer_to_close(None).await, None);
}
