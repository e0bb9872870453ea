//! What each load user measures while it holds its connection: end-to-end
//! latency into its own HdrHistogram (microseconds), deliveries per token and
//! kind for the loss accounting, duplicates and reordering, and the
//! connect/subscribe timings Goose records as requests.
//!
//! The observer runs on the reference client's task for every message, so it
//! does no allocation and takes no shared lock per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use odin_harness::client::{MessageKind, MessageView, Notice, Observer};
use parking_lot::Mutex;

use crate::histogram::{LATENCY_MAX_US, latency_histogram};
use crate::timeline::Timeline;

/// The hash [`LoadObserver`] finds slots by (collisions are told apart by
/// comparing the strings).
fn token_hash(token: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(token)
}

/// The per-token event kinds the accounting follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    /// `price_update`
    Price = 0,
    /// `volume_update`
    Volume = 1,
    /// `trade_executed`
    Trade = 2,
}

impl Tracked {
    fn of(kind: MessageKind) -> Option<Self> {
        match kind {
            MessageKind::PriceUpdate => Some(Tracked::Price),
            MessageKind::VolumeUpdate => Some(Tracked::Volume),
            MessageKind::TradeExecuted => Some(Tracked::Trade),
            _ => None,
        }
    }
}

/// When the publisher started, in protocol milliseconds (`f64` bits); events
/// older than this are not part of the run (e.g. a snapshot of a price
/// published before it). Events of the first `warmup` after it count for
/// the loss accounting but not for latency, as usual in load testing: the
/// first burst meets cold connections and caches.
#[derive(Debug, Default)]
pub struct RunClock {
    publish_started_ms: AtomicU64,
    measure_from_ms: AtomicU64,
    /// Added to every latency: the publisher's clock minus this process's,
    /// when they are known to differ (a worker on another host,
    /// [`crate::worker::clock`]); 0 otherwise.
    offset_us: AtomicI64,
}

impl RunClock {
    /// Marks the publisher's start; latency is measured from `warmup` later.
    pub fn set_publish_started(&self, millis: f64, warmup: std::time::Duration) {
        let from = millis + warmup.as_secs_f64() * 1000.0;
        self.measure_from_ms
            .store(from.to_bits(), Ordering::Release);
        self.publish_started_ms
            .store(millis.to_bits(), Ordering::Release);
    }

    /// Corrects every latency by `offset_us` (the publisher's clock minus
    /// this process's).
    pub fn set_offset_us(&self, offset_us: i64) {
        self.offset_us.store(offset_us, Ordering::Release);
    }

    fn measure_from(&self) -> f64 {
        f64::from_bits(self.measure_from_ms.load(Ordering::Acquire))
    }

    /// Whether the publisher has started.
    pub fn started(&self) -> bool {
        self.publish_started_ms.load(Ordering::Acquire) != 0
    }

    fn publish_started(&self) -> f64 {
        let bits = self.publish_started_ms.load(Ordering::Acquire);
        if bits == 0 {
            f64::INFINITY
        } else {
            f64::from_bits(bits)
        }
    }
}

/// A connect or subscribe that Goose should record as a request.
#[derive(Debug, Clone)]
pub struct Timing {
    /// `"connect"` or `"subscribe"`.
    pub name: &'static str,
    /// How long it took.
    pub took: Duration,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// HTTP status of a refused upgrade.
    pub status: Option<u16>,
}

/// State the Goose user and its observer share (touched per connection
/// event, never per message).
#[derive(Debug, Default)]
pub struct UserLink {
    /// Timings not yet recorded into Goose.
    pub timings: Mutex<Vec<Timing>>,
    /// Signalled when a timing is added (the user's hold waits on it).
    pub timings_ready: tokio::sync::Notify,
    /// Set once the first `subscribed` arrived.
    pub subscribed: tokio::sync::Notify,
    /// Whether the user ever got live.
    pub live: std::sync::atomic::AtomicBool,
}

/// Per-token figures of one user.
#[derive(Debug, Clone, Copy, Default)]
struct Track {
    delivered: u64,
    last_timestamp: f64,
}

/// One user's measurements, returned when its client stops.
pub struct LoadObserver {
    /// The tokens this user subscribes to (its index into them is the slot).
    tokens: Vec<Box<str>>,
    /// A hash of each token, side by side in one allocation: finding a
    /// message's slot scans these and compares one string, instead of
    /// chasing every token's heap string.
    token_hashes: Vec<u64>,
    /// `tracks[slot][kind]`.
    tracks: Vec<[Track; 3]>,
    /// Whether the next message of a token may be its snapshot.
    snapshot_pending: Vec<bool>,
    /// Latency of every in-run event from when the publisher's schedule had
    /// it due (`scheduledAt`), in microseconds: a stalled publisher's late
    /// events count their wait (no coordinated omission). From `timestamp`
    /// for an event without a schedule.
    pub latency: Histogram<u64>,
    /// Latency of every in-run event from its `timestamp` (when the publisher
    /// actually made it), in microseconds.
    pub latency_stamped: Histogram<u64>,
    /// Timed events that carried no `scheduledAt` (their scheduled latency is
    /// the stamped one).
    pub unscheduled: u64,
    /// Events a user received twice (snapshots after a reconnect excepted).
    pub duplicates: u64,
    /// Events older than one already received of the same token and kind.
    pub out_of_order: u64,
    /// Events from before the publisher started (snapshots).
    pub before_run: u64,
    /// Events of channels this user did not subscribe to.
    pub unexpected: u64,
    clock: Arc<RunClock>,
    timeline: Arc<Timeline>,
    link: Arc<UserLink>,
    attempt_started: Instant,
    connected_at: Option<Instant>,
}

impl LoadObserver {
    /// An observer for a user subscribed to `channels` (`token.<id>` each).
    pub fn new(
        channels: &[String],
        clock: Arc<RunClock>,
        timeline: Arc<Timeline>,
        link: Arc<UserLink>,
    ) -> Self {
        let tokens: Vec<Box<str>> = channels
            .iter()
            .filter_map(|c| c.strip_prefix("token."))
            .map(Box::from)
            .collect();
        Self {
            token_hashes: tokens.iter().map(|t| token_hash(t)).collect(),
            tracks: vec![[Track::default(); 3]; tokens.len()],
            snapshot_pending: vec![false; tokens.len()],
            tokens,
            latency: latency_histogram(),
            latency_stamped: latency_histogram(),
            unscheduled: 0,
            duplicates: 0,
            out_of_order: 0,
            before_run: 0,
            unexpected: 0,
            clock,
            timeline,
            link,
            attempt_started: Instant::now(),
            connected_at: None,
        }
    }

    fn slot(&self, token: &str) -> Option<usize> {
        let hash = token_hash(token);
        self.token_hashes
            .iter()
            .enumerate()
            .find(|&(slot, &h)| h == hash && &*self.tokens[slot] == token)
            .map(|(slot, _)| slot)
    }

    /// The `timestamp` of the newest in-run `price_update` received for each
    /// subscribed token (0 when none), with the token id: where the user's
    /// price of that token ended.
    pub fn last_price_at(&self) -> impl Iterator<Item = (&str, f64)> {
        self.tokens
            .iter()
            .zip(&self.tracks)
            .map(|(t, tr)| (&**t, tr[Tracked::Price as usize].last_timestamp))
    }

    /// Deliveries of `kind` for each subscribed token, with the token id.
    pub fn delivered(&self, kind: Tracked) -> impl Iterator<Item = (&str, u64)> {
        self.tokens
            .iter()
            .zip(&self.tracks)
            .map(move |(t, tr)| (&**t, tr[kind as usize].delivered))
    }

    fn push_timing(&self, timing: Timing) {
        self.link.timings.lock().push(timing);
        self.link.timings_ready.notify_one();
    }
}

impl Observer for LoadObserver {
    fn on_message(&mut self, message: &MessageView<'_>, latency_us: i64) {
        let Some(kind) = Tracked::of(message.kind()) else {
            return;
        };
        let Some(slot) = message.token_id().and_then(|t| self.slot(t)) else {
            self.unexpected += 1;
            return;
        };
        let timestamp = message.timestamp();
        self.snapshot_pending[slot] = false;
        if timestamp < self.clock.publish_started() {
            self.before_run += 1;
            return;
        }
        let track = &mut self.tracks[slot][kind as usize];
        if timestamp < track.last_timestamp {
            self.out_of_order += 1;
        }
        track.last_timestamp = track.last_timestamp.max(timestamp);
        track.delivered += 1;
        if timestamp < self.clock.measure_from() {
            return;
        }
        let stamped = (latency_us + self.clock.offset_us.load(Ordering::Relaxed)).max(0) as u64;
        self.latency_stamped
            .saturating_record(stamped.clamp(1, LATENCY_MAX_US));
        // The same clock reading, moved back to when the event was due.
        let scheduled = match message.scheduled_at() {
            Some(at) => {
                let late_us = ((timestamp - at) * 1000.0).round().max(0.0) as u64;
                stamped.saturating_add(late_us)
            }
            None => {
                self.unscheduled += 1;
                stamped
            }
        };
        self.latency
            .saturating_record(scheduled.clamp(1, LATENCY_MAX_US));
        self.timeline.record(scheduled);
    }

    fn on_notice(&mut self, notice: Notice<'_>) {
        match notice {
            Notice::Connected(_) => {
                let now = Instant::now();
                self.push_timing(Timing {
                    name: "connect",
                    took: now - self.attempt_started,
                    ok: true,
                    error: None,
                    status: None,
                });
                self.connected_at = Some(now);
            }
            Notice::Subscribed(_) => {
                let now = Instant::now();
                let since = self.connected_at.unwrap_or(self.attempt_started);
                self.push_timing(Timing {
                    name: "subscribe",
                    took: now - since,
                    ok: true,
                    error: None,
                    status: None,
                });
                // The first message of each token after a subscribe may be
                // its snapshot, which repeats an event seen before a
                // reconnect; that one is no duplicate.
                self.snapshot_pending.iter_mut().for_each(|p| *p = true);
                self.link.live.store(true, Ordering::Release);
                self.link.subscribed.notify_one();
            }
            Notice::ConnectFailed { error, status } => {
                self.push_timing(Timing {
                    name: "connect",
                    took: self.attempt_started.elapsed(),
                    ok: false,
                    error: Some(format!("{error:#}")),
                    status,
                });
            }
            Notice::BackingOff { delay } => {
                self.attempt_started = Instant::now() + delay;
            }
            Notice::Duplicate(view) => {
                let slot = view.token_id().and_then(|t| self.slot(t));
                let was_snapshot = slot
                    .is_some_and(|s| std::mem::take(&mut self.snapshot_pending[s]))
                    && view.kind() == MessageKind::PriceUpdate;
                if !was_snapshot && view.timestamp() >= self.clock.publish_started() {
                    self.duplicates += 1;
                }
            }
            Notice::Disconnected { .. } => {
                self.attempt_started = Instant::now();
                self.connected_at = None;
            }
            _ => {}
        }
    }
}
