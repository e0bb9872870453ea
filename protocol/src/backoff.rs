//! Reconnect back-off: capped exponential with full jitter.
//!
//! Every client (the harness's reference client, the load users, the browser
//! page) waits `uniform(0, min(cap, base · 2^failures))` before reconnecting,
//! so a server restart does not bring every client back at the same instant.
//! The policy is pure: the caller passes in the random source.

use std::time::Duration;

use rand::Rng;

/// Capped exponential back-off with full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    /// Consecutive failures since the last [`Backoff::reset`].
    failures: u32,
}

impl Default for Backoff {
    /// 250 ms base, 30 s cap.
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A policy starting at `base` and never waiting longer than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// The largest delay the next [`Backoff::next_delay`] may return:
    /// `min(cap, base · 2^failures)`.
    pub fn ceiling(&self) -> Duration {
        // Doubling, not base · 2^failures: a 32-bit 2^failures runs out at
        // 32 failures and would stall the ceiling short of a cap more than
        // 2^31 bases away. Doubling stops at the cap (at most ~94 rounds).
        let mut ceiling = self.base;
        for _ in 0..self.failures {
            if ceiling >= self.cap || ceiling.is_zero() {
                break;
            }
            ceiling = ceiling.saturating_mul(2);
        }
        ceiling.min(self.cap)
    }

    /// The delay before the next attempt, uniform in `[0, ceiling]`; counts a
    /// failure so the ceiling after it doubles (up to the cap).
    pub fn next_delay<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    /// Starts over after a connection proved stable.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The configured base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The configured cap.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut rng = rand::rng();
        let ceilings: Vec<_> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                assert!(b.next_delay(&mut rng) <= c);
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }
}
