//! Model-based property tests of the client's reconnect state machine.
//!
//! A simulated world (connect failures, upgrades, handshakes, events,
//! duplicates, snapshots, `reconnect` advisories, server closes
//! 1000/1001/4001/4002/4003/4008 or a dead socket, time passing, shutdown)
//! drives the pure machine the way the real driver does, and a model checks
//! after every step that:
//! - every established connection gets exactly one `subscribe`;
//! - no nonce is ever delivered twice, and nothing is dropped that was not
//!   delivered before;
//! - each back-off delay is within `[0, min(cap, base · 2^k)]`, where `k`
//!   counts attempts since the last connection that was live for
//!   `stable_after` (so the ceiling grows to the cap and resets);
//! - a close after a `reconnect` advisory on that connection waits exactly
//!   the advised delay (at most the cap) and is not a failure; the next
//!   unannounced close backs off again;
//! - after shutdown nothing but `Stop` comes out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use odin_harness::client::machine::{Action, Input, Machine, Phase, Policy};
use odin_protocol::Backoff;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const BASE: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_millis(3_000);
const STABLE_AFTER: Duration = Duration::from_millis(1_000);
/// Tokens 0–2 publish prices; the last kind is a market event (no token).
const PRICE_TOKENS: u8 = 3;

/// One thing that can happen in the world around the client.
#[derive(Debug, Clone, Copy)]
enum World {
    ConnectFails,
    Opens,
    Establishes,
    AcksSubscribe,
    /// A fresh event; `kind < PRICE_TOKENS` is a price of that token.
    Publishes {
        kind: u8,
    },
    /// A nonce the client recently received arrives again (a duplicate
    /// published twice to NATS); picks among what its window still holds.
    Repeats {
        pick: usize,
    },
    Closes {
        code: Option<u16>,
    },
    /// A `reconnect` advisory with this `delayMs` (beyond the cap at times).
    Advises {
        ms: u32,
    },
    Advances {
        ms: u16,
    },
    ShutsDown,
}

fn world() -> impl Strategy<Value = World> {
    prop_oneof![
        3 => Just(World::ConnectFails),
        4 => Just(World::Opens),
        4 => Just(World::Establishes),
        4 => Just(World::AcksSubscribe),
        10 => (0..=PRICE_TOKENS).prop_map(|kind| World::Publishes { kind }),
        3 => any::<usize>().prop_map(|pick| World::Repeats { pick }),
        3 => prop::sample::select(vec![Some(1000), Some(1001), Some(4001), Some(4002), Some(4003), Some(4008), None])
            .prop_map(|code| World::Closes { code }),
        2 => prop_oneof![0u32..4_000, Just(u32::MAX)].prop_map(|ms| World::Advises { ms }),
        3 => (0u16..2_500).prop_map(|ms| World::Advances { ms }),
        1 => Just(World::ShutsDown),
    ]
}

/// The driver's view of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Connecting,
    Open {
        established: bool,
        subscribe_sent: bool,
        acked: bool,
    },
    Stopped,
}

struct Sim {
    machine: Machine,
    rng: StdRng,
    now: Instant,
    conn: Conn,
    /// The server: latest price nonce per token (its snapshot source).
    latest: HashMap<u8, String>,
    next_nonce: u64,
    /// A mirror of what the de-dup window holds (last `capacity` distinct
    /// nonces observed), so repeats are ones the window must catch.
    window: VecDeque<String>,
    capacity: usize,
    // The model.
    delivered: HashSet<String>,
    failures: u32,
    live_since: Option<Instant>,
    /// The delay the open connection's advisory asked for, capped.
    advised: Option<Duration>,
    establishes: u32,
    subscribes: u32,
}

impl Sim {
    fn new(seed: u64, capacity: usize) -> Self {
        let policy = Policy {
            backoff: Backoff::new(BASE, CAP),
            stable_after: STABLE_AFTER,
            dedup_ttl: Duration::from_secs(86_400),
            dedup_capacity: capacity,
        };
        let mut sim = Self {
            machine: Machine::new(policy),
            rng: StdRng::seed_from_u64(seed),
            now: Instant::now(),
            conn: Conn::Connecting,
            latest: HashMap::new(),
            next_nonce: 0,
            window: VecDeque::new(),
            capacity,
            delivered: HashSet::new(),
            failures: 0,
            live_since: None,
            advised: None,
            establishes: 0,
            subscribes: 0,
        };
        let first = sim.feed(Input::Start);
        assert_eq!(first, Action::Connect);
        sim
    }

    fn feed(&mut self, input: Input<'_>) -> Action {
        self.machine.handle(input, self.now, &mut self.rng)
    }

    /// The model's ceiling for the next delay.
    fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures).unwrap_or(u32::MAX);
        BASE.saturating_mul(factor).min(CAP)
    }

    /// Checks a back-off against the model, then waits it out.
    fn backed_off(&mut self, action: Action, stable: bool) -> Result<(), TestCaseError> {
        let Action::Wait(delay) = action else {
            return Err(TestCaseError::fail(format!(
                "expected a back-off, got {action:?}"
            )));
        };
        if stable {
            self.failures = 0;
        }
        let ceiling = self.ceiling();
        prop_assert!(
            delay <= ceiling,
            "delay {delay:?} above ceiling {ceiling:?} after {} failures",
            self.failures
        );
        self.failures = self.failures.saturating_add(1);
        prop_assert_eq!(
            self.machine.backoff().failures(),
            self.failures,
            "back-off count drifted from the model"
        );
        prop_assert_eq!(self.machine.backoff().ceiling(), self.ceiling());
        self.live_since = None;
        self.now += delay;
        prop_assert_eq!(self.feed(Input::BackoffElapsed), Action::Connect);
        self.conn = Conn::Connecting;
        Ok(())
    }

    /// Checks the wait after an announced close against the model: exactly
    /// the advised delay, and no failure counted.
    fn advised_wait(
        &mut self,
        action: Action,
        delay: Duration,
        stable: bool,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(action, Action::Wait(delay), "the advised delay, capped");
        if stable {
            self.failures = 0;
        }
        prop_assert_eq!(
            self.machine.backoff().failures(),
            self.failures,
            "an announced close counted as a failure"
        );
        self.live_since = None;
        self.now += delay;
        prop_assert_eq!(self.feed(Input::BackoffElapsed), Action::Connect);
        self.conn = Conn::Connecting;
        Ok(())
    }

    /// Sends one event to the client and checks the verdict.
    fn event(&mut self, nonce: &str, price_of: Option<u8>) -> Result<(), TestCaseError> {
        let token = price_of.map(|t| format!("T{t}"));
        let action = self.feed(Input::Event {
            nonce,
            latest_price_of: token.as_deref(),
        });
        if !self.window.iter().any(|n| n == nonce) {
            self.window.push_back(nonce.to_owned());
            if self.window.len() > self.capacity {
                self.window.pop_front();
            }
        }
        match action {
            Action::Deliver => prop_assert!(
                self.delivered.insert(nonce.to_owned()),
                "{nonce} delivered twice"
            ),
            Action::DropDuplicate => prop_assert!(
                self.delivered.contains(nonce),
                "{nonce} dropped but never delivered"
            ),
            other => {
                return Err(TestCaseError::fail(format!(
                    "event answered with {other:?}"
                )));
            }
        }
        Ok(())
    }

    fn step(&mut self, step: &World) -> Result<(), TestCaseError> {
        if self.conn == Conn::Stopped {
            // Whatever happens after shutdown, the machine only says Stop.
            for input in [
                Input::Start,
                Input::Opened,
                Input::BackoffElapsed,
                Input::Closed { code: None },
            ] {
                prop_assert_eq!(self.feed(input), Action::Stop);
            }
            return Ok(());
        }
        match (*step, self.conn) {
            (World::ConnectFails, Conn::Connecting) => {
                let action = self.feed(Input::ConnectFailed);
                self.backed_off(action, false)?;
            }
            (World::Opens, Conn::Connecting) => {
                prop_assert_eq!(self.feed(Input::Opened), Action::Nothing);
                self.advised = None;
                self.conn = Conn::Open {
                    established: false,
                    subscribe_sent: false,
                    acked: false,
                };
            }
            (
                World::Establishes,
                Conn::Open {
                    established: false, ..
                },
            ) => {
                self.establishes += 1;
                let action = self.feed(Input::Established);
                prop_assert_eq!(
                    action,
                    Action::Subscribe,
                    "no subscribe after connection_established"
                );
                self.subscribes += 1;
                self.conn = Conn::Open {
                    established: true,
                    subscribe_sent: true,
                    acked: false,
                };
            }
            (
                World::AcksSubscribe,
                Conn::Open {
                    subscribe_sent: true,
                    acked: false,
                    ..
                },
            ) => {
                prop_assert_eq!(self.feed(Input::Subscribed), Action::Nothing);
                let live = matches!(self.machine.phase(), Phase::Live { .. });
                prop_assert!(live, "not live after subscribed");
                self.conn = Conn::Open {
                    established: true,
                    subscribe_sent: true,
                    acked: true,
                };
                self.live_since = Some(self.now);
                // The snapshot: the latest price of every token it knows.
                let mut snapshot: Vec<(u8, String)> =
                    self.latest.iter().map(|(t, n)| (*t, n.clone())).collect();
                snapshot.sort();
                for (token, nonce) in snapshot {
                    self.event(&nonce, Some(token))?;
                }
            }
            (World::Publishes { kind }, conn) => {
                self.next_nonce += 1;
                let nonce = format!("n{}", self.next_nonce);
                let price_of = (kind < PRICE_TOKENS).then_some(kind);
                if let Some(token) = price_of {
                    self.latest.insert(token, nonce.clone());
                }
                // Only a subscribed connection receives live events.
                if matches!(conn, Conn::Open { acked: true, .. }) {
                    self.event(&nonce, price_of)?;
                    prop_assert!(
                        self.delivered.contains(&nonce),
                        "a fresh event was not delivered"
                    );
                }
            }
            (World::Repeats { pick }, Conn::Open { acked: true, .. })
                if !self.window.is_empty() =>
            {
                let nonce = self.window[pick % self.window.len()].clone();
                let price_of = self
                    .latest
                    .iter()
                    .find(|(_, n)| **n == nonce)
                    .map(|(t, _)| *t);
                self.event(&nonce, price_of)?;
            }
            (World::Closes { code }, Conn::Open { .. }) => {
                let stable = self
                    .live_since
                    .is_some_and(|since| self.now - since >= STABLE_AFTER);
                let action = self.feed(Input::Closed { code });
                match self.advised.take() {
                    Some(delay) => self.advised_wait(action, delay, stable)?,
                    None => self.backed_off(action, stable)?,
                }
            }
            (World::Advises { ms }, Conn::Open { .. }) => {
                let delay = Duration::from_millis(u64::from(ms));
                prop_assert_eq!(self.feed(Input::Advised { delay }), Action::Nothing);
                self.advised = Some(delay.min(CAP));
            }
            (World::Advances { ms }, _) => self.now += Duration::from_millis(u64::from(ms)),
            (World::ShutsDown, _) => {
                prop_assert_eq!(self.feed(Input::Shutdown), Action::Stop);
                self.conn = Conn::Stopped;
            }
            // Not possible in this state of the world: nothing happens.
            _ => {}
        }
        prop_assert_eq!(self.establishes, self.subscribes);
        Ok(())
    }
}

fn run(seed: u64, capacity: usize, steps: &[World]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(seed, capacity);
    for step in steps {
        sim.step(step)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A window big enough for every nonce of the run.
    #[test]
    fn reconnect_loop_keeps_its_invariants(seed in any::<u64>(), steps in prop::collection::vec(world(), 1..250)) {
        run(seed, 100_000, &steps)?;
    }

    /// A window of three nonces: snapshot repeats of prices it has long
    /// forgotten must still never reach the application twice.
    #[test]
    fn a_tiny_dedup_window_still_never_delivers_a_snapshot_twice(seed in any::<u64>(), steps in prop::collection::vec(world(), 1..250)) {
        run(seed, 3, &steps)?;
    }

    /// Any input in any order (including ones the driver never sends in
    /// that phase): no panic, no double delivery, no delay above the cap,
    /// and `Stop` is final.
    #[test]
    fn arbitrary_inputs_never_break_the_machine(seed in any::<u64>(), inputs in prop::collection::vec(0u8..10, 1..300)) {
        let mut sim = Sim::new(seed, 100_000);
        let mut stopped = false;
        for (i, which) in inputs.into_iter().enumerate() {
            let nonce = format!("n{}", i % 17);
            let input = match which {
                0 => Input::Start,
                1 => Input::ConnectFailed,
                2 => Input::Opened,
                3 => Input::Established,
                4 => Input::Subscribed,
                5 => Input::Event { nonce: &nonce, latest_price_of: Some("T") },
                6 => Input::Closed { code: Some(4008) },
                7 => Input::BackoffElapsed,
                8 => Input::Advised { delay: Duration::from_secs(u64::from(u32::MAX)) },
                _ if i % 5 == 0 => Input::Shutdown,
                _ => Input::Event { nonce: &nonce, latest_price_of: None },
            };
            let action = sim.feed(input);
            if stopped {
                prop_assert_eq!(action, Action::Stop);
            }
            match action {
                Action::Deliver => prop_assert!(sim.delivered.insert(nonce.clone()), "{} delivered twice", nonce),
                Action::Wait(d) => prop_assert!(d <= CAP),
                Action::Stop => stopped = true,
                _ => {}
            }
            sim.now += Duration::from_millis(37);
        }
    }
}
