//! How late the load generator's own runtime wakes up: a task asks to be
//! woken every 10 ms and records how late it was. When that lag is large the
//! generator, not the server, is the bottleneck: its users time-stamp
//! arrivals late and its latency figures mean nothing, so the run is
//! reported as invalid instead of as a server result. Only the measuring
//! part of a run counts: the monitor is reset when publishing starts.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How often the probe asks to be woken.
pub const PERIOD: Duration = Duration::from_millis(10);

/// Scheduling lag of the generator's runtime, in microseconds.
#[derive(Debug, Clone)]
pub struct LagMonitor {
    lag: Arc<Mutex<Histogram<u64>>>,
}

impl LagMonitor {
    /// Starts probing on the current runtime until `stop`.
    pub fn start(stop: CancellationToken) -> Self {
        let lag = Arc::new(Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
        ));
        let record = lag.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PERIOD);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut expected = Instant::now();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    at = ticks.tick() => {
                        let late = Instant::now().saturating_duration_since(at.max(expected));
                        record.lock().saturating_record(late.as_micros().max(1) as u64);
                        expected = at + PERIOD;
                    }
                }
            }
        });
        Self { lag }
    }

    /// The lag at quantile `q` (0–1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.lag.lock().value_at_quantile(q)
    }

    /// Forgets what was recorded so far: the figures then describe only what
    /// follows (a run measures latency only while it publishes, so the
    /// ramp's load on the generator does not make the run invalid).
    pub fn reset(&self) {
        self.lag.lock().reset();
    }

    /// The largest lag seen, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.lag.lock().max()
    }
}
