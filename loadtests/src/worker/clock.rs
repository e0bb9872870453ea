//! A remote worker's clock against its coordinator's. Latency is the time
//! from an event's `timestamp` (the publisher's clock: the publisher runs
//! beside the coordinator) to its arrival (the worker's clock), so a worker
//! on another host would add the two clocks' difference to every figure.
//! Containers on one machine share its clock; hosts may not, even with NTP
//! (a millisecond apart is common, more over a WAN).
//!
//! The worker asks the coordinator the time over NATS a few times, as NTP
//! does: with `t0` and `t1` its own clock before and after an exchange and
//! `c` the coordinator's answer, the offset is `c − (t0 + t1) / 2`, within
//! half the round trip. The exchange with the shortest round trip is the
//! tightest. An offset inside its own error bound is indistinguishable from
//! none and is not applied (the clocks are taken to agree); a larger one is
//! added to every latency the worker measures.

use serde::{Deserialize, Serialize};

/// One exchange: the worker's clock before and after, the coordinator's
/// answer between (protocol milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exchange {
    /// The worker's clock when it asked.
    pub sent_ms: f64,
    /// The coordinator's clock when it answered.
    pub coordinator_ms: f64,
    /// The worker's clock when the answer came.
    pub received_ms: f64,
}

/// How far a worker's clock is behind the coordinator's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClockOffset {
    /// Coordinator's clock minus the worker's, milliseconds.
    pub offset_ms: f64,
    /// The round trip of the exchange it comes from; the offset is known
    /// within half of it.
    pub round_trip_ms: f64,
    /// Whether latencies are corrected by it (it is larger than its error).
    pub applied: bool,
}

impl ClockOffset {
    /// The estimate from the exchange with the shortest round trip; `None`
    /// without any.
    pub fn estimate(exchanges: &[Exchange]) -> Option<ClockOffset> {
        let best = exchanges
            .iter()
            .filter(|e| e.received_ms >= e.sent_ms)
            .min_by(|a, b| (a.received_ms - a.sent_ms).total_cmp(&(b.received_ms - b.sent_ms)))?;
        let round_trip_ms = best.received_ms - best.sent_ms;
        let offset_ms = best.coordinator_ms - (best.sent_ms + best.received_ms) / 2.0;
        Some(ClockOffset {
            offset_ms,
            round_trip_ms,
            applied: offset_ms.abs() > round_trip_ms / 2.0,
        })
    }

    /// What to add to each latency the worker measures, microseconds.
    pub fn correction_us(&self) -> i64 {
        if self.applied {
            (self.offset_ms * 1000.0).round() as i64
        } else {
            0
        }
    }

    /// Moves a reading of the worker's clock onto the coordinator's.
    pub fn to_coordinator_ms(&self, worker_ms: f64) -> f64 {
        worker_ms + self.correction_us() as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(sent_ms: f64, coordinator_ms: f64, received_ms: f64) -> Exchange {
        Exchange {
            sent_ms,
            coordinator_ms,
            received_ms,
        }
    }

    #[test]
    fn the_tightest_exchange_gives_the_offset() {
        // The worker is 40 ms behind; the second exchange had a slow return.
        let offset = ClockOffset::estimate(&[
            exchange(1000.0, 1041.0, 1002.0),
            exchange(2000.0, 2041.0, 2030.0),
        ])
        .unwrap();
        assert_eq!(offset.offset_ms, 40.0);
        assert_eq!(offset.round_trip_ms, 2.0);
        assert!(offset.applied);
        assert_eq!(offset.correction_us(), 40_000);
        assert_eq!(offset.to_coordinator_ms(5000.0), 5040.0);
    }

    #[test]
    fn an_offset_within_its_error_is_not_applied() {
        // Clocks that agree, read through a 1 ms round trip.
        let offset = ClockOffset::estimate(&[exchange(1000.0, 1000.7, 1001.0)]).unwrap();
        assert!(!offset.applied, "{offset:?}");
        assert_eq!(offset.correction_us(), 0);
        assert_eq!(offset.to_coordinator_ms(5.0), 5.0);
        assert_eq!(ClockOffset::estimate(&[]), None);
    }
}
