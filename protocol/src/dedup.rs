//! A de-duplication window over nonces, bounded in both time and count.
//!
//! The server keeps one at ingest (so a duplicate published to NATS is
//! dropped once, not once per client) and clients keep one too. Memory stays
//! bounded whatever the input: at most `capacity` keys, each forgotten after
//! `ttl`. The caller passes the time in, which keeps this pure and testable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

// foldhash, seeded per window: several times faster than SipHash on short
// nonces, and still no fixed seed for an attacker to collide keys against.
use foldhash::fast::RandomState;

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
    /// Invariant: holds exactly the keys of `order`.
    keys: HashMap<Arc<str>, Instant, RandomState>,
    /// Keys by first-seen time, oldest first.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl DedupWindow {
    /// A window of `ttl` and at most `capacity` keys (`capacity` ≥ 1).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ttl,
            capacity,
            keys: HashMap::with_hasher(RandomState::default()),
            order: VecDeque::new(),
        }
    }

    /// Records `key` at `now` and says whether it was seen inside the window.
    pub fn observe(&mut self, key: &str, now: Instant) -> Seen {
        self.expire(now);
        if self.keys.contains_key(key) {
            return Seen::Duplicate;
        }
        if self.order.len() == self.capacity {
            self.evict_oldest();
        }
        let key: Arc<str> = Arc::from(key);
        self.keys.insert(key.clone(), now);
        self.order.push_back((now, key));
        Seen::First
    }

    /// Whether `key` is in the window at `now`, without recording it.
    pub fn contains(&self, key: &str, now: Instant) -> bool {
        self.keys
            .get(key)
            .is_some_and(|&t| now.saturating_duration_since(t) < self.ttl)
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

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.keys.remove(&key);
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
