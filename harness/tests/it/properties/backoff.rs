//! The reconnect back-off ([`Backoff`], `PROTOCOL.md` §4.4: capped
//! exponential with full jitter), through its public API only, with the
//! random source it takes injected: whatever that source says, a delay lies
//! in `[0, ceiling]` and the ceiling in `[base, cap]`; the ceiling doubles
//! per failure until the cap; a reset starts over from the base.

use std::time::Duration;

use odin_protocol::Backoff;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// A random source that first hands out a script chosen by proptest (the
/// extremes `0` and `u64::MAX` included), then a seeded generator: the
/// bounds must hold for any answer the source gives, not just likely ones.
struct ScriptedRng {
    /// Answers given first, in order.
    script: Vec<u64>,
    /// How many of `script` have been given.
    next: usize,
    /// Answers once the script has run out.
    rest: StdRng,
}

impl RngCore for ScriptedRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        match self.script.get(self.next) {
            Some(&v) => {
                self.next += 1;
                v
            }
            None => self.rest.next_u64(),
        }
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// What a [`ScriptedRng`] is made of, as proptest shows a counterexample.
#[derive(Debug, Clone)]
struct RngScript {
    /// The first answers.
    script: Vec<u64>,
    /// The seed of the generator behind them.
    seed: u64,
}

impl RngScript {
    /// The random source this script describes.
    fn rng(&self) -> ScriptedRng {
        ScriptedRng {
            script: self.script.clone(),
            next: 0,
            rest: StdRng::seed_from_u64(self.seed),
        }
    }
}

/// An [`RngScript`] of up to 32 words.
fn rng_script() -> impl Strategy<Value = RngScript> {
    let word = prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()];
    (prop::collection::vec(word, 0..32), any::<u64>())
        .prop_map(|(script, seed)| RngScript { script, seed })
}

/// A duration of zero to about an hour (2^42 ns), spread evenly over the
/// orders of magnitude rather than bunched at the top, so that bases of a
/// few nanoseconds meet caps of an hour (a ratio past 2^32).
fn duration() -> impl Strategy<Value = Duration> {
    (0u32..=42, any::<u64>()).prop_map(|(bits, x)| Duration::from_nanos(x & ((1u64 << bits) - 1)))
}

/// The contract's ceiling after `failures` failures, `min(cap, base ·
/// 2^failures)` (a cap below the base counting as the base), in exact
/// integer arithmetic.
fn expected_ceiling(base: Duration, cap: Duration, failures: u32) -> Duration {
    let (base, cap) = (base.as_nanos(), cap.max(base).as_nanos());
    let mut ceiling = base;
    for _ in 0..failures {
        if ceiling >= cap {
            break;
        }
        ceiling *= 2;
    }
    let nanos = ceiling.min(cap);
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).expect("caps are about an hour"),
        u32::try_from(nanos % 1_000_000_000).expect("below a second"),
    )
}

/// What a client does with its back-off.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A connection attempt failed: wait the next delay.
    Fail,
    /// A connection proved stable.
    Reset,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every delay lies in `[0, ceiling]` (a `Duration` cannot be negative)
    /// and so in `[0, cap]`, whatever the random source answers, across
    /// failures and resets.
    #[test]
    fn every_delay_lies_within_the_ceiling_and_the_cap(
        base in duration(),
        cap in duration(),
        script in rng_script(),
        ops in prop::collection::vec(prop_oneof![8 => Just(Op::Fail), 1 => Just(Op::Reset)], 1..100),
    ) {
        let mut rng = script.rng();
        let mut backoff = Backoff::new(base, cap);
        let cap = cap.max(base);
        prop_assert_eq!(backoff.cap(), cap, "a cap below the base is raised to it");
        for op in ops {
            match op {
                Op::Fail => {
                    let ceiling = backoff.ceiling();
                    prop_assert!(ceiling <= cap, "ceiling {:?} above the cap {:?}", ceiling, cap);
                    let delay = backoff.next_delay(&mut rng);
                    prop_assert!(
                        delay <= ceiling,
                        "delay {:?} above the ceiling {:?} (cap {:?})",
                        delay,
                        ceiling,
                        cap
                    );
                }
                Op::Reset => backoff.reset(),
            }
        }
    }

    /// From a fresh policy, the ceiling after `k` failures is
    /// `min(cap, base · 2^k)`: each failure doubles it until it meets the
    /// cap, where it stays. Up to 80 failures, past where a 32-bit factor
    /// would run out.
    #[test]
    fn the_ceiling_doubles_until_the_cap(
        base in duration(),
        cap in duration(),
        failures in 0u32..80,
        script in rng_script(),
    ) {
        let mut rng = script.rng();
        let mut backoff = Backoff::new(base, cap);
        let mut previous = backoff.ceiling();
        prop_assert_eq!(previous, base, "the first ceiling is the base");
        for k in 1..=failures {
            backoff.next_delay(&mut rng);
            prop_assert_eq!(backoff.failures(), k);
            let ceiling = backoff.ceiling();
            prop_assert_eq!(
                ceiling,
                previous.saturating_mul(2).min(backoff.cap()),
                "failure {} did not double the ceiling {:?} (or bring it to the cap)",
                k,
                previous
            );
            prop_assert_eq!(ceiling, expected_ceiling(base, cap, k));
            previous = ceiling;
        }
    }

    /// After any number of failures, a reset brings the ceiling back to the
    /// base (the next delay is at most the base) and growth starts over.
    #[test]
    fn reset_brings_the_ceiling_back_to_the_base(
        base in duration(),
        cap in duration(),
        failures in 0u32..80,
        script in rng_script(),
    ) {
        let mut rng = script.rng();
        let mut backoff = Backoff::new(base, cap);
        for _ in 0..failures {
            backoff.next_delay(&mut rng);
        }
        backoff.reset();
        prop_assert_eq!(backoff.failures(), 0, "reset did not clear the failure count");
        prop_assert_eq!(backoff.ceiling(), base, "reset did not bring the ceiling back to the base");
        let delay = backoff.next_delay(&mut rng);
        prop_assert!(delay <= base, "first delay {:?} after a reset is above the base {:?}", delay, base);
        prop_assert_eq!(backoff.ceiling(), expected_ceiling(base, cap, 1), "growth did not start over");
    }
}
