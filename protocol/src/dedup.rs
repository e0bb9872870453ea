//! A de-duplication window over nonces, bounded in both time and count.
//!
//! The server keeps one at ingest (so a duplicate published to NATS is
//! dropped once, not once per client) and clients keep one too. Memory stays
//! bounded whatever the input: at most `capacity` keys, each forgotten after
//! `ttl`. The caller passes the time in, which keeps this pure and testable.
//!
//! A key is remembered as its 128-bit SipHash-1-3 under a random per-window
//! key, not as a copy: observing allocates nothing and compares two words
//! instead of two strings, and an entry costs the same whatever the nonce's
//! length. SipHash is a keyed pseudo-random function, so two different
//! nonces share a fingerprint with probability 2⁻¹²⁸ per pair, whoever
//! chose them (they never see the key); a window of a million keys would
//! wrongly drop one event in about 10³² — below any hardware error rate.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use siphasher::sip128::{Hasher128, SipHasher13};

/// What [`DedupWindow::observe`] decided about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not in the window: deliver it (it is now remembered).
    First,
    /// Already in the window: drop it.
    Duplicate,
}

/// Remembers the keys seen in the last `ttl`, at most `capacity` of them.
///
/// A key is a duplicate while its first occurrence is in the window: younger
/// than `ttl` and among the last `capacity` distinct keys. Repeats do not
/// extend a key's life, so a steady stream of duplicates cannot pin memory.
#[derive(Debug)]
pub struct DedupWindow {
    ttl: Duration,
    capacity: usize,
    /// The SipHash key of this window's fingerprints.
    sip_key: [u8; 16],
    /// Each fingerprint's latest first sighting, as its sequence number in
    /// `order`. Invariant: holds every fingerprint of `order`, with its
    /// sequence number there; entries below `head_seq` are stale, left by
    /// eviction (removing each at once would cost a cache miss per key) and
    /// dropped in bulk once there are more than `stale_limit`.
    keys: HashMap<Fingerprint, u64, FingerprintHasher>,
    /// Fingerprints by first-seen time, oldest first.
    order: VecDeque<(Instant, Fingerprint)>,
    /// Sequence number of `order[0]`.
    head_seq: u64,
    /// Stale `keys` entries tolerated before a sweep: an eighth of the
    /// capacity, so the table needs no more room than for `capacity` keys.
    stale_limit: usize,
}

/// A key's 128-bit keyed hash: what the window stores instead of the key.
pub type Fingerprint = u128;

/// A map keyed by [`Fingerprint`]s, hashed by [`FingerprintHasher`].
pub type FingerprintMap<V> = HashMap<Fingerprint, V, FingerprintHasher>;

/// Hashes a fingerprint for a map by taking its low word: it is already
/// uniformly random (and secret), so hashing it again would only cost time.
#[derive(Debug, Clone, Copy, Default)]
pub struct FingerprintHasher;

impl BuildHasher for FingerprintHasher {
    type Hasher = FingerprintWord;
    fn build_hasher(&self) -> FingerprintWord {
        FingerprintWord(0)
    }
}

/// The [`Hasher`] of [`FingerprintHasher`]; only `u128` keys are written to it.
#[derive(Debug, Clone, Copy)]
pub struct FingerprintWord(u64);

impl Hasher for FingerprintWord {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u128` keys; folded in anyway so it stays a hash.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

impl DedupWindow {
    /// A window of `ttl` and at most `capacity` keys (`capacity` ≥ 1).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ttl,
            capacity,
            sip_key: rand::random(),
            keys: HashMap::with_hasher(FingerprintHasher),
            order: VecDeque::new(),
            head_seq: 0,
            stale_limit: capacity / 8 + 16,
        }
    }

    /// The fingerprint this window keeps for `key`. A caller that also
    /// remembers keys of its own (a client's latest price nonce per token)
    /// can keep these, fixed 16 bytes instead of strings, and hash each key
    /// once ([`DedupWindow::observe_fingerprint`]).
    pub fn fingerprint(&self, key: &str) -> Fingerprint {
        let mut h = SipHasher13::new_with_key(&self.sip_key);
        h.write(key.as_bytes());
        h.finish128().as_u128()
    }

    /// Records `key` at `now` and says whether it was seen inside the window.
    pub fn observe(&mut self, key: &str, now: Instant) -> Seen {
        self.observe_fingerprint(self.fingerprint(key), now)
    }

    /// [`DedupWindow::observe`] of a key already fingerprinted by
    /// [`DedupWindow::fingerprint`].
    pub fn observe_fingerprint(&mut self, fingerprint: Fingerprint, now: Instant) -> Seen {
        self.expire(now);
        if self.live_index(fingerprint).is_some() {
            return Seen::Duplicate;
        }
        if self.order.len() == self.capacity {
            self.evict_oldest();
        }
        if self.keys.len() - self.order.len() > self.stale_limit {
            let head = self.head_seq;
            self.keys.retain(|_, seq| *seq >= head);
        }
        let seq = self.head_seq + self.order.len() as u64;
        self.keys.insert(fingerprint, seq);
        self.order.push_back((now, fingerprint));
        Seen::First
    }

    /// Where `fingerprint` is in `order`, if it is there.
    fn live_index(&self, fingerprint: Fingerprint) -> Option<usize> {
        let seq = *self.keys.get(&fingerprint)?;
        seq.checked_sub(self.head_seq).map(|i| i as usize)
    }

    /// Whether `key` is in the window at `now`, without recording it.
    pub fn contains(&self, key: &str, now: Instant) -> bool {
        self.live_index(self.fingerprint(key))
            .is_some_and(|i| now.saturating_duration_since(self.order[i].0) < self.ttl)
    }

    /// Forgets every key older than the window.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(t, _)) = self.order.front() {
            if now.saturating_duration_since(t) < self.ttl {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Drops the oldest key; its `keys` entry goes stale.
    fn evict_oldest(&mut self) {
        if self.order.pop_front().is_some() {
            self.head_seq += 1;
        }
    }

    /// How many keys are remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The most keys this window ever holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long a key is remembered.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_inside_the_window_only() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(Duration::from_secs(10), 3);
        assert_eq!(w.observe("a", t0), Seen::First);
        assert_eq!(w.observe("a", t0 + Duration::from_secs(9)), Seen::Duplicate);
        assert_eq!(w.observe("a", t0 + Duration::from_secs(10)), Seen::First);
    }

    #[test]
    fn forgets_the_oldest_past_capacity() {
        let t = Instant::now();
        let mut w = DedupWindow::new(Duration::from_secs(10), 2);
        w.observe("a", t);
        w.observe("b", t);
        w.observe("c", t);
        assert_eq!(w.len(), 2);
        assert_eq!(w.observe("a", t), Seen::First);
        assert_eq!(w.observe("c", t), Seen::Duplicate);
    }
}
