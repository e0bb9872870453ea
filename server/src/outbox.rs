//! A connection's bounded send queue: frames wait here between the producers
//! (ingest fan-out, the connection's own replies) and the connection's single
//! writer task.
//!
//! It is bounded in bytes. While a client is behind — more than the
//! conflation threshold is pending, which happens only when its socket stops
//! taking data — a newer `price_update` or `volume_update` of a token replaces
//! the unsent older one of the same token and kind *in place* (conflation),
//! so a slow reader still ends on the latest price. A client that keeps up
//! gets every update, even in a burst that arrives faster than its writer
//! wakes up. Anything else that does not fit makes the client a slow consumer:
//! the outbox asks its writer to close with `4008`. A producer never waits.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use odin_protocol::close::{CloseCode, SLOW_CONSUMER};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::compression::Deflated;

/// Identifies "the pending update of token T of kind K" for conflation.
/// Built by the router from its token slot number and the event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConflationKey(pub u64);

/// One text frame waiting to be written.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The JSON text; shared by every recipient of the same event.
    pub text: Utf8Bytes,
    /// Set for frames a newer one of the same key may replace.
    pub conflation: Option<ConflationKey>,
    /// The event's compressed payload, shared like `text` and made by the
    /// first writer whose client takes compressed frames; `None` for frames
    /// that always go plain (one connection's own messages, small events).
    pub deflated: Option<Arc<Deflated>>,
}

impl Frame {
    /// A frame that is never conflated.
    pub fn plain(text: impl Into<Utf8Bytes>) -> Self {
        Self {
            text: text.into(),
            conflation: None,
            deflated: None,
        }
    }
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Appended to the queue.
    Queued,
    /// Replaced an older pending frame of the same key.
    Conflated,
    /// Did not fit: the outbox is now closing with `4008`.
    Overflow,
    /// The outbox is closing; the frame was dropped.
    Closed,
}

/// How the writer should end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    /// The close code to send.
    pub code: CloseCode,
    /// Write the frames already queued before closing (e.g. the `error` that
    /// explains a `1008`); otherwise they are discarded.
    pub drain: bool,
    /// This close answers one the peer sent: the closing handshake is then
    /// complete once it is written, with no close of the peer's to wait for.
    pub reply: bool,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Sequence number of `frames[0]`; frame `i` has `head_seq + i`.
    head_seq: u64,
    /// Sum of the queued frames' lengths.
    bytes: usize,
    /// The newest pending conflatable frame of each key, as a sequence
    /// number; kept only while `indexed` (the client is behind), so a client
    /// that keeps up pays no hash per delivery. Invariant: every entry
    /// points inside `frames`.
    pending: HashMap<ConflationKey, u64>,
    indexed: bool,
    /// The payload of the latest ping still to be answered (RFC 6455 §5.5.3
    /// lets an endpoint answer only the most recent one).
    pong: Option<Bytes>,
    close: Option<CloseRequest>,
}

impl State {
    /// Builds `pending` from the queue: the first time a conflatable frame
    /// arrives while the client is behind.
    fn index_pending(&mut self) {
        for (i, frame) in self.frames.iter().enumerate() {
            if let Some(key) = frame.conflation {
                self.pending.insert(key, self.head_seq + i as u64);
            }
        }
        self.indexed = true;
    }
}

/// The bounded, conflating queue of one connection.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    ready: Notify,
    /// Signalled by a close that discards the queue (an overflow): the
    /// writer gives up a write stuck on a full socket at once instead of
    /// at the write timeout.
    abort: Notify,
    max_bytes: usize,
    /// Conflate only while more than this many bytes are pending.
    conflate_above: usize,
}

impl Outbox {
    /// An empty outbox holding at most `max_bytes` of pending frames, which
    /// starts conflating once more than `conflate_above` bytes are pending.
    pub fn new(max_bytes: usize, conflate_above: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            abort: Notify::new(),
            max_bytes,
            conflate_above,
        }
    }

    /// Queues `frame`, conflating it with a pending one of the same key, and
    /// wakes the writer.
    pub fn push(&self, frame: Frame) -> Pushed {
        let (pushed, wake) = self.push_deferred(frame);
        if wake {
            self.wake();
        }
        pushed
    }

    /// Queues `frame` like [`Outbox::push`] but leaves waking the writer to
    /// the caller: `true` when a [`Outbox::wake`] is owed. Fan-out uses it to
    /// wake each writer once per burst of events instead of once per event,
    /// so a burst goes out in one write per client.
    pub fn push_deferred(&self, frame: Frame) -> (Pushed, bool) {
        let mut st = self.state.lock();
        if st.close.is_some() {
            return (Pushed::Closed, false);
        }
        if let Some(key) = frame.conflation
            && st.bytes > self.conflate_above
            && let Some(&seq) = {
                if !st.indexed {
                    st.index_pending();
                }
                st.pending.get(&key)
            }
        {
            let idx = (seq - st.head_seq) as usize;
            let new_len = frame.text.len();
            let old_len = st.frames[idx].text.len();
            // A replacement never makes a client slow on its own: it is the
            // one frame per key the bound has already paid for (±a few bytes).
            st.bytes = st.bytes - old_len + new_len;
            st.frames[idx] = frame;
            return (Pushed::Conflated, false);
        }
        let len = frame.text.len();
        // An empty queue always takes one frame, however large, so a single
        // big event cannot disconnect every client of a small bound.
        if !st.frames.is_empty() && st.bytes + len > self.max_bytes {
            let overflow = CloseRequest {
                code: SLOW_CONSUMER,
                drain: false,
                reply: false,
            };
            self.request_close(st, overflow);
            return (Pushed::Overflow, false);
        }
        let was_empty = st.frames.is_empty();
        let seq = st.head_seq + st.frames.len() as u64;
        if let Some(key) = frame.conflation
            && st.indexed
        {
            st.pending.insert(key, seq);
        }
        st.bytes += len;
        st.frames.push_back(frame);
        (Pushed::Queued, was_empty)
    }

    /// Wakes the writer (after [`Outbox::push_deferred`]).
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Asks the writer to answer a ping with `payload` (replacing an older
    /// unanswered one).
    pub fn pong(&self, payload: Bytes) {
        let mut st = self.state.lock();
        if st.close.is_some() {
            return;
        }
        st.pong = Some(payload);
        drop(st);
        self.ready.notify_one();
    }

    /// Takes the ping payload to answer, if any.
    pub fn take_pong(&self) -> Option<Bytes> {
        self.state.lock().pong.take()
    }

    /// Asks the writer to close the connection with `request`. The first
    /// request wins; returns whether this one did.
    pub fn close(&self, request: CloseRequest) -> bool {
        let st = self.state.lock();
        if st.close.is_some() {
            return false;
        }
        self.request_close(st, request);
        true
    }

    /// Records `request` (no close is pending: the caller checked under the
    /// same lock), then wakes the writer, and aborts a write it is stuck in
    /// when the queue is to be discarded.
    fn request_close(&self, mut st: MutexGuard<'_, State>, request: CloseRequest) {
        st.close = Some(request);
        drop(st);
        self.ready.notify_one();
        if !request.drain {
            self.abort.notify_one();
        }
    }

    /// Whether a close has been requested.
    pub fn is_closing(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Waits until there is something for the writer to do.
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// Waits until a close that discards the queue has been requested (a
    /// stored signal: a request made before the wait counts).
    pub async fn aborted(&self) {
        self.abort.notified().await;
    }

    /// Moves every pending frame into `out` (which should be empty; its
    /// allocation is reused) and returns the close request, if any. Frames
    /// queued before a non-draining close are discarded.
    pub fn take(&self, out: &mut VecDeque<Frame>) -> Option<CloseRequest> {
        let mut st = self.state.lock();
        let close = st.close;
        let n = st.frames.len() as u64;
        st.head_seq += n;
        st.bytes = 0;
        if st.indexed {
            // Only a client that fell behind built the index: free it
            // rather than keep its capacity for the connection's lifetime.
            st.pending = HashMap::new();
            st.indexed = false;
        }
        if close.is_some_and(|c| !c.drain) {
            st.frames.clear();
        } else {
            std::mem::swap(&mut st.frames, out);
        }
        close
    }

    /// Pending bytes (for tests and diagnostics).
    pub fn pending_bytes(&self) -> usize {
        self.state.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str, key: Option<u64>) -> Frame {
        Frame {
            text: text.into(),
            conflation: key.map(ConflationKey),
            deflated: None,
        }
    }

    fn texts(q: &VecDeque<Frame>) -> Vec<&str> {
        q.iter().map(|f| f.text.as_str()).collect()
    }

    #[test]
    fn conflates_in_place_and_keeps_other_frames() {
        let o = Outbox::new(1 << 20, 0);
        assert_eq!(o.push(f("p1", Some(1))), Pushed::Queued);
        assert_eq!(o.push(f("t1", None)), Pushed::Queued);
        assert_eq!(o.push(f("v1", Some(2))), Pushed::Queued);
        assert_eq!(o.push(f("p2", Some(1))), Pushed::Conflated);
        assert_eq!(o.push(f("t2", None)), Pushed::Queued);
        let mut out = VecDeque::new();
        assert_eq!(o.take(&mut out), None);
        assert_eq!(texts(&out), ["p2", "t1", "v1", "t2"]);
        // After a take the old entries are gone: nothing to conflate with.
        assert_eq!(o.push(f("p3", Some(1))), Pushed::Queued);
        out.clear();
        o.take(&mut out);
        assert_eq!(texts(&out), ["p3"]);
    }

    #[test]
    fn keeps_every_update_while_under_the_threshold() {
        let o = Outbox::new(1 << 20, 6);
        assert_eq!(o.push(f("p1", Some(1))), Pushed::Queued);
        assert_eq!(o.push(f("p2", Some(1))), Pushed::Queued);
        assert_eq!(o.push(f("p3", Some(1))), Pushed::Queued);
        // Now 6 bytes are pending: over the threshold the newest is replaced.
        assert_eq!(o.push(f("p4", Some(1))), Pushed::Queued);
        assert_eq!(o.push(f("p5", Some(1))), Pushed::Conflated);
        let mut out = VecDeque::new();
        o.take(&mut out);
        assert_eq!(texts(&out), ["p1", "p2", "p3", "p5"]);
    }

    #[test]
    fn overflow_closes_with_slow_consumer_and_discards() {
        let o = Outbox::new(10, 0);
        assert_eq!(o.push(f("0123456789abc", None)), Pushed::Queued);
        assert_eq!(o.push(f("x", None)), Pushed::Overflow);
        assert_eq!(o.push(f("y", None)), Pushed::Closed);
        let mut out = VecDeque::new();
        let close = o.take(&mut out).unwrap();
        assert_eq!(close.code, SLOW_CONSUMER);
        assert!(out.is_empty());
    }

    #[test]
    fn draining_close_keeps_queued_frames() {
        let o = Outbox::new(100, 0);
        o.push(f("error", None));
        assert!(o.close(CloseRequest {
            code: odin_protocol::close::POLICY_VIOLATION,
            drain: true,
            reply: false,
        }));
        assert!(!o.close(CloseRequest {
            code: odin_protocol::close::GOING_AWAY,
            drain: false,
            reply: false,
        }));
        let mut out = VecDeque::new();
        assert_eq!(o.take(&mut out).unwrap().code.code, 1008);
        assert_eq!(texts(&out), ["error"]);
    }
}
