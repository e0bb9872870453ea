//! Waiting for something the system does by itself: the one bound every
//! test waits with ([`LIMIT`]) and the one loop that checks a condition
//! until it holds or the bound is reached ([`eventually`]).
//!
//! Prefer waiting on an event where the system offers one (a channel, a
//! `watch`, a frame that must come next); [`eventually`] is for state that
//! can only be read (`/stats`, NATS monitoring, a JetStream stream's info,
//! counters shared with a task).

use std::fmt::Display;
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout_at};

/// Bound on each wait of a test: generous, because a 2-core CI box runs the
/// tests next to each other, debug builds and several processes at once. It
/// bounds how long a broken system takes to fail a test; a passing test
/// never waits this long.
pub const LIMIT: Duration = Duration::from_secs(20);

/// First pause between two attempts of [`eventually`]; each pause doubles
/// up to [`MAX_PAUSE`], so a condition that holds soon is seen soon and one
/// that takes seconds is not polled hundreds of times.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// Longest pause between two attempts of [`eventually`].
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// What one attempt of [`eventually`] found: `Some`/`Ok` when done, with the
/// value to return; `None`/`Err` when not yet, the error saying what was
/// seen instead (the failure message quotes the last one).
pub trait Attempt {
    /// What [`eventually`] returns once an attempt succeeds.
    type Output;
    /// The value, or what was seen instead.
    fn outcome(self) -> Result<Self::Output, String>;
}

impl<T> Attempt for Option<T> {
    type Output = T;
    fn outcome(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: Display> Attempt for Result<T, E> {
    type Output = T;
    fn outcome(self) -> Result<T, String> {
        // `{:#}` prints an `anyhow::Error`'s whole chain.
        self.map_err(|e| format!("{e:#}"))
    }
}

/// Runs `attempt` until it succeeds and returns its value; panics, naming
/// `what` and `limit` (and what the last attempt saw), when `limit` passes
/// first. An attempt still running at the limit is abandoned.
///
/// The attempt is an async closure, so it may keep state across attempts
/// (`&mut` captures). Its future is not `Send` for every borrow of it as
/// rustc checks that today, so a wait inside `tokio::spawn` polls by hand
/// (as [`crate::server::Endpoint::wait_for_stats`] does).
///
/// ```ignore
/// let stats = eventually(LIMIT, "the server to count 3 events", async || {
///     let stats = server.stats().await.ok()?;
///     (stats.messages_received == 3).then_some(stats)
/// })
/// .await;
/// ```
pub async fn eventually<A: Attempt>(
    limit: Duration,
    what: &str,
    mut attempt: impl AsyncFnMut() -> A,
) -> A::Output {
    let deadline = Instant::now() + limit;
    let mut pause = FIRST_PAUSE;
    loop {
        let last = match timeout_at(deadline, attempt()).await {
            Ok(found) => match found.outcome() {
                Ok(value) => return value,
                Err(seen) => seen,
            },
            Err(_) => "(the last attempt was still running)".to_owned(),
        };
        if Instant::now() >= deadline {
            if last.is_empty() {
                panic!("{what}: not within {limit:?}");
            }
            panic!("{what}: not within {limit:?}; last seen: {last}");
        }
        sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, kept short: the workspace builds tokio without `test-util`
    // (no paused clock), and enabling it would rebuild every crate on tokio.
    const SHORT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn returns_the_first_success() {
        let mut tries = 0;
        let got = eventually(LIMIT, "the third try", async || {
            tries += 1;
            (tries == 3).then_some(tries)
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "never: not within 200ms; last seen: 0 of 1")]
    async fn panics_at_the_limit_with_what_was_seen() {
        eventually(SHORT, "never", async || Err::<(), _>("0 of 1")).await;
    }

    #[tokio::test]
    #[should_panic(
        expected = "a hung attempt: not within 200ms; last seen: (the last attempt was still running)"
    )]
    async fn abandons_an_attempt_that_outlives_the_limit() {
        eventually(SHORT, "a hung attempt", async || {
            std::future::pending::<Option<()>>().await
        })
        .await;
    }
}
