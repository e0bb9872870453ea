//! The reference client's counters, shared lock-free between the client task
//! and whoever watches it (a test, a load user's reporting).
//!
//! There is deliberately no "gap" counter: the protocol carries no sequence
//! number, and conflation (PROTOCOL §4.5) legitimately skips price updates of
//! a client that is behind, so a client cannot tell a lost event from a
//! conflated one. Loss is measured end to end instead, by comparing what the
//! publisher sent with what the application received.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Live counters; every field only grows, except `live` and the close code.
#[derive(Debug, Default)]
pub struct ClientStats {
    received: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    control: AtomicU64,
    invalid_frames: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    disconnects: AtomicU64,
    advisories: AtomicU64,
    /// `0` until a connection closed with a code (0 is no valid close code).
    last_close_code: AtomicU32,
    live: AtomicBool,
}

/// A copy of the counters at one moment, for assertions and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Events (the five NATS kinds) received, duplicates included:
    /// `received == delivered + duplicates`.
    pub received: u64,
    /// Events handed to the application.
    pub delivered: u64,
    /// Events dropped because their nonce had been delivered before.
    pub duplicates: u64,
    /// Other server messages (established, subscribed, heartbeat, pong, error …).
    pub control: u64,
    /// Frames that were not valid server messages (a server bug).
    pub invalid_frames: u64,
    /// Connections opened (WebSocket upgrade succeeded).
    pub connects: u64,
    /// Connections after the first: `connects − 1` once connected.
    pub reconnects: u64,
    /// Attempts that failed before the upgrade completed.
    pub connect_failures: u64,
    /// Connections that ended (by the server, the network or a timeout).
    pub disconnects: u64,
    /// `reconnect` advisories received (protocol version 2): closes the
    /// server announced, each followed by its advised delay.
    pub advisories: u64,
    /// Code of the last close frame received, if any.
    pub last_close_code: Option<u16>,
    /// Whether the client is subscribed right now.
    pub live: bool,
}

impl ClientStats {
    /// The counters now.
    pub fn snapshot(&self) -> ClientCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let connects = get(&self.connects);
        ClientCounters {
            received: get(&self.received),
            delivered: get(&self.delivered),
            duplicates: get(&self.duplicates),
            control: get(&self.control),
            invalid_frames: get(&self.invalid_frames),
            connects,
            reconnects: connects.saturating_sub(1),
            connect_failures: get(&self.connect_failures),
            disconnects: get(&self.disconnects),
            advisories: get(&self.advisories),
            last_close_code: match self.last_close_code.load(Ordering::Relaxed) {
                0 => None,
                code => u16::try_from(code).ok(),
            },
            live: self.live.load(Ordering::Relaxed),
        }
    }

    /// Events handed to the application so far (cheaper than a snapshot).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Whether the client is subscribed right now.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    pub(crate) fn add_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_control(&self) {
        self.control.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_invalid(&self) {
        self.invalid_frames.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_disconnect(&self, code: Option<u16>) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        if let Some(code) = code {
            self.last_close_code
                .store(u32::from(code), Ordering::Relaxed);
        }
    }
    pub(crate) fn add_advisory(&self) {
        self.advisories.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }
}
