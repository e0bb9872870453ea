//! Timestamps and nonces: what makes each published event unique and dated.
//!
//! The simulation asks a [`Stamper`] for both at the moment it creates an
//! event, so a live run stamps with the wall clock and fresh nonces while a
//! test stamps with a fixed clock and a seeded nonce instance, and gets the
//! same bytes every time.

use odin_protocol::ids::NonceSource;
use odin_protocol::{Nonce, time};

/// Gives each new event its `timestamp` and `nonce`.
pub trait Stamper {
    /// The timestamp (ms since the Unix epoch, µs fraction) and a nonce never
    /// given before by this stamper.
    fn stamp(&mut self) -> (f64, Nonce);

    /// When the events being made now were due by the schedule (ms since the
    /// Unix epoch), for their `scheduledAt` (`PROTOCOL.md` §1); `None` when
    /// nothing paces them (tests, the fixed clock).
    fn scheduled(&self) -> Option<f64> {
        None
    }
}

/// The stamper of a live run: the wall clock and a [`NonceSource`].
#[derive(Debug)]
pub struct LiveStamper {
    nonces: NonceSource,
    scheduled: Option<f64>,
}

impl LiveStamper {
    /// Stamps with `now` and nonces from `nonces`.
    pub fn new(nonces: NonceSource) -> Self {
        Self {
            nonces,
            scheduled: None,
        }
    }

    /// The schedule's time (ms since the Unix epoch) of the step about to be
    /// made: a step made late (the publisher stalled) keeps the time it was
    /// due, so a latency measured from it counts the stall (no coordinated
    /// omission).
    pub fn schedule(&mut self, due_at: f64) {
        self.scheduled = Some(due_at);
    }
}

impl Stamper for LiveStamper {
    fn stamp(&mut self) -> (f64, Nonce) {
        (time::now_millis(), self.nonces.next())
    }

    fn scheduled(&self) -> Option<f64> {
        self.scheduled
    }
}

/// A stamper with a make-believe clock, for reproducible output (snapshot
/// tests, determinism checks): the first stamp is `start` and each next one
/// `step_ms` later, both kept in whole microseconds like a real timestamp.
#[derive(Debug)]
pub struct FixedStamper {
    /// Next timestamp, in µs since the epoch (integer: no float drift).
    next_us: u64,
    step_us: u64,
    nonces: NonceSource,
}

impl FixedStamper {
    /// A clock at `start` (ms since the epoch) ticking `step_ms` per stamp,
    /// with nonces of the fixed instance `instance`.
    pub fn new(start: f64, step_ms: f64, instance: u64) -> Self {
        Self {
            next_us: (start * 1000.0).round() as u64,
            step_us: (step_ms * 1000.0).round() as u64,
            nonces: NonceSource::with_instance(instance),
        }
    }
}

impl Stamper for FixedStamper {
    fn stamp(&mut self) -> (f64, Nonce) {
        let t = self.next_us as f64 / 1000.0;
        self.next_us += self.step_us;
        (t, self.nonces.next())
    }
}
