//! `PROTOCOL.md` §3–§4: messages, channels, byte-identical forwarding,
//! snapshots, de-duplication and per-token order.

use odin_harness::wait::LIMIT;
use odin_protocol::message::{BatchEntry, BatchSource, BatchUpdate, MarketStats, VolumeUpdate};
use odin_protocol::time::now_millis;
use odin_protocol::{Event, Nonce, TokenId};
use serde_json::json;

use super::support::Stack;

#[tokio::test]
async fn greets_then_answers_subscribe_unsubscribe_and_ping_with_ids() {
    let stack = Stack::start().await;
    let mut ws = stack.client().await;
    let hello = ws.hello.clone();
    assert_eq!(hello["protocolVersion"], 1);
    assert_eq!(hello["serverId"], stack.server.server_id());
    assert_eq!(hello["heartbeatIntervalMs"], 30_000);
    assert!(hello["clientId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(hello["timestamp"].as_f64().is_some_and(|t| t > 1.7e12));
    assert!(hello["nonce"].as_str().is_some_and(|s| !s.is_empty()));

    ws.send_json(json!({"type":"subscribe","channels":["token.BTC","batch","market"],"id":"s1"}))
        .await;
    let sub = ws.next_of_type("subscribed").await;
    assert_eq!(sub["channels"], json!(["token.BTC", "batch", "market"]));
    assert_eq!(sub["id"], "s1");
    ws.send_json(json!({"type":"unsubscribe","channels":["batch"],"id":"u1"}))
        .await;
    let unsub = ws.next_of_type("unsubscribed").await;
    assert_eq!(
        (unsub["channels"].clone(), unsub["id"].clone()),
        (json!(["batch"]), json!("u1"))
    );
    ws.send_json(json!({"type":"ping","id":"p1"})).await;
    let pong = ws.next_of_type("pong").await;
    assert_eq!(pong["id"], "p1");
    ws.send_json(json!({"type":"ping"})).await;
    let pong = ws.next_of_type("pong").await;
    assert!(pong.get("id").is_none(), "{pong}");
    // Every server message carries a distinct nonce.
    let nonces = [
        &hello["nonce"],
        &sub["nonce"],
        &unsub["nonce"],
        &pong["nonce"],
    ];
    for (i, a) in nonces.iter().enumerate() {
        for b in &nonces[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[tokio::test]
async fn each_channel_gets_its_events_byte_for_byte() {
    let mut stack = Stack::start().await;
    let mut tok = stack.client().await;
    tok.subscribe(&["token.BTC"]).await;
    let mut batch = stack.client().await;
    batch.subscribe(&["batch"]).await;
    let mut market = stack.client().await;
    market.subscribe(&["market"]).await;
    let mut other = stack.client().await;
    other.subscribe(&["token.ETH"]).await;

    let p = &mut stack.publisher;
    // Odd spacing and key order prove the server forwards the bytes as
    // published instead of re-encoding them.
    // The timestamp keeps a microsecond fraction and is recent (an event
    // older than `--max-event-age` is invalid).
    let odd = format!(
        r#"{{ "nonce":"odd-1",  "type" : "price_update","tokenId":"BTC","price":42.5,"source":"scheduler","timestamp":{:.3} }}"#,
        now_millis().floor() + 0.456
    );
    p.raw("odin.token.BTC.price".into(), Some("odd-1"), odd.clone())
        .await;
    let volume = Event::VolumeUpdate(VolumeUpdate {
        token_id: TokenId::parse("BTC").unwrap(),
        volume_24h: 1234.5,
        timestamp: now_millis(),
        nonce: Nonce::parse("vol-1").unwrap(),
    });
    let volume_text = p.event(&volume).await;
    let trade = p.trade_event("BTC", 1);
    let trade_text = p.event(&trade).await;
    let b = Event::BatchUpdate(BatchUpdate {
        source: BatchSource::Scheduler,
        updates: vec![BatchEntry {
            token_id: TokenId::parse("BTC").unwrap(),
            price: 42.5,
            volume_24h: Some(1.0),
        }],
        timestamp: now_millis(),
        nonce: Nonce::parse("batch-1").unwrap(),
    });
    let b_text = p.event(&b).await;
    let m = Event::MarketStats(MarketStats {
        total_volume_24h: 10.0,
        total_trades_24h: 3,
        active_tokens: 1,
        timestamp: now_millis(),
        nonce: Nonce::parse("market-1").unwrap(),
    });
    let m_text = p.event(&m).await;

    // One more event per channel: each client's next frame after its own
    // events must be its channel's fence, so nothing else reached it.
    let batch_fence = Event::BatchUpdate(BatchUpdate {
        source: BatchSource::Scheduler,
        updates: vec![BatchEntry {
            token_id: TokenId::parse("BTC").unwrap(),
            price: 43.0,
            volume_24h: None,
        }],
        timestamp: now_millis(),
        nonce: Nonce::parse("batch-fence").unwrap(),
    });
    let market_fence = p.market_event(4);
    let fences = [
        p.price("BTC", 43.0).await,
        p.event(&batch_fence).await,
        p.event(&market_fence).await,
        p.price("ETH", 1.0).await,
    ];

    assert_eq!(tok.next_text().await, odd);
    assert_eq!(tok.next_text().await, volume_text);
    assert_eq!(tok.next_text().await, trade_text);
    assert_eq!(batch.next_text().await, b_text);
    assert_eq!(market.next_text().await, m_text);
    for (ws, fence) in [&mut tok, &mut batch, &mut market, &mut other]
        .into_iter()
        .zip(&fences)
    {
        ws.nothing_before(fence).await;
    }
}

#[tokio::test]
async fn unsubscribing_stops_delivery() {
    let mut stack = Stack::start().await;
    let mut ws = stack.client().await;
    // `token.ETH` stays subscribed: it carries the fence.
    ws.subscribe(&["token.BTC", "token.ETH"]).await;
    let first = stack.publisher.price("BTC", 1.0).await;
    assert_eq!(ws.next_text().await, first);
    ws.send_json(json!({"type":"unsubscribe","channels":["token.BTC"]}))
        .await;
    ws.next_of_type("unsubscribed").await;
    stack.publisher.price("BTC", 2.0).await;
    let fence = stack.publisher.price("ETH", 1.0).await;
    ws.nothing_before(&fence).await;
}

#[tokio::test]
async fn subscribe_sends_the_latest_price_as_a_snapshot_once() {
    let mut stack = Stack::start().await;
    stack.publisher.price("BTC", 1.0).await;
    let latest = stack.publisher.price("BTC", 2.0).await;
    // Volume and trades are not snapshotted.
    let t = stack.publisher.trade_event("BTC", 1);
    stack.publisher.event(&t).await;
    stack
        .server
        .wait_for_stats(LIMIT, |s| s.messages_received == 3)
        .await
        .unwrap();

    let mut ws = stack.client().await;
    ws.send_json(json!({"type":"subscribe","channels":["token.BTC","token.NEVER"]}))
        .await;
    ws.next_of_type("subscribed").await;
    assert_eq!(
        ws.next_text().await,
        latest,
        "snapshot is the original bytes"
    );
    // Subscribing again to a channel already held sends no second snapshot:
    // one would be queued right after `subscribed`, before the live event
    // published next.
    ws.subscribe(&["token.BTC"]).await;
    let live = stack.publisher.price("BTC", 3.0).await;
    ws.nothing_before(&live).await;
    // After unsubscribing, a new subscribe snapshots again.
    ws.send_json(json!({"type":"unsubscribe","channels":["token.BTC"]}))
        .await;
    ws.next_of_type("unsubscribed").await;
    ws.subscribe(&["token.BTC"]).await;
    assert_eq!(ws.next_text().await, live);
}

#[tokio::test]
async fn duplicates_are_dropped_once_at_ingest() {
    let mut stack = Stack::start().await;
    let mut a = stack.client().await;
    a.subscribe(&["token.BTC"]).await;
    let mut b = stack.client().await;
    b.subscribe(&["token.BTC"]).await;
    let p = &mut stack.publisher;

    let e = p.price_event("BTC", 1.0);
    let text = e.to_json();
    // With the header, three times.
    for _ in 0..3 {
        p.raw(
            "odin.token.BTC.price".into(),
            Some(e.nonce().as_str()),
            text.clone(),
        )
        .await;
    }
    // Without the header: the body's nonce is the key.
    let e2 = p.price_event("BTC", 2.0);
    let text2 = e2.to_json();
    for _ in 0..2 {
        p.raw("odin.token.BTC.price".into(), None, text2.clone())
            .await;
    }
    // Header and body differ: the header wins, so the same body under two
    // different headers is two events, and two bodies under one header one.
    let e3 = p.price_event("BTC", 3.0);
    let text3 = e3.to_json();
    p.raw("odin.token.BTC.price".into(), Some("hdr-x"), text3.clone())
        .await;
    p.raw("odin.token.BTC.price".into(), Some("hdr-y"), text3.clone())
        .await;
    let e4 = p.price_event("BTC", 4.0);
    p.raw("odin.token.BTC.price".into(), Some("hdr-x"), e4.to_json())
        .await;
    p.client.flush().await.unwrap();
    // A last, distinct event: a repeat let through would come before it.
    let fence = p.price("BTC", 5.0).await;

    for ws in [&mut a, &mut b] {
        assert_eq!(ws.next_text().await, text);
        assert_eq!(ws.next_text().await, text2);
        assert_eq!(ws.next_text().await, text3);
        assert_eq!(ws.next_text().await, text3);
        ws.nothing_before(&fence).await;
    }
    let stats = stack.server.stats().await.unwrap();
    assert_eq!(stats.messages_received, 8 + 1, "8 and the fence");
    assert_eq!(
        stats.duplicates_dropped, 4,
        "counted once per duplicate, not per client"
    );
}

#[tokio::test]
async fn invalid_events_are_dropped_and_counted() {
    let mut stack = Stack::start().await;
    let mut ws = stack.client().await;
    ws.subscribe(&["token.BTC", "batch", "market"]).await;
    let p = &mut stack.publisher;
    let good = p.price_event("BTC", 1.0).to_json();
    let cases: Vec<(&str, String)> = vec![
        ("odin.token.BTC.price", "not json".into()),
        ("odin.token.BTC.price", "[1,2]".into()),
        ("odin.token.BTC.price", r#"{"type":"dance","nonce":"x","timestamp":1}"#.into()),
        ("odin.token.BTC.price", r#"{"type":"price_update","tokenId":"BTC","price":1,"source":"trade","timestamp":1}"#.into()),
        ("odin.token.BTC.price", r#"{"type":"price_update","tokenId":"BTC","price":"1","source":"trade","timestamp":1,"nonce":"n"}"#.into()),
        ("odin.token.ETH.price", good.clone()),
        ("odin.trades.BTC", good.clone()),
        ("odin.market.statistics", good.clone()),
        ("odin.unknown", good.clone()),
    ];
    for (subject, payload) in &cases {
        p.raw(subject.to_string(), None, payload.clone()).await;
    }
    p.raw("odin.token.BTC.price".into(), None, vec![0xffu8, 0xfe])
        .await;
    p.client.flush().await.unwrap();
    // Ingest counts a message as received before it has judged it, so the
    // invalid count may trail the received one for an instant: wait on both.
    let sent = cases.len() as u64 + 1;
    let stats = stack
        .server
        .wait_for_stats(LIMIT, |s| {
            s.messages_received == sent && s.invalid_events == sent
        })
        .await
        .unwrap();
    assert_eq!(stats.invalid_events, sent);
    // None of them reached the client: the next frame is a valid event
    // published after them all.
    let fence = stack.publisher.price("BTC", 2.0).await;
    ws.nothing_before(&fence).await;
}

#[tokio::test]
async fn per_token_order_holds_under_a_burst() {
    let mut stack = Stack::start().await;
    let mut ws = stack.client().await;
    ws.subscribe(&["token.A", "token.B"]).await;
    const N: u64 = 3000;
    let p = &mut stack.publisher;
    for i in 0..N {
        for token in ["A", "B"] {
            let e = p.trade_event(token, i);
            p.raw(
                e.subject(&p.subjects),
                Some(e.nonce().as_str()),
                e.to_json(),
            )
            .await;
        }
    }
    p.client.flush().await.unwrap();
    let mut next = [0u64, 0u64];
    for _ in 0..2 * N {
        let v: serde_json::Value = serde_json::from_str(&ws.next_text().await).unwrap();
        let idx = usize::from(v["tokenId"] == "B");
        assert_eq!(v["tradeId"], format!("t{}", next[idx]), "out of order: {v}");
        next[idx] += 1;
    }
    assert_eq!(next, [N, N]);
}

#[tokio::test]
async fn a_custom_subject_prefix_is_honoured() {
    let mut stack = Stack::start_with(|c| {
        c.subjects = odin_protocol::Subjects::new("acme.prices").unwrap();
    })
    .await;
    let mut ws = stack.client().await;
    ws.subscribe(&["token.BTC"]).await;
    stack.publisher.price("BTC", 1.0).await; // default prefix: not ours
    let e = stack.publisher.price_event("BTC", 2.0);
    let text = e.to_json();
    stack
        .publisher
        .raw("acme.prices.token.BTC.price".into(), None, text.clone())
        .await;
    stack.publisher.client.flush().await.unwrap();
    assert_eq!(ws.next_text().await, text);
}
