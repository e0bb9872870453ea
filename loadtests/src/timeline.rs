//! Latency over time: one histogram per second of the run, kept per worker
//! thread (no lock shared between threads on the hot path) and merged when
//! the report is written.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::histogram::{LATENCY_MAX_US, latency_histogram};

/// One thread's histograms, one per second of the run.
type Shard = Arc<Mutex<Vec<Histogram<u64>>>>;

/// Per-second latency of the whole run.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    /// One shard per thread that recorded; each shard's lock is only ever
    /// taken by its own thread until the run ends.
    shards: Mutex<Vec<Shard>>,
}

thread_local! {
    /// This thread's shard, per timeline (keyed by the timeline's address).
    static SHARD: RefCell<Option<(usize, Shard)>> =
        const { RefCell::new(None) };
}

impl Timeline {
    /// A timeline whose second 0 starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            shards: Mutex::new(Vec::new()),
        })
    }

    /// Records one latency at the current second.
    pub fn record(self: &Arc<Self>, latency_us: u64) {
        let second = self.start.elapsed().as_secs() as usize;
        let key = Arc::as_ptr(self) as usize;
        SHARD.with(|cell| {
            let mut cell = cell.borrow_mut();
            let shard = match &*cell {
                Some((k, shard)) if *k == key => shard.clone(),
                _ => {
                    let shard = Arc::new(Mutex::new(Vec::new()));
                    self.shards.lock().push(shard.clone());
                    *cell = Some((key, shard.clone()));
                    shard
                }
            };
            let mut seconds = shard.lock();
            while seconds.len() <= second {
                seconds.push(latency_histogram());
            }
            seconds[second].saturating_record(latency_us.clamp(1, LATENCY_MAX_US));
        });
    }

    /// Every second's histogram, merged over all threads.
    pub fn seconds(&self) -> Vec<Histogram<u64>> {
        let mut merged: Vec<Histogram<u64>> = Vec::new();
        for shard in self.shards.lock().iter() {
            for (i, h) in shard.lock().iter().enumerate() {
                while merged.len() <= i {
                    merged.push(latency_histogram());
                }
                merged[i].add(h).expect("same bounds");
            }
        }
        merged
    }
}
