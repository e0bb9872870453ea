//! The trade schedule: when, in seconds since the start of a run, each
//! price event is due.
//!
//! Pacing is open-loop against this absolute schedule: slot `k` is due at a
//! time computed from `k` alone (uniform) or from the arrival draws before it
//! (Poisson), never from when the previous event happened to be sent, so
//! sending jitter cannot accumulate into drift. The schedule is pure logic
//! (no clock): the runner compares [`Schedule::next_due`] with the wall clock.

use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

/// How slots are spread in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pacing {
    /// Slot `k` at exactly `k / rate`: the asked rate, exactly, every second.
    #[default]
    Uniform,
    /// Exponential gaps of mean `1 / rate`: the bursty arrivals of a real
    /// market (the count in a window is Poisson, so short windows deviate
    /// from the mean by about `sqrt(rate · window)`).
    Poisson,
}

/// An endless sequence of due times at `rate` slots per second.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: f64,
    pacing: Pacing,
    /// Index of the next slot (slots before it were taken or skipped).
    index: u64,
    /// Due time of slot `index`, in seconds since the start.
    next: f64,
    /// Gap distribution for Poisson pacing.
    gaps: Exp<f64>,
    rng: StdRng,
}

/// Why a schedule cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate must be a positive finite number of events per second (got {0})")]
pub struct InvalidRate(pub f64);

impl Schedule {
    /// A schedule of `rate` slots per second; `rng` only drives Poisson gaps.
    pub fn new(rate: f64, pacing: Pacing, rng: StdRng) -> Result<Self, InvalidRate> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(InvalidRate(rate));
        }
        let gaps = Exp::new(rate).map_err(|_| InvalidRate(rate))?;
        let mut schedule = Self {
            rate,
            pacing,
            index: 0,
            next: 0.0,
            gaps,
            rng,
        };
        if pacing == Pacing::Poisson {
            schedule.next = schedule.gaps.sample(&mut schedule.rng);
        }
        Ok(schedule)
    }

    /// Slots per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The pacing in use.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// Index of the next slot.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// When the next slot is due, in seconds since the start.
    pub fn next_due(&self) -> f64 {
        self.next
    }

    /// Takes the next slot and returns its due time.
    pub fn advance(&mut self) -> f64 {
        let due = self.next;
        self.index += 1;
        self.next = match self.pacing {
            // From the index, not by adding 1/rate: no rounding drift.
            Pacing::Uniform => self.index as f64 / self.rate,
            Pacing::Poisson => self.next + self.gaps.sample(&mut self.rng),
        };
        due
    }

    /// Drops every slot due before `t` (used when the publisher fell too far
    /// behind, e.g. during a NATS outage) and says how many were dropped.
    pub fn skip_before(&mut self, t: f64) -> u64 {
        if self.next >= t {
            return 0;
        }
        match self.pacing {
            Pacing::Uniform => {
                // First index whose due time k/rate is ≥ t.
                let mut target = (t * self.rate).ceil().max(0.0) as u64;
                while target > 0 && (target - 1) as f64 / self.rate >= t {
                    target -= 1;
                }
                while (target as f64) / self.rate < t {
                    target += 1;
                }
                let skipped = target.saturating_sub(self.index);
                self.index = target.max(self.index);
                self.next = self.index as f64 / self.rate;
                skipped
            }
            Pacing::Poisson => {
                let mut skipped = 0;
                while self.next < t {
                    self.advance();
                    skipped += 1;
                }
                skipped
            }
        }
    }

    /// How many slots are due before `t` seconds, counting from the current
    /// slot, without taking them (pure; used by tests and the benchmark).
    pub fn count_before(&self, t: f64) -> u64 {
        let mut copy = self.clone();
        let mut n = 0;
        while copy.next_due() < t {
            copy.advance();
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{Stream, rng};
    use proptest::prelude::*;

    fn schedule(rate: f64, pacing: Pacing, seed: u64) -> Schedule {
        Schedule::new(rate, pacing, rng(seed, Stream::Schedule)).unwrap()
    }

    #[test]
    fn refuses_non_positive_rates() {
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(r, Pacing::Uniform, rng(0, Stream::Schedule)).is_err());
        }
    }

    #[test]
    fn uniform_slots_are_exact() {
        let mut s = schedule(4.0, Pacing::Uniform, 0);
        let dues: Vec<f64> = (0..5).map(|_| s.advance()).collect();
        assert_eq!(dues, [0.0, 0.25, 0.5, 0.75, 1.0]);
    }

    proptest! {
        /// Over any window, uniform pacing yields the asked count to within
        /// one slot: `ceil(rate · window)` slots are due in `[0, window)`.
        #[test]
        fn uniform_yields_the_asked_count(rate in 0.1f64..100_000.0, window in 0.01f64..2.0) {
            let s = schedule(rate, Pacing::Uniform, 0);
            let expected = rate * window;
            let n = s.count_before(window) as f64;
            prop_assert!((n - expected).abs() <= 1.0, "rate {rate} window {window}: {n} slots, expected {expected}");
        }

        /// Poisson pacing yields the asked count within six standard
        /// deviations (`sqrt(rate · window)`), for any seed.
        #[test]
        fn poisson_yields_the_asked_count(seed: u64, rate in 10.0f64..10_000.0, window in 1.0f64..5.0) {
            let s = schedule(rate, Pacing::Poisson, seed);
            let expected = rate * window;
            let n = s.count_before(window) as f64;
            prop_assert!((n - expected).abs() <= 6.0 * expected.sqrt() + 1.0, "{n} vs {expected}");
        }

        /// Skipping lands on the first slot at or after `t` and counts every
        /// slot it passed, like taking them one by one would.
        #[test]
        fn skip_matches_advancing(rate in 0.5f64..10_000.0, t in 0.0f64..10.0, poisson: bool, seed: u64) {
            let pacing = if poisson { Pacing::Poisson } else { Pacing::Uniform };
            let mut skipping = schedule(rate, pacing, seed);
            let mut walking = skipping.clone();
            let skipped = skipping.skip_before(t);
            let mut walked = 0;
            while walking.next_due() < t {
                walking.advance();
                walked += 1;
            }
            prop_assert_eq!(skipped, walked);
            prop_assert_eq!(skipping.index(), walking.index());
            prop_assert!(skipping.next_due() >= t);
        }
    }
}
