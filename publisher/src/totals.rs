//! What a run published, counted as it went: the figures the load tests
//! compare with what was delivered, and the final line the binary prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::outgoing::{EventKind, KindCounts, Meta};

/// Where a run's events came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The market simulation.
    #[default]
    Simulate,
    /// A recording (`--replay`).
    Replay,
}

/// The totals of one run. Serialised as one JSON object (camelCase keys;
/// event counts keyed by the wire `type`).
///
/// Counts are of messages the NATS client *accepted*: after a clean stop
/// with `flushed: true` the server has all of them, unless a NATS outage
/// broke a connection that had some in flight (see [`crate::sink`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Simulation or replay.
    pub mode: Mode,
    /// The simulation's seed (random unless `--seed` was given); `None` for
    /// a replay.
    pub seed: Option<u64>,
    /// The instance part of this run's nonces and trade ids (16 hex digits).
    pub run_id: String,
    /// Seconds from the first slot to the end of publishing (flush excluded).
    pub elapsed_secs: f64,
    /// `--rate`, for a simulation.
    pub asked_rate: Option<f64>,
    /// Trade `price_update`s per second actually published.
    pub achieved_rate: f64,
    /// Trade `price_update`s published (what `--rate` paces).
    pub trade_price_updates: u64,
    /// Distinct events published, by type (duplicates not included).
    pub events: KindCounts,
    /// Deliberate duplicates published (`--dup-ratio`), by type.
    pub duplicates: KindCounts,
    /// Distinct `price_update`s per token id (trade and scheduler).
    pub price_updates_by_token: BTreeMap<String, u64>,
    /// Distinct `trade_executed`s per token id.
    #[serde(default)]
    pub trades_by_token: BTreeMap<String, u64>,
    /// Distinct `volume_update`s per token id.
    #[serde(default)]
    pub volume_updates_by_token: BTreeMap<String, u64>,
    /// The `timestamp` of the last `price_update` published per token id:
    /// the price every subscriber should end on.
    #[serde(default)]
    pub last_price_at_by_token: BTreeMap<String, f64>,
    /// Every message published: events plus duplicates.
    pub messages: u64,
    /// Trade slots skipped because the publisher fell more than `--max-lag`
    /// behind its schedule (e.g. during a NATS outage).
    pub skipped: u64,
    /// Publishes NATS refused.
    pub errors: u64,
    /// Times the NATS connection was lost.
    pub disconnects: u64,
    /// Times it came back.
    pub reconnects: u64,
    /// Prices sent again because the last-prices store had not confirmed
    /// them (`--confirm-stored-prices`).
    #[serde(default)]
    pub stored_prices_resent: u64,
    /// Prices the store had still not confirmed when the run ended.
    #[serde(default)]
    pub stored_prices_unconfirmed: u64,
    /// Whether the final flush reached NATS before `--flush-timeout`.
    pub flushed: bool,
    /// Whether the run was stopped by the shutdown signal (rather than by
    /// `--duration` or the end of a recording).
    pub interrupted: bool,
}

/// Running counts, kept by the runner (one task, no atomics).
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Distinct events by kind.
    pub events: KindCounts,
    /// Duplicates by kind.
    pub duplicates: KindCounts,
    /// Distinct per-token events by token index:
    /// `[price_update, volume_update, trade_executed]`.
    pub by_token: Vec<[u64; 3]>,
    /// The `timestamp` of the last `price_update` by token index (0 when
    /// none).
    pub last_price_at: Vec<f64>,
    /// Trade `price_update`s.
    pub trade_price_updates: u64,
    /// Slots skipped.
    pub skipped: u64,
    /// Refused publishes.
    pub errors: u64,
}

impl Tally {
    /// Counts one published message.
    pub fn count(&mut self, message: Meta) {
        if message.duplicate {
            self.duplicates.add(message.kind);
            return;
        }
        self.events.add(message.kind);
        if message.kind == EventKind::PriceUpdate {
            self.trade_price_updates += u64::from(message.trade_price);
        }
        let slot = match message.kind {
            EventKind::PriceUpdate => 0,
            EventKind::VolumeUpdate => 1,
            EventKind::TradeExecuted => 2,
            _ => return,
        };
        if let Some(i) = message.token {
            let i = i as usize;
            if i >= self.by_token.len() {
                self.by_token.resize(i + 1, [0; 3]);
                self.last_price_at.resize(i + 1, 0.0);
            }
            self.by_token[i][slot] += 1;
            if slot == 0 {
                self.last_price_at[i] = message.timestamp;
            }
        }
    }

    /// Every message counted.
    pub fn messages(&self) -> u64 {
        self.events.total() + self.duplicates.total()
    }
}

impl Totals {
    /// The one human-readable line printed at the end of a run.
    pub fn summary_line(&self) -> String {
        let e = &self.events;
        let mut line = format!(
            "published {} events (price_update {} [trade {}], trade_executed {}, volume_update {}, batch_update {}, market_stats {}) + {} duplicates in {:.2}s: {:.1} price events/s",
            e.total(),
            e.price_update,
            self.trade_price_updates,
            e.trade_executed,
            e.volume_update,
            e.batch_update,
            e.market_stats,
            self.duplicates.total(),
            self.elapsed_secs,
            self.achieved_rate,
        );
        if let Some(asked) = self.asked_rate {
            let _ = write!(line, " (asked {asked})");
        }
        let _ = write!(
            line,
            ", {} skipped, {} errors, {} disconnects, flushed: {}",
            self.skipped, self.errors, self.disconnects, self.flushed
        );
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: EventKind, token: u32, timestamp: f64, duplicate: bool) -> Meta {
        Meta {
            kind,
            trade_price: kind == EventKind::PriceUpdate,
            token: Some(token),
            duplicate,
            timestamp,
        }
    }

    #[test]
    fn the_tally_keeps_each_tokens_last_price() {
        let mut tally = Tally::default();
        tally.count(meta(EventKind::PriceUpdate, 2, 10.0, false));
        tally.count(meta(EventKind::PriceUpdate, 2, 20.0, false));
        // Neither a trade nor a duplicate is a price to end on.
        tally.count(meta(EventKind::TradeExecuted, 2, 30.0, false));
        tally.count(meta(EventKind::PriceUpdate, 2, 40.0, true));
        tally.count(meta(EventKind::PriceUpdate, 0, 5.0, false));
        assert_eq!(tally.last_price_at, [5.0, 0.0, 20.0]);
        assert_eq!(tally.by_token[2], [2, 0, 1]);
    }
}
