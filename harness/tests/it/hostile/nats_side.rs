//! A buggy or hostile publisher: events whose values or timestamps are
//! impossible, or that are too large, are invalid (counted, never
//! delivered, never in the latency figures), and a flood of new token ids
//! stays within the token budget, while the control client keeps its feed.

use odin_harness::wait::LIMIT;
use odin_protocol::time::now_millis;
use serde_json::{Value, json};

use super::control::{Control, LATENCY_BOUND_MS};
use crate::server::support::Stack;

#[tokio::test]
async fn impossible_prices_and_timestamps_are_invalid_and_the_latency_figures_stay_true() {
    let mut stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let mut victim = stack.client().await;
    victim.subscribe(&["token.BAD"]).await;
    let ep = stack.server.endpoint().clone();
    let before = ep.stats().await.unwrap();
    let now = now_millis();
    let hour = 3_600_000.0;
    let cases: [(&str, f64, f64); 6] = [
        ("a negative price", -5.0, now),
        ("a zero price", 0.0, now),
        ("timestamp 0", 1.0, 0.0),
        ("timestamp -1e308", 1.0, -1e308),
        ("two hours old", 1.0, now - 2.0 * hour),
        ("an hour ahead", 1.0, now + hour),
    ];
    for (i, (what, price, timestamp)) in cases.iter().enumerate() {
        let nonce = format!("bad-{i}");
        let event = json!({"type": "price_update", "tokenId": "BAD", "price": price,
                           "source": "trade", "timestamp": timestamp, "nonce": nonce, "what": what});
        stack
            .publisher
            .raw(
                "odin.token.BAD.price".into(),
                Some(&nonce),
                event.to_string(),
            )
            .await;
    }
    // Over the size limit (256 KiB by default), however well formed.
    let oversized = json!({"type": "price_update", "tokenId": "BAD", "price": 1.0,
                           "source": "trade", "timestamp": now, "nonce": "bad-big",
                           "pad": "x".repeat(300 << 10)});
    stack
        .publisher
        .raw(
            "odin.token.BAD.price".into(),
            Some("bad-big"),
            oversized.to_string(),
        )
        .await;
    let good = stack.publisher.price("BAD", 2.5).await;
    let first: Value = victim.next_of_type("price_update").await;
    assert_eq!(
        first,
        serde_json::from_str::<Value>(&good).unwrap(),
        "the first price the subscriber sees is the good one"
    );
    let invalid = before.invalid_events + cases.len() as u64 + 1;
    let stats = ep
        .wait_for_stats(LIMIT, |s| s.invalid_events == invalid)
        .await
        .unwrap_or_else(|e| panic!("every impossible event counted as invalid: {e}"));
    assert!(
        stats.peak_latency < LATENCY_BOUND_MS,
        "peakLatency {} ms: an impossible timestamp reached the latency figures",
        stats.peak_latency
    );
    control.finish().await;
}

#[tokio::test]
async fn a_flood_of_new_token_ids_is_held_within_the_token_budget() {
    const BUDGET: usize = 64;
    const FLOOD: usize = 1_000;
    let mut stack = Stack::start_with(|c| {
        c.token_limits = odin_server::TokenLimits {
            max_tokens: BUDGET,
            ..odin_server::TokenLimits::default()
        };
    })
    .await;
    let control = Control::start(&stack).await;
    let ep = stack.server.endpoint().clone();
    // A token someone holds is never evicted, however old its price.
    let mut holder = stack.client().await;
    holder.subscribe(&["token.HELD"]).await;
    let held = stack.publisher.price("HELD", 7.0).await;
    holder.next_of_type("price_update").await;
    let before = ep.stats().await.unwrap();
    for n in 0..FLOOD {
        stack.publisher.price(&format!("FLOOD{n}"), 1.0).await;
    }
    let received = before.messages_received + FLOOD as u64;
    let stats = ep
        .wait_for_stats(LIMIT, |s| s.messages_received >= received)
        .await
        .unwrap_or_else(|e| panic!("the flood reached the gateway: {e}"));
    assert!(
        stats.tokens_held as usize <= BUDGET,
        "{} tokens held, the budget is {BUDGET}",
        stats.tokens_held
    );
    assert!(
        stats.tokens_evicted as usize >= FLOOD - BUDGET,
        "{} evicted",
        stats.tokens_evicted
    );
    assert_eq!(
        stats.tokens_refused, 0,
        "idle tokens could always be evicted"
    );
    // The newest flood token and the held one keep their snapshots.
    let mut late = stack.client().await;
    late.subscribe(&["token.HELD"]).await;
    let snapshot: Value = late.next_of_type("price_update").await;
    assert_eq!(snapshot, serde_json::from_str::<Value>(&held).unwrap());
    let mut newest = stack.client().await;
    let last = format!("token.FLOOD{}", FLOOD - 1);
    newest.subscribe(&[last.as_str()]).await;
    let snapshot: Value = newest.next_of_type("price_update").await;
    assert_eq!(snapshot["tokenId"], format!("FLOOD{}", FLOOD - 1));
    control.finish().await;
}
