//! The nonce de-duplication window ([`DedupWindow`], `PROTOCOL.md` §4.1)
//! against a reference model written from its contract: a key is in the
//! window while its last let-through occurrence is younger than `ttl` and
//! among the last `capacity` let-through keys; repeats do not extend it.
//!
//! Runs are random sequences of nonces from a small alphabet (so repeats are
//! common) with random time advances (so keys age out) and explicit expiry
//! (what the owner of a window may call at any time).

use std::time::{Duration, Instant};

use odin_protocol::DedupWindow;
use odin_protocol::dedup::Seen;
use proptest::prelude::*;

/// One thing that happens to a window.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The nonce `n<index>` arrives.
    Observe(u8),
    /// Time passes, in milliseconds.
    Advance(u8),
    /// The owner forgets what has aged out.
    Expire,
}

/// Steps over an alphabet of `alphabet` nonces, with advances of up to
/// `max_advance_ms` (zero included, so many nonces share an instant).
fn steps(alphabet: u8, max_advance_ms: u8) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        6 => (0..alphabet).prop_map(Step::Observe),
        3 => (0..=max_advance_ms).prop_map(Step::Advance),
        1 => Just(Step::Expire),
    ];
    prop::collection::vec(step, 1..200)
}

/// The contract of the window, as plainly as it can be said: the log of
/// every occurrence that was let through, nothing else.
struct Model {
    ttl: Duration,
    capacity: usize,
    /// Every occurrence answered `First`, oldest first.
    let_through: Vec<(Instant, String)>,
}

impl Model {
    /// Whether `key` is inside the window at `now`: one of the last
    /// `capacity` let-through keys, and younger than `ttl`.
    fn in_window(&self, key: &str, now: Instant) -> bool {
        self.let_through
            .iter()
            .rev()
            .take(self.capacity)
            .any(|(t, k)| k == key && now.duration_since(*t) < self.ttl)
    }

    /// How many keys are inside the window at `now`: what a window that
    /// has just expired at `now` may hold, and nothing more.
    fn live(&self, now: Instant) -> usize {
        self.let_through
            .iter()
            .rev()
            .take(self.capacity)
            .filter(|(t, _)| now.duration_since(*t) < self.ttl)
            .count()
    }
}

/// A window and its model, driven by the same steps.
struct Sim {
    /// The window under test.
    window: DedupWindow,
    /// What it should say.
    model: Model,
    /// The clock both are given; it only moves forward.
    now: Instant,
    /// Nonces are `n0` to `n<alphabet - 1>`.
    alphabet: u8,
}

impl Sim {
    /// A fresh window of `ttl_ms` and `capacity` over `alphabet` nonces.
    fn new(ttl_ms: u8, capacity: usize, alphabet: u8) -> Self {
        let ttl = Duration::from_millis(u64::from(ttl_ms));
        Self {
            window: DedupWindow::new(ttl, capacity),
            model: Model {
                ttl,
                capacity,
                let_through: Vec::new(),
            },
            now: Instant::now(),
            alphabet,
        }
    }

    /// Applies one step to the window; for an observation, checks the
    /// verdict against the model: a first occurrence inside the window is
    /// never dropped, a repeat inside it always is.
    fn step(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Observe(n) => {
                let key = format!("n{n}");
                let repeat = self.model.in_window(&key, self.now);
                let seen = self.window.observe(&key, self.now);
                if repeat {
                    prop_assert_eq!(
                        seen,
                        Seen::Duplicate,
                        "a repeat of {} inside the window was let through",
                        key
                    );
                } else {
                    prop_assert_eq!(
                        seen,
                        Seen::First,
                        "{} is not in the window (ttl and capacity) but was dropped",
                        key
                    );
                    self.model.let_through.push((self.now, key));
                }
            }
            Step::Advance(ms) => self.now += Duration::from_millis(u64::from(ms)),
            Step::Expire => self.window.expire(self.now),
        }
        Ok(())
    }

    /// `contains` says what the model says for every nonce of the alphabet.
    fn check_contains(&self) -> Result<(), TestCaseError> {
        for n in 0..self.alphabet {
            let key = format!("n{n}");
            prop_assert_eq!(
                self.window.contains(&key, self.now),
                self.model.in_window(&key, self.now),
                "contains({}) disagrees with the window's contract",
                key
            );
        }
        Ok(())
    }

    /// The window never holds more than its capacity, and right after it
    /// looked at the clock (observe or expire) it holds exactly the keys
    /// inside the window: nothing aged out or pushed out lingers.
    fn check_memory(&self, step: Step) -> Result<(), TestCaseError> {
        let len = self.window.len();
        prop_assert!(
            len <= self.window.capacity(),
            "{} keys held, capacity {}",
            len,
            self.window.capacity()
        );
        if !matches!(step, Step::Advance(_)) {
            prop_assert_eq!(
                len,
                self.model.live(self.now),
                "keys held after {:?} differ from the keys inside the window",
                step
            );
        }
        prop_assert_eq!(self.window.is_empty(), len == 0);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Six nonces, windows of 1–8 keys and 1–10 ms, advances of 0–12 ms:
    /// sometimes the count bound decides, sometimes the time bound, and the
    /// verdict (and `contains`) always matches the model.
    #[test]
    fn first_occurrences_pass_and_repeats_inside_the_window_drop(
        ttl_ms in 1u8..=10,
        capacity in 1usize..=8,
        steps in steps(6, 12),
    ) {
        let mut sim = Sim::new(ttl_ms, capacity, 6);
        for step in steps {
            sim.step(step)?;
            sim.check_contains()?;
        }
    }

    /// Many distinct nonces through small windows: memory stays within the
    /// capacity for any input, holds only what is inside the window, and
    /// is all given back once the window's time has passed.
    #[test]
    fn memory_stays_within_the_bound(
        ttl_ms in 1u8..=20,
        capacity in 1usize..=16,
        steps in steps(64, 8),
    ) {
        let mut sim = Sim::new(ttl_ms, capacity, 64);
        for step in steps {
            sim.step(step)?;
            sim.check_memory(step)?;
        }
        let later = sim.now + sim.window.ttl();
        sim.window.expire(later);
        prop_assert_eq!(sim.window.len(), 0, "keys outlived the window's ttl");
    }
}
