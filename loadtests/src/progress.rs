//! The live progress line: once a second, on stderr, how many users are live
//! and how fast deliveries arrive.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::scenario::Scenario;
use crate::user::LoadContext;

/// Prints the progress line every second until aborted.
pub fn start(ctx: Arc<LoadContext>, scenario: Scenario) -> JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last_delivered = 0u64;
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            let delivered: u64 = ctx.clients.lock().iter().map(|u| u.stats.delivered()).sum();
            let rate = delivered.saturating_sub(last_delivered);
            last_delivered = delivered;
            let live = ctx.subscribed.load(Ordering::Acquire);
            let failed = ctx.failed.load(Ordering::Acquire);
            let phase = if ctx.finished.is_cancelled() {
                "stopping"
            } else if ctx.clock_started() {
                "publishing"
            } else {
                "ramping"
            };
            eprint!(
                "\r[{}] {:>5.0}s  {phase:<10}  users {live}/{} live, {failed} failed  ·  {rate} msg/s  ·  {delivered} received   ",
                scenario.name,
                started.elapsed().as_secs_f64(),
                scenario.users,
            );
            let _ = std::io::stderr().flush();
        }
    })
}
