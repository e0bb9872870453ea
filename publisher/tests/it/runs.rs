//! Whole runs of the runner against in-memory sinks, on tokio's paused
//! clock: the schedule, duration, duplicates, recording and replay,
//! falling behind, and stopping while NATS is stuck, all without waiting
//! for real time.

use std::collections::HashSet;
use std::future::pending;
use std::path::PathBuf;
use std::time::Duration;

use odin_publisher::config::PublisherConfig;
use odin_publisher::outgoing::{EventKind, Outgoing};
use odin_publisher::sink::{MemorySink, Sink, SinkError};
use odin_publisher::{Error, Totals, run_with_sink};
use serde_json::Value;

/// Generous bound on any run in virtual time (it auto-advances).
const LIMIT: Duration = Duration::from_secs(600);

fn config(rate: f64, duration_ms: u64) -> PublisherConfig {
    PublisherConfig {
        tokens: 5,
        rate,
        duration: Some(Duration::from_millis(duration_ms)),
        tick: Duration::from_millis(500),
        seed: Some(7),
        ..PublisherConfig::default()
    }
}

async fn run_memory(config: PublisherConfig) -> (Totals, Vec<Outgoing>) {
    let mut sink = MemorySink::default();
    let totals = tokio::time::timeout(LIMIT, run_with_sink(config, &mut sink, pending()))
        .await
        .expect("run finished")
        .expect("run succeeded");
    (totals, sink.messages)
}

fn body(m: &Outgoing) -> Value {
    serde_json::from_slice(&m.payload).unwrap()
}

/// The body without what a replay changes.
fn content(m: &Outgoing) -> Value {
    let mut v = body(m);
    let o = v.as_object_mut().unwrap();
    o.remove("nonce");
    o.remove("timestamp");
    // A replay keeps the recording's schedule but runs it from its own
    // start: when each event was due is a stamp of the run, like timestamp.
    o.remove("scheduledAt");
    v
}

#[tokio::test(start_paused = true)]
async fn publishes_the_asked_rate_for_the_asked_duration() {
    let (totals, messages) = run_memory(config(200.0, 2000)).await;
    assert_eq!(totals.trade_price_updates, 400);
    assert_eq!(totals.elapsed_secs, 2.0);
    assert_eq!(totals.achieved_rate, 200.0);
    assert_eq!(totals.asked_rate, Some(200.0));
    assert_eq!(totals.events.trade_executed, 400);
    // Ticks at 0, 0.5, 1 and 1.5 s.
    assert_eq!(totals.events.batch_update, 4);
    assert_eq!(totals.events.market_stats, 4);
    assert_eq!(totals.messages, messages.len() as u64);
    assert_eq!(
        totals.price_updates_by_token.values().sum::<u64>(),
        totals.events.price_update
    );
    for kind in [
        EventKind::PriceUpdate,
        EventKind::VolumeUpdate,
        EventKind::TradeExecuted,
        EventKind::BatchUpdate,
        EventKind::MarketStats,
    ] {
        let n = messages.iter().filter(|m| m.kind == kind).count() as u64;
        assert_eq!(n, totals.events.get(kind), "{kind:?}");
    }
    assert!(totals.flushed && !totals.interrupted);
    assert_eq!((totals.skipped, totals.errors), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn duplicates_are_counted_apart() {
    let (totals, messages) = run_memory(PublisherConfig {
        dup_ratio: 0.3,
        ..config(500.0, 2000)
    })
    .await;
    assert_eq!(totals.trade_price_updates, 1000);
    let dups = messages.iter().filter(|m| m.duplicate).count() as u64;
    assert_eq!(totals.duplicates.total(), dups);
    assert_eq!(totals.messages, totals.events.total() + dups);
    let ratio = dups as f64 / totals.events.total() as f64;
    assert!((ratio - 0.3).abs() < 0.05, "{ratio}");
}

#[tokio::test(start_paused = true)]
async fn a_recording_replays_with_fresh_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let (recorded, original) = run_memory(PublisherConfig {
        record: Some(path.clone()),
        dup_ratio: 0.1,
        ..config(50.0, 1200)
    })
    .await;
    let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
    assert_eq!(lines, recorded.messages);

    let (replayed, copy) = run_memory(PublisherConfig {
        replay: Some(path),
        speed: 4.0,
        ..PublisherConfig::default()
    })
    .await;
    assert_eq!(replayed.events, recorded.events);
    assert_eq!(replayed.duplicates, recorded.duplicates);
    assert_eq!(replayed.seed, None);
    // Four times faster: the last step was at 1.18 s, so ~0.3 s.
    assert!(replayed.elapsed_secs < 0.35, "{}", replayed.elapsed_secs);
    let old_nonces: HashSet<_> = original.iter().map(|m| m.nonce.clone()).collect();
    for (a, b) in original.iter().zip(&copy) {
        assert_eq!(a.subject, b.subject);
        assert_eq!(a.duplicate, b.duplicate);
        assert_eq!(content(a), content(b));
        assert!(!old_nonces.contains(&b.nonce), "nonce {} reused", b.nonce);
        assert_eq!(body(b)["nonce"].as_str(), Some(b.nonce.as_str()));
        // Paced by the recording's schedule: each event says when it was due.
        assert!(body(b)["scheduledAt"].is_f64(), "{}", body(b));
    }
    for pair in copy.windows(2) {
        if pair[1].duplicate {
            assert_eq!(pair[0].nonce, pair[1].nonce);
            assert_eq!(pair[0].payload, pair[1].payload);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_committed_fixture_replays() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings/small-market.jsonl");
    let text = std::fs::read_to_string(&fixture).unwrap();
    let (totals, messages) = run_memory(PublisherConfig {
        replay: Some(fixture),
        speed: 50.0,
        ..PublisherConfig::default()
    })
    .await;
    assert_eq!(messages.len(), text.lines().count());
    assert!(totals.events.trade_executed > 0 && totals.events.market_stats > 0);
    assert!(totals.events.volume_update > 0 && totals.duplicates.total() > 0);
}

#[tokio::test(start_paused = true)]
async fn a_bad_recording_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"atMs":0,"subject":"odin.market.statistics","event":{"type":"market_stats","totalVolume24h":1,"totalTrades24h":1,"activeTokens":1,"timestamp":1,"nonce":"a"}}"#,
            "\n",
            r#"{"atMs":1,"subject":"odin.trades.x","event":{"type":"trade_executed","tokenId":"a.b"}}"#,
            "\n"
        ),
    )
    .unwrap();
    let mut sink = MemorySink::default();
    let config = PublisherConfig {
        replay: Some(path),
        ..PublisherConfig::default()
    };
    let err = tokio::time::timeout(LIMIT, run_with_sink(config, &mut sink, pending()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::ReplayLine { line: 2, .. }), "{err}");
    assert_eq!(sink.messages.len(), 1, "the good line before it went out");
}

/// A sink that stops taking messages for `stall` after `after` of them, as
/// the NATS client does when its buffer fills during an outage; `None`
/// stalls forever (flush too).
struct StallingSink {
    inner: MemorySink,
    after: usize,
    stall: Option<Duration>,
}

impl Sink for StallingSink {
    async fn publish(&mut self, message: Outgoing) -> Result<(), SinkError> {
        if self.inner.messages.len() == self.after {
            match self.stall {
                Some(d) => tokio::time::sleep(d).await,
                None => pending::<()>().await,
            }
        }
        self.inner.publish(message).await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        if self.stall.is_none() && self.inner.messages.len() >= self.after {
            pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn falling_behind_skips_instead_of_bursting() {
    let mut sink = StallingSink {
        inner: MemorySink::default(),
        after: 100,
        stall: Some(Duration::from_secs(3)),
    };
    let config = PublisherConfig {
        max_lag: Duration::from_millis(500),
        ..config(100.0, 6000)
    };
    let totals = tokio::time::timeout(LIMIT, run_with_sink(config, &mut sink, pending()))
        .await
        .unwrap()
        .unwrap();
    // About 3 s of the 6 s (300 slots) were skipped, the rest published.
    assert!((295..=305).contains(&totals.skipped), "{}", totals.skipped);
    assert_eq!(totals.trade_price_updates + totals.skipped, 600);
    // No burst: once back, nothing went out more than max-lag late.
    assert_eq!(totals.elapsed_secs, 6.0);
}

#[tokio::test(start_paused = true)]
async fn a_stop_does_not_hang_on_a_stuck_connection() {
    let mut sink = StallingSink {
        inner: MemorySink::default(),
        after: 50,
        stall: None,
    };
    let config = PublisherConfig {
        duration: None,
        flush_timeout: Duration::from_secs(2),
        ..config(100.0, 1)
    };
    let stop = tokio::time::sleep(Duration::from_secs(10));
    let start = tokio::time::Instant::now();
    let totals = tokio::time::timeout(LIMIT, run_with_sink(config, &mut sink, stop))
        .await
        .unwrap()
        .unwrap();
    assert!(totals.interrupted);
    assert!(!totals.flushed);
    assert_eq!(totals.messages, 50);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(12),
        "stop + flush timeout"
    );
}
