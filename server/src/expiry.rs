//! A connection's token deadline, which outlives the token that set it: the
//! session moves it when a `refresh` brings a valid new token (`PROTOCOL.md`
//! §3, version 2) and the writer task, which owns the socket, closes the
//! connection with `4001` when it passes. The two never share a lock: the
//! deadline travels over a watch channel, which the writer's timer re-reads
//! whenever it fires or the value changes.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

/// The longest a connection's deadline can be from now: a century is
/// "never" for a connection, and keeps the addition to `Instant` in range
/// whatever the token said.
pub(crate) const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The session's end of the deadline: it moves it.
#[derive(Debug)]
pub(crate) struct Deadline(watch::Sender<Instant>);

/// The writer's end of the deadline: it waits for it.
pub(crate) type DeadlineWatch = watch::Receiver<Instant>;

impl Deadline {
    /// A deadline at the token expiry `expires_at`, and the writer's end.
    pub(crate) fn new(expires_at: SystemTime) -> (Self, DeadlineWatch) {
        let (tx, rx) = watch::channel(instant_of(expires_at));
        (Self(tx), rx)
    }

    /// Moves the deadline to `expires_at` (later or earlier: it is the new
    /// token's expiry that counts from now on).
    pub(crate) fn move_to(&self, expires_at: SystemTime) {
        // With the writer gone the connection is over; nothing to move.
        let _ = self.0.send(instant_of(expires_at));
    }
}

/// The monotonic instant of the wall-clock `expires_at` (now, when past).
fn instant_of(expires_at: SystemTime) -> Instant {
    let left = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left.min(CENTURY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_writer_sees_each_move_and_far_expiries_stay_in_range() {
        let now = SystemTime::now();
        let (deadline, mut watch) = Deadline::new(now + Duration::from_secs(5));
        let first = *watch.borrow_and_update();
        deadline.move_to(now + Duration::from_secs(60));
        assert!(watch.has_changed().unwrap());
        let moved = *watch.borrow_and_update();
        assert!(moved > first + Duration::from_secs(50));
        deadline.move_to(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799));
        assert!(*watch.borrow_and_update() <= Instant::now() + CENTURY);
        deadline.move_to(SystemTime::UNIX_EPOCH);
        assert!(*watch.borrow_and_update() <= Instant::now());
    }
}
