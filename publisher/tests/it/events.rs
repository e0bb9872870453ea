//! Snapshots of one message of each kind, for seed 42.
//!
//! The clock is a [`FixedStamper`] and the nonce instance is fixed, so
//! the snapshots are byte-stable without redactions. A change here is a
//! change of what every consumer sees: review it like a protocol change.

use std::time::Duration;

use odin_protocol::Subjects;
use odin_publisher::outgoing::{EventKind, Outgoing};
use odin_publisher::schedule::Pacing;
use odin_publisher::sim::{SimParams, Simulation};
use odin_publisher::source::Source;
use odin_publisher::stamp::FixedStamper;
use serde_json::{Value, json};

/// The first message of `kind` in the first 40 steps of seed 42.
fn first_of(kind: EventKind, trade_price: bool) -> Value {
    let params = SimParams {
        tokens: 3,
        rate: 10.0,
        pacing: Pacing::Uniform,
        tick: Duration::from_secs(1),
        seed: 42,
        dup_ratio: 0.0,
        skew: 1.0,
        volatility: 1.0,
        batch_size: 1000,
    };
    let mut sim = Simulation::new(&params, &Subjects::default(), 0x0123_4567_89ab_cdef).unwrap();
    let mut stamper = FixedStamper::new(1_764_288_000_123.456, 0.001, 0x0123_4567_89ab_cdef);
    let mut out: Vec<Outgoing> = Vec::new();
    for _ in 0..40 {
        sim.step(&mut stamper, &mut out).unwrap();
    }
    let m = out
        .iter()
        // Volume updates only come from the second tick on (after trades).
        .find(|m| m.kind == kind && m.trade_price == trade_price)
        .unwrap_or_else(|| panic!("no {kind:?} in the first 40 steps"));
    json!({
        "subject": m.subject.as_str(),
        "natsMsgId": m.nonce.as_str(),
        "body": serde_json::from_slice::<Value>(&m.payload).unwrap(),
    })
}

#[test]
fn price_update_from_a_trade() {
    insta::assert_json_snapshot!(first_of(EventKind::PriceUpdate, true));
}

#[test]
fn price_update_from_the_scheduler() {
    insta::assert_json_snapshot!(first_of(EventKind::PriceUpdate, false));
}

#[test]
fn trade_executed() {
    insta::assert_json_snapshot!(first_of(EventKind::TradeExecuted, false));
}

#[test]
fn volume_update() {
    insta::assert_json_snapshot!(first_of(EventKind::VolumeUpdate, false));
}

#[test]
fn batch_update() {
    insta::assert_json_snapshot!(first_of(EventKind::BatchUpdate, false));
}

#[test]
fn market_stats() {
    insta::assert_json_snapshot!(first_of(EventKind::MarketStats, false));
}

#[test]
fn header_equals_body_nonce_and_timestamp_has_microseconds() {
    for (kind, trade) in [
        (EventKind::PriceUpdate, true),
        (EventKind::TradeExecuted, false),
        (EventKind::BatchUpdate, false),
    ] {
        let v = first_of(kind, trade);
        assert_eq!(v["natsMsgId"], v["body"]["nonce"]);
        let ts = v["body"]["timestamp"].as_f64().unwrap();
        assert_ne!(ts.fract(), 0.0, "a fraction of a millisecond is carried");
    }
}
