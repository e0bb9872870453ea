//! A short simulated run, captured from NATS and checked message by
//! message against the protocol and against the publisher's own totals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use odin_harness::nats::NatsServer;
use odin_harness::publisher::{InProcessPublisher, test_config};
use odin_harness::wait::LIMIT;
use odin_protocol::Event;
use odin_protocol::message::PriceSource;
use odin_protocol::time::now_millis;
use odin_publisher::PublisherConfig;

use super::support::{Capture, assert_on_the_wire};

#[tokio::test]
async fn a_short_run_is_on_the_wire_as_the_protocol_says() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let mut capture = Capture::start(&nats.url()).await.expect("subscribed");
    let config = PublisherConfig {
        tokens: 6,
        rate: 200.0,
        duration: Some(Duration::from_secs(2)),
        tick: Duration::from_millis(500),
        dup_ratio: 0.05,
        seed: Some(11),
        ..test_config(&nats.url())
    };
    let from = now_millis();
    let totals = InProcessPublisher::start(config)
        .unwrap()
        .wait(LIMIT)
        .await
        .expect("the run ends by itself");
    let to = now_millis();
    capture.wait_for(totals.messages as usize).await.unwrap();
    capture.drain();
    let messages = &capture.messages;

    // Every message was published and counted, and nothing else.
    assert_eq!(messages.len() as u64, totals.messages);
    assert_eq!(totals.trade_price_updates, 400);
    assert!(
        (totals.achieved_rate - 200.0).abs() <= 2.0,
        "{}",
        totals.achieved_rate
    );
    assert!(totals.flushed && !totals.interrupted && totals.errors == 0);
    assert_on_the_wire(messages, from, to);

    // Nonces: unique, except deliberate duplicates right after their
    // original, with the same bytes.
    let mut nonces = HashSet::new();
    let mut duplicates = 0;
    for (i, m) in messages.iter().enumerate() {
        if !nonces.insert(m.nonce().to_owned()) {
            assert_eq!(
                messages[i - 1].payload,
                m.payload,
                "a repeat is a true duplicate"
            );
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, totals.duplicates.total());
    assert!(duplicates > 0);

    // Counts by type and by token equal the totals.
    let mut seen = HashSet::new();
    let mut by_type: HashMap<&str, u64> = HashMap::new();
    let mut price_by_token: BTreeMap<String, u64> = BTreeMap::new();
    let unique: Vec<_> = messages
        .iter()
        .filter(|m| seen.insert(m.nonce().to_owned()))
        .collect();
    for m in &unique {
        let event = m.event();
        *by_type.entry(event.type_name()).or_default() += 1;
        if let Event::PriceUpdate(p) = &event {
            *price_by_token.entry(p.token_id.to_string()).or_default() += 1;
        }
    }
    let e = &totals.events;
    assert_eq!(by_type["price_update"], e.price_update);
    assert_eq!(by_type["trade_executed"], e.trade_executed);
    assert_eq!(by_type["volume_update"], e.volume_update);
    assert_eq!(by_type["batch_update"], e.batch_update);
    assert_eq!(by_type["market_stats"], e.market_stats);
    assert_eq!(price_by_token, totals.price_updates_by_token);

    // The figures are consistent with the trades that were published.
    let mut traded: HashMap<String, f64> = HashMap::new();
    let mut trades = 0u64;
    let mut last_price: HashMap<String, f64> = HashMap::new();
    let mut pending_trade: Option<(String, f64)> = None;
    for m in &unique {
        match m.event() {
            Event::TradeExecuted(t) => {
                *traded.entry(t.token_id.to_string()).or_default() += t.price * t.amount;
                trades += 1;
                pending_trade = Some((t.token_id.to_string(), t.price));
            }
            Event::PriceUpdate(p) => {
                if p.source == PriceSource::Trade {
                    // Each trade's price update follows its trade.
                    assert_eq!(
                        pending_trade.take(),
                        Some((p.token_id.to_string(), p.price))
                    );
                }
                assert_eq!(
                    p.previous_price,
                    last_price.get(p.token_id.as_str()).copied()
                );
                last_price.insert(p.token_id.to_string(), p.price);
            }
            Event::VolumeUpdate(v) => {
                let sum = traded[v.token_id.as_str()];
                assert!(
                    (v.volume_24h - sum).abs() < 0.01,
                    "{} vs {sum}",
                    v.volume_24h
                );
            }
            Event::BatchUpdate(b) => {
                assert_eq!(b.updates.len(), 6);
                for u in &b.updates {
                    assert_eq!(Some(&u.price), last_price.get(u.token_id.as_str()));
                }
            }
            Event::MarketStats(s) => {
                assert_eq!(s.total_trades_24h, trades);
                let sum: f64 = traded.values().sum();
                assert!((s.total_volume_24h - sum).abs() < 0.1);
            }
        }
    }
}

#[tokio::test]
async fn concurrent_publishers_never_share_a_nonce_unless_asked() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let run_pair = |deterministic: bool| {
        let url = nats.url();
        async move {
            let mut capture = Capture::start(&url).await.expect("subscribed");
            let config = PublisherConfig {
                duration: Some(Duration::from_millis(500)),
                deterministic_nonces: deterministic,
                ..test_config(&url)
            };
            let a = InProcessPublisher::start(config.clone()).unwrap();
            let b = InProcessPublisher::start(config).unwrap();
            let (a, b) = (a.wait(LIMIT).await.unwrap(), b.wait(LIMIT).await.unwrap());
            capture
                .wait_for((a.messages + b.messages) as usize)
                .await
                .unwrap();
            let distinct: HashSet<_> = capture
                .messages
                .iter()
                .map(|m| m.nonce().to_owned())
                .collect();
            (a, b, distinct.len() as u64)
        }
    };
    // Same seed, same events, but every nonce distinct: both reach clients.
    let (a, b, distinct) = run_pair(false).await;
    assert_ne!(a.run_id, b.run_id);
    assert_eq!(distinct, a.messages + b.messages);
    // --deterministic-nonces: a doubled publisher, every event twice.
    let (a, b, distinct) = run_pair(true).await;
    assert_eq!(a.run_id, b.run_id);
    assert_eq!(distinct, a.messages);
}
