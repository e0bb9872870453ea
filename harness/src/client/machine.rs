//! The reference client's reconnect loop as a pure state machine.
//!
//! connect → handshake (`connection_established`) → subscribe → live →
//! closed → back-off → connect … The driver ([`super::Client`]) does the I/O
//! and feeds what happened in as [`Input`]s; the machine answers with the one
//! [`Action`] to take. Time and randomness are passed in, so a property test
//! can drive thousands of connect failures, server closes and reconnects in
//! milliseconds and check the invariants the browser client must keep:
//!
//! - every connection that is established gets exactly one `subscribe`;
//! - the application never gets an event nonce twice;
//! - each back-off delay lies in `[0, min(cap, base · 2^failures)]`, where
//!   `failures` counts attempts since the last connection that stayed live
//!   for `stable_after`;
//! - a close the server announced with a `reconnect` advisory (protocol
//!   version 2) is followed by exactly the advised delay (at most the
//!   back-off's cap, so a server cannot park a client), and does not count
//!   as a failure.

use std::time::{Duration, Instant};

use odin_protocol::dedup::{FingerprintMap, Seen};
use odin_protocol::{Backoff, DedupWindow};
use rand::Rng;

/// Most tokens whose latest price nonce is remembered; far above the
/// protocol's per-connection channel limit (100), so only a misbehaving
/// server could fill it.
const MAX_LATEST_TOKENS: usize = 4096;

/// Where the client is in its connection life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Opening the socket (TCP + WebSocket upgrade with a fresh token).
    Connecting,
    /// Socket open, waiting for `connection_established`.
    Handshaking,
    /// `subscribe` sent, waiting for `subscribed`.
    Subscribing,
    /// Subscribed and receiving events since `since`.
    Live {
        /// When `subscribed` arrived; a close at least `stable_after` later
        /// resets the back-off.
        since: Instant,
    },
    /// Waiting out a back-off delay before the next attempt.
    BackingOff,
    /// Shut down; absorbs every further input.
    Stopped,
}

impl Phase {
    /// Whether a socket is open in this phase.
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            Phase::Handshaking | Phase::Subscribing | Phase::Live { .. }
        )
    }
}

/// What happened, as the driver saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// Begin: the first connection attempt.
    Start,
    /// The socket could not be opened (refused, timed out, HTTP 401/503 …).
    ConnectFailed,
    /// The WebSocket upgrade succeeded.
    Opened,
    /// `connection_established` arrived.
    Established,
    /// `subscribed` arrived.
    Subscribed,
    /// A `reconnect` advisory arrived (version 2): the server closes next and
    /// asks for this wait before the next attempt.
    Advised {
        /// The advisory's `delayMs`.
        delay: Duration,
    },
    /// An event (one of the five NATS event kinds) arrived.
    Event {
        /// Its de-duplication key.
        nonce: &'a str,
        /// The token of a `price_update`: the server's snapshot re-sends a
        /// token's latest price, so the client also remembers that one nonce
        /// per token, whatever the de-dup window has forgotten since.
        latest_price_of: Option<&'a str>,
    },
    /// The connection ended: a close frame's code, or `None` when the socket
    /// died without one (or a handshake step timed out).
    Closed {
        /// The close code, when the peer sent one.
        code: Option<u16>,
    },
    /// The back-off delay is over.
    BackoffElapsed,
    /// The application wants the client to stop.
    Shutdown,
}

/// What the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the input needs no answer, or was out of place and ignored).
    Nothing,
    /// Open a connection, asking the token source for a fresh token (so a
    /// `4001 token expired` close is followed by a valid one).
    Connect,
    /// Send `subscribe` with the configured channels.
    Subscribe,
    /// Hand the event to the application.
    Deliver,
    /// Drop the event: the application has seen its nonce.
    DropDuplicate,
    /// Wait this long, then feed [`Input::BackoffElapsed`].
    Wait(Duration),
    /// Stop; nothing more will happen.
    Stop,
}

/// Tunables of the reconnect loop.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Base and cap of the back-off between attempts.
    pub backoff: Backoff,
    /// A connection live at least this long counts as stable: the back-off
    /// starts over after it closes.
    pub stable_after: Duration,
    /// How long a nonce is remembered.
    pub dedup_ttl: Duration,
    /// How many nonces are remembered at most, at roughly 100 bytes each.
    /// Snapshot repeats (the only duplicates the protocol allows) are caught
    /// by the per-token latest-price check whatever this is, so load runs
    /// with thousands of users can keep it small.
    pub dedup_capacity: usize,
}

impl Default for Policy {
    /// 250 ms–30 s back-off, stable after 10 s, 1024 nonces for 10 minutes.
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            stable_after: Duration::from_secs(10),
            dedup_ttl: Duration::from_secs(600),
            dedup_capacity: 1024,
        }
    }
}

/// The reconnect loop's state; see the module documentation.
#[derive(Debug)]
pub struct Machine {
    phase: Phase,
    backoff: Backoff,
    stable_after: Duration,
    /// Every event nonce handed to the application, within its bounds.
    dedup: DedupWindow,
    /// The latest `price_update` nonce handed over, per token, both as the
    /// de-dup window's fingerprints: one lookup touches one bucket, no heap
    /// strings, and the nonce is hashed once for both.
    /// Invariant: at most [`MAX_LATEST_TOKENS`] entries.
    latest_price: FingerprintMap<u128>,
    /// The delay the open connection's `reconnect` advisory asked for, at
    /// most the back-off's cap; cleared when a connection opens.
    advised: Option<Duration>,
}

impl Machine {
    /// A machine in [`Phase::Idle`].
    pub fn new(policy: Policy) -> Self {
        Self {
            phase: Phase::Idle,
            backoff: policy.backoff,
            stable_after: policy.stable_after,
            dedup: DedupWindow::new(policy.dedup_ttl, policy.dedup_capacity),
            latest_price: FingerprintMap::default(),
            advised: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The back-off state (its failure count and next ceiling).
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Advances on `input` seen at `now`; `rng` draws back-off jitter.
    pub fn handle<R: Rng + ?Sized>(
        &mut self,
        input: Input<'_>,
        now: Instant,
        rng: &mut R,
    ) -> Action {
        use Phase::*;
        match (self.phase, input) {
            (Stopped, _) | (_, Input::Shutdown) => {
                self.phase = Stopped;
                Action::Stop
            }
            (Idle, Input::Start) | (BackingOff, Input::BackoffElapsed) => {
                self.phase = Connecting;
                Action::Connect
            }
            (Connecting, Input::Opened) => {
                self.phase = Handshaking;
                self.advised = None;
                Action::Nothing
            }
            (Handshaking | Subscribing | Live { .. }, Input::Advised { delay }) => {
                self.advised = Some(delay.min(self.backoff.cap()));
                Action::Nothing
            }
            (Connecting, Input::ConnectFailed) => self.back_off(rng),
            (Handshaking, Input::Established) => {
                self.phase = Subscribing;
                Action::Subscribe
            }
            (Subscribing, Input::Subscribed) => {
                self.phase = Live { since: now };
                Action::Nothing
            }
            (
                Handshaking | Subscribing | Live { .. },
                Input::Event {
                    nonce,
                    latest_price_of,
                },
            ) => self.filter(nonce, latest_price_of, now),
            (Live { since }, Input::Closed { .. }) => {
                if now.saturating_duration_since(since) >= self.stable_after {
                    self.backoff.reset();
                }
                self.after_close(rng)
            }
            (Handshaking | Subscribing, Input::Closed { .. }) => self.after_close(rng),
            (phase, input) => {
                tracing::debug!(?phase, ?input, "input ignored in this phase");
                Action::Nothing
            }
        }
    }

    /// After a close: the advised delay when the server announced it (a
    /// planned close, not a failure), else the back-off.
    fn after_close<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Action {
        match self.advised.take() {
            Some(delay) => {
                self.phase = Phase::BackingOff;
                Action::Wait(delay)
            }
            None => self.back_off(rng),
        }
    }

    fn back_off<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Action {
        self.phase = Phase::BackingOff;
        Action::Wait(self.backoff.next_delay(rng))
    }

    /// Decides whether the application may see an event.
    fn filter(&mut self, nonce: &str, latest_price_of: Option<&str>, now: Instant) -> Action {
        let nonce = self.dedup.fingerprint(nonce);
        if self.dedup.observe_fingerprint(nonce, now) == Seen::Duplicate {
            return Action::DropDuplicate;
        }
        let Some(token) = latest_price_of else {
            return Action::Deliver;
        };
        let token = self.dedup.fingerprint(token);
        match self.latest_price.get_mut(&token) {
            // The window forgot it, but it is the token's latest price the
            // application has: a snapshot repeat.
            Some(last) if *last == nonce => Action::DropDuplicate,
            Some(last) => {
                *last = nonce;
                Action::Deliver
            }
            None => {
                if self.latest_price.len() < MAX_LATEST_TOKENS {
                    self.latest_price.insert(token, nonce);
                }
                Action::Deliver
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine::new(Policy {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
            stable_after: Duration::from_secs(5),
            dedup_ttl: Duration::from_secs(60),
            dedup_capacity: 2,
        })
    }

    #[test]
    fn walks_the_happy_path_and_back() {
        let mut rng = rand::rng();
        let t = Instant::now();
        let mut m = machine();
        assert_eq!(m.handle(Input::Start, t, &mut rng), Action::Connect);
        assert_eq!(m.handle(Input::Opened, t, &mut rng), Action::Nothing);
        assert_eq!(m.handle(Input::Established, t, &mut rng), Action::Subscribe);
        assert_eq!(m.handle(Input::Subscribed, t, &mut rng), Action::Nothing);
        let ev = |n| Input::Event {
            nonce: n,
            latest_price_of: Some("BTC"),
        };
        assert_eq!(m.handle(ev("a"), t, &mut rng), Action::Deliver);
        assert_eq!(m.handle(ev("a"), t, &mut rng), Action::DropDuplicate);
        assert!(matches!(
            m.handle(Input::Closed { code: Some(1001) }, t, &mut rng),
            Action::Wait(d) if d <= Duration::from_millis(100)
        ));
        assert_eq!(
            m.handle(Input::BackoffElapsed, t, &mut rng),
            Action::Connect
        );
        assert_eq!(m.handle(Input::Shutdown, t, &mut rng), Action::Stop);
        assert_eq!(m.handle(Input::Start, t, &mut rng), Action::Stop);
    }

    #[test]
    fn an_advised_close_waits_the_advised_delay_capped() {
        let mut rng = rand::rng();
        let t = Instant::now();
        let mut m = machine();
        for input in [Input::Start, Input::Opened, Input::Established] {
            m.handle(input, t, &mut rng);
        }
        let delay = Duration::from_millis(750);
        assert_eq!(
            m.handle(Input::Advised { delay }, t, &mut rng),
            Action::Nothing
        );
        let closed = Input::Closed { code: Some(1001) };
        assert_eq!(m.handle(closed, t, &mut rng), Action::Wait(delay));
        assert_eq!(m.backoff().failures(), 0, "a planned close is no failure");
        // Only that close: the next one backs off again.
        m.handle(Input::BackoffElapsed, t, &mut rng);
        m.handle(Input::Opened, t, &mut rng);
        let advised = Input::Advised {
            delay: Duration::from_secs(3600),
        };
        m.handle(advised, t, &mut rng);
        assert_eq!(
            m.handle(closed, t, &mut rng),
            Action::Wait(Duration::from_secs(1))
        );
        m.handle(Input::BackoffElapsed, t, &mut rng);
        m.handle(Input::Opened, t, &mut rng);
        assert!(matches!(
            m.handle(closed, t, &mut rng),
            Action::Wait(d) if d <= Duration::from_millis(100)
        ));
    }

    #[test]
    fn a_snapshot_repeat_is_dropped_after_the_window_forgot_it() {
        let mut rng = rand::rng();
        let t = Instant::now();
        let mut m = machine();
        for input in [
            Input::Start,
            Input::Opened,
            Input::Established,
            Input::Subscribed,
        ] {
            m.handle(input, t, &mut rng);
        }
        let price = |n| Input::Event {
            nonce: n,
            latest_price_of: Some("BTC"),
        };
        let other = |n| Input::Event {
            nonce: n,
            latest_price_of: None,
        };
        assert_eq!(m.handle(price("p1"), t, &mut rng), Action::Deliver);
        // Two other events push p1 out of the two-key window.
        assert_eq!(m.handle(other("x"), t, &mut rng), Action::Deliver);
        assert_eq!(m.handle(other("y"), t, &mut rng), Action::Deliver);
        assert_eq!(m.handle(price("p1"), t, &mut rng), Action::DropDuplicate);
    }
}
