//! The one retry loop of the requests to JetStream ([`retry_until`]): a
//! cluster that is electing a leader, or a client still connecting, does
//! not answer, and a later attempt may reach a node that does.

use std::time::Duration;

use tokio::time::Instant;

/// How long [`retry_until`] waits after a failure: `first`, doubled after
/// each further failure up to `most`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pace {
    first: Duration,
    most: Duration,
}

impl Pace {
    /// 200 ms after every failure: a request that one node or another
    /// answers once it is there (the cut, direct gets, the list of stored
    /// subjects), asked again soon.
    pub(super) const STEADY: Pace = Pace {
        first: Duration::from_millis(200),
        most: Duration::from_millis(200),
    };

    /// 100 ms, doubled up to 1 s: opening the store, while NATS or
    /// JetStream may still be coming up.
    pub(super) const BACKOFF: Pace = Pace {
        first: Duration::from_millis(100),
        most: Duration::from_secs(1),
    };
}

/// A retry loop's pace and deadline, for a loop that does more between
/// attempts than [`retry_until`] can (the rounds of direct gets).
#[derive(Debug)]
pub(super) struct Retry {
    deadline: Instant,
    wait: Duration,
    most: Duration,
    failures: u32,
}

impl Retry {
    /// Retries paced by `pace` until `deadline`.
    pub(super) fn until(deadline: Instant, pace: Pace) -> Self {
        Self {
            deadline,
            wait: pace.first,
            most: pace.most,
            failures: 0,
        }
    }

    /// Failed attempts so far.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts a failed attempt, and says whether another may follow:
    /// not when the wait before it would reach the deadline.
    pub(super) fn may_retry(&mut self) -> bool {
        self.failures += 1;
        Instant::now() + self.wait < self.deadline
    }

    /// The wait before the next attempt.
    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(self.most);
    }
}

/// Runs `attempt` until it succeeds, waiting by `pace` after each failure,
/// and gives up with the last error when the next wait would reach
/// `deadline`. `retrying` hears of each failure that is retried, with the
/// number of failures so far. An attempt itself is not cut at the
/// deadline: an `attempt` that must not outlast it bounds itself.
pub(super) async fn retry_until<T, E, F>(
    deadline: Instant,
    pace: Pace,
    mut attempt: impl FnMut() -> F,
    mut retrying: impl FnMut(u32, &E),
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let mut retry = Retry::until(deadline, pace);
    loop {
        let error = match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        if !retry.may_retry() {
            return Err(error);
        }
        retrying(retry.failures(), &error);
        retry.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_until_an_attempt_succeeds() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempts = 0;
        let mut retried = Vec::new();
        let done = retry_until(
            deadline,
            Pace::BACKOFF,
            || {
                attempts += 1;
                let result = if attempts < 3 {
                    Err(attempts)
                } else {
                    Ok("done")
                };
                async move { result }
            },
            |failures, error| retried.push((failures, *error)),
        )
        .await;
        assert_eq!(done, Ok("done"));
        assert_eq!(retried, [(1, 1), (2, 2)]);
    }

    #[tokio::test]
    async fn gives_up_with_the_last_error_before_a_wait_past_the_deadline() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let mut attempts = 0;
        let given_up = retry_until(
            deadline,
            Pace::STEADY,
            || {
                attempts += 1;
                std::future::ready(Err::<(), _>(attempts))
            },
            |_, _| {},
        )
        .await;
        // At 0 ms and 200 ms; a third would start at 400 ms.
        assert_eq!(given_up, Err(2));
        assert!(started.elapsed() < Duration::from_millis(300));
    }
}
