//! A connection's bounded queue of frames. Producers (the fan-out, the
//! connection's own replies, its heartbeat) push shared [`Bytes`] and never
//! wait; the connection's writer takes everything queued at once. The only
//! slow-consumer policy: a queue that outgrows its bound drops its
//! connection.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for the writer.
    Queued,
    /// It did not fit: the connection is dropped.
    Overflow,
    /// The connection is closing or gone; the frame was dropped.
    Closed,
}

/// What the writer took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The frames taken end with a close frame: write them, then stop.
    pub(crate) closing: bool,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// Sum of the queued frames' lengths. Invariant: at most the bound.
    bytes: usize,
    /// A close frame is queued (or written), or the queue overflowed:
    /// nothing more is accepted.
    closing: bool,
    /// The queue outgrew its bound and its connection was dropped.
    overflowed: bool,
}

/// One connection's queue.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Notify,
    /// Cancelled when the connection ends at once: an overflow, the peer or
    /// the writer gone. The reader and the writer both watch it.
    gone: CancellationToken,
    max_bytes: usize,
}

impl Queue {
    /// An empty queue holding at most `max_bytes` of frames.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            gone: CancellationToken::new(),
            max_bytes,
        }
    }

    /// Queues `frame` and wakes the writer.
    pub(crate) fn push(&self, frame: Bytes) -> Pushed {
        let (pushed, _) = self.push_deferred(frame);
        if pushed == Pushed::Queued {
            self.wake();
        }
        pushed
    }

    /// Queues `frame` like [`Queue::push`] but leaves waking the writer to
    /// the caller: `true` when a [`Queue::wake`] is owed (the queue was
    /// empty; a non-empty queue already has one pending). The fan-out wakes
    /// each writer once per burst of events, so a writer finds the whole
    /// burst queued and writes it with one `writev`.
    pub(crate) fn push_deferred(&self, frame: Bytes) -> (Pushed, bool) {
        let mut s = self.state.lock();
        if s.closing {
            return (Pushed::Closed, false);
        }
        if s.bytes + frame.len() > self.max_bytes {
            s.closing = true;
            s.overflowed = true;
            s.frames.clear();
            s.bytes = 0;
            drop(s);
            self.gone.cancel();
            return (Pushed::Overflow, false);
        }
        let owed = s.frames.is_empty();
        s.bytes += frame.len();
        s.frames.push_back(frame);
        (Pushed::Queued, owed)
    }

    /// Wakes the writer (owed after [`Queue::push_deferred`]).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Queues a close frame after what is queued, unless one already is;
    /// nothing is accepted after it. `false` when the queue was closing.
    pub(crate) fn close_with(&self, frame: Bytes) -> bool {
        {
            let mut s = self.state.lock();
            if s.closing {
                return false;
            }
            s.closing = true;
            // A close frame is small and must go out: it is exempt from
            // the bound.
            s.bytes += frame.len();
            s.frames.push_back(frame);
        }
        self.ready.notify_one();
        true
    }

    /// Whether a close frame is queued, or the connection overflowed.
    pub(crate) fn is_closing(&self) -> bool {
        self.state.lock().closing
    }

    /// Whether the queue outgrew its bound.
    pub(crate) fn overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Completes once something was pushed since the last take (a push
    /// before this call counts: the wake-up is kept).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Moves every queued frame to the back of `into`.
    pub(crate) fn take(&self, into: &mut VecDeque<Bytes>) -> Taken {
        let mut s = self.state.lock();
        s.bytes = 0;
        if into.is_empty() {
            std::mem::swap(&mut s.frames, into);
        } else {
            into.extend(s.frames.drain(..));
        }
        Taken { closing: s.closing }
    }

    /// The token cancelled when the connection must end at once.
    pub(crate) fn gone(&self) -> &CancellationToken {
        &self.gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_everything_and_overflows_past_the_bound() {
        let q = Queue::new(10);
        assert_eq!(q.push(Bytes::from_static(b"12345")), Pushed::Queued);
        assert_eq!(q.push(Bytes::from_static(b"678")), Pushed::Queued);
        let mut out = VecDeque::new();
        assert_eq!(q.take(&mut out), Taken { closing: false });
        assert_eq!(out.len(), 2);
        // Taken frames no longer count against the bound.
        assert_eq!(q.push(Bytes::from_static(b"1234567890")), Pushed::Queued);
        assert_eq!(q.push(Bytes::from_static(b"x")), Pushed::Overflow);
        assert!(q.gone().is_cancelled() && q.overflowed());
        assert_eq!(q.push(Bytes::from_static(b"y")), Pushed::Closed);
    }

    #[test]
    fn a_wake_is_owed_once_per_empty_queue() {
        let q = Queue::new(100);
        assert_eq!(
            q.push_deferred(Bytes::from_static(b"a")),
            (Pushed::Queued, true)
        );
        assert_eq!(
            q.push_deferred(Bytes::from_static(b"b")),
            (Pushed::Queued, false)
        );
        q.take(&mut VecDeque::new());
        assert_eq!(
            q.push_deferred(Bytes::from_static(b"c")),
            (Pushed::Queued, true)
        );
    }

    #[test]
    fn nothing_follows_a_close_frame() {
        let q = Queue::new(100);
        q.push(Bytes::from_static(b"a"));
        assert!(q.close_with(Bytes::from_static(b"close")));
        assert!(!q.close_with(Bytes::from_static(b"again")));
        assert_eq!(q.push(Bytes::from_static(b"b")), Pushed::Closed);
        let mut out = VecDeque::new();
        assert_eq!(q.take(&mut out), Taken { closing: true });
        assert_eq!(out, [&b"a"[..], &b"close"[..]]);
        assert!(!q.gone().is_cancelled());
    }
}
