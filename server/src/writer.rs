//! A connection's single writer task: it owns the write half of the
//! socket, drains the outbox into it (everything queued goes out in one
//! vectored write, straight from the shared payloads), answers pings, sends
//! heartbeats and pings, enforces the token's expiry, the pong deadline and
//! the write timeout, and performs the closing handshake.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use odin_protocol::ServerMessage;
use odin_protocol::close::{self, CloseCode};
use odin_protocol::message::Heartbeat;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::outbox::{Frame, Outbox};
use crate::shared::Shared;
use crate::wire::{self, Progress};

/// One round of the write loop in this many looks at shutdown, the reader's
/// end, the token's expiry and the heartbeat before the outbox: under a
/// steady flow they are seen within a few milliseconds, at no cost per
/// batch.
const FULL_POLL_EVERY: u32 = 16;

/// How long the closing handshake may take before the TCP connection is
/// dropped (`PROTOCOL.md` §4.5).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the reader tells the writer about the peer: whether it owes us a
/// pong (set by the writer when it pings, cleared by the reader when a pong
/// arrives), and whether its close frame has arrived.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    awaiting_pong: AtomicBool,
    /// Signalled by the reader when the peer's close frame arrives: the
    /// closing handshake the writer started is then complete.
    peer_closed: Notify,
}

impl Liveness {
    pub(crate) fn pong_received(&self) {
        self.awaiting_pong.store(false, Ordering::Release);
    }

    pub(crate) fn close_received(&self) {
        self.peer_closed.notify_one();
    }
}

/// What the writer needs besides the socket.
pub(crate) struct WriterContext {
    pub(crate) shared: Arc<Shared>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) liveness: Arc<Liveness>,
    /// When the client's token expires.
    pub(crate) expires_at: Instant,
    /// Cancelled by the reader when the peer is gone.
    pub(crate) reader_done: CancellationToken,
    /// The client negotiated permessage-deflate: events with a shared
    /// compressed payload go out compressed.
    pub(crate) compression: bool,
}

/// Why the write loop stopped.
enum Stop {
    /// Close the connection with `code`.
    Close {
        code: CloseCode,
        /// This close answers the peer's.
        reply: bool,
        /// A frame a stopped write left half-sent: its rest goes out before
        /// the close frame, which must start on a frame boundary.
        unfinished: Option<Unfinished>,
    },
    /// The peer is gone or the socket failed: nothing more to send.
    Gone,
}

impl Stop {
    fn close(code: CloseCode) -> Self {
        Stop::Close {
            code,
            reply: false,
            unfinished: None,
        }
    }
}

/// What woke the write loop.
enum Woke {
    /// The outbox has frames, a pong or a close request.
    Outbox,
    /// A heartbeat (and ping) is due.
    Heartbeat,
    /// The connection ends.
    Stop(Stop),
}

/// The frame a write stopped in the middle of.
struct Unfinished {
    opcode: u8,
    payload: Bytes,
    /// Bytes of it (header included) already sent.
    offset: usize,
}

/// Runs until the connection ends.
pub(crate) async fn run(io: OwnedWriteHalf, ctx: WriterContext) {
    let stop = write_loop(&io, &ctx).await;
    if let Stop::Close {
        code,
        reply,
        unfinished,
    } = stop
    {
        if code == close::SLOW_CONSUMER {
            ctx.shared.metrics.slow_consumer_disconnects.inc();
        }
        let deadline = Instant::now() + CLOSE_GRACE;
        let payload = wire::close_payload(code.code, code.reason);
        // The rest of a half-sent frame, if any, then the close frame.
        let rest = unfinished.as_ref().map(|u| (u.opcode, &u.payload[..]));
        let frames = || {
            rest.into_iter()
                .chain(std::iter::once((wire::OP_CLOSE, payload.as_slice())))
        };
        let mut progress = Progress {
            frames: 0,
            offset: unfinished.as_ref().map_or(0, |u| u.offset),
        };
        let send_close = write_all(&io, frames, &mut progress, CLOSE_GRACE);
        // Send our close, then (unless it answers the peer's) wait for the
        // peer's (or the reader's end); give up on both at the deadline and let
        // the socket drop.
        if let Ok(Ok(())) = timeout_at(deadline, send_close).await
            && !reply
        {
            let peer_closed = async {
                tokio::select! {
                    _ = ctx.liveness.peer_closed.notified() => {}
                    _ = ctx.reader_done.cancelled() => {}
                }
            };
            let _ = timeout_at(deadline, peer_closed).await;
        }
    }
}

async fn write_loop(io: &OwnedWriteHalf, ctx: &WriterContext) -> Stop {
    let shared = &ctx.shared;
    let period = shared.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let expiry = tokio::time::sleep_until(ctx.expires_at);
    // Made once and polled by reference: a fresh `cancelled()` per wake-up
    // would register with the token again each time. Every poll of a
    // cancellation future still locks its token's node, so the writer waits
    // on a child of the server-wide shutdown token: its own lock, not one
    // every connection contends for on every wake-up.
    let reader_done = ctx.reader_done.cancelled();
    let shutdown_token = shared.shutdown.child_token();
    let shutdown = shutdown_token.cancelled();
    let aborted = ctx.outbox.aborted();
    tokio::pin!(expiry, reader_done, shutdown, aborted);
    let mut batch: VecDeque<Frame> = VecDeque::new();
    let mut rounds: u32 = 0;
    loop {
        // Under load nearly every wake-up is the outbox's: its arm comes
        // first, so a wake-up polls one future instead of five (the others
        // were about 6 % of the server's CPU at 400,000 deliveries/s). They
        // stay registered and wake the task themselves; every
        // FULL_POLL_EVERY-th round puts them first, so a client whose
        // outbox is always ready still gets its heartbeat, expiry and
        // shutdown within a few milliseconds.
        rounds = rounds.wrapping_add(1);
        let woke = if !rounds.is_multiple_of(FULL_POLL_EVERY) {
            tokio::select! {
                biased;
                _ = ctx.outbox.ready() => Woke::Outbox,
                _ = &mut reader_done => Woke::Stop(Stop::Gone),
                _ = &mut shutdown => Woke::Stop(Stop::close(close::GOING_AWAY)),
                _ = &mut expiry => Woke::Stop(Stop::close(close::TOKEN_EXPIRED)),
                _ = heartbeat.tick() => Woke::Heartbeat,
            }
        } else {
            tokio::select! {
                biased;
                _ = &mut reader_done => Woke::Stop(Stop::Gone),
                _ = &mut shutdown => Woke::Stop(Stop::close(close::GOING_AWAY)),
                _ = &mut expiry => Woke::Stop(Stop::close(close::TOKEN_EXPIRED)),
                _ = heartbeat.tick() => Woke::Heartbeat,
                _ = ctx.outbox.ready() => Woke::Outbox,
            }
        };
        let ping = match woke {
            Woke::Stop(stop) => return stop,
            Woke::Outbox => false,
            Woke::Heartbeat => {
                if ctx.liveness.awaiting_pong.swap(true, Ordering::AcqRel) {
                    return Stop::close(close::NO_PONG);
                }
                ctx.outbox.push(shared.frame(|timestamp, nonce| {
                    ServerMessage::Heartbeat(Heartbeat {
                        server_id: shared.server_id.clone(),
                        timestamp,
                        nonce,
                    })
                }));
                true
            }
        };
        let close = ctx.outbox.take(&mut batch);
        let pong = ctx.outbox.take_pong();
        let count = batch.len() as u64;
        let mut compressed = 0;
        if ctx.compression {
            // Made (once per event, by whichever writer comes first) before
            // the write, so every retry below yields the same bytes.
            for frame in &batch {
                if let Some(d) = &frame.deflated
                    && d.get(frame.text.as_bytes(), &shared.metrics).is_some()
                {
                    compressed += 1;
                }
            }
        }
        let frames = || {
            let pong = pong.as_deref().map(|p| (wire::OP_PONG, p));
            let texts = batch.iter().map(|f| text_frame(f, ctx.compression, shared));
            let ping = ping.then_some((wire::OP_PING, &[][..]));
            pong.into_iter().chain(texts).chain(ping)
        };
        // Where a stopped write left off, for the close that follows it.
        let mut progress = Progress::default();
        let unfinished = |progress: &Progress| {
            let (opcode, payload) = frames().nth(progress.frames)?;
            (progress.offset > 0).then(|| Unfinished {
                opcode,
                payload: Bytes::copy_from_slice(payload),
                offset: progress.offset,
            })
        };
        let written = tokio::select! {
            biased;
            // Most writes complete at once; the abort is looked at only
            // while one waits.
            written = write_all(io, frames, &mut progress, shared.config.write_timeout) => written,
            // An overflow while a write is stuck on a full socket: stop now,
            // not at the write timeout (the close below may then find the
            // socket still full and drop it after the grace, as §8 allows).
            _ = &mut aborted => {
                let unfinished = unfinished(&progress);
                let request = ctx.outbox.take(&mut batch);
                return Stop::Close {
                    code: request.map_or(close::SLOW_CONSUMER, |r| r.code),
                    reply: request.is_some_and(|r| r.reply),
                    unfinished,
                };
            }
        };
        match written {
            Ok(()) => {
                shared.metrics.messages_delivered.inc_by(count);
                if compressed > 0 {
                    shared.metrics.messages_compressed.inc_by(compressed);
                }
            }
            Err(WriteFailure::TimedOut) => {
                return Stop::Close {
                    code: close::SLOW_CONSUMER,
                    reply: false,
                    unfinished: unfinished(&progress),
                };
            }
            Err(WriteFailure::Socket) => return Stop::Gone,
        }
        batch.clear();
        if let Some(request) = close {
            return Stop::Close {
                code: request.code,
                reply: request.reply,
                unfinished: None,
            };
        }
    }
}

/// A queued text frame as this client gets it: the event's shared
/// compressed payload with RSV1 set when the client negotiated
/// permessage-deflate and the event has one, else the plain text.
fn text_frame<'a>(frame: &'a Frame, compression: bool, shared: &Shared) -> (u8, &'a [u8]) {
    let deflated = frame
        .deflated
        .as_deref()
        .filter(|_| compression)
        .and_then(|d| d.get(frame.text.as_bytes(), &shared.metrics));
    match deflated {
        Some(payload) => (wire::OP_TEXT | wire::RSV1, payload),
        None => (wire::OP_TEXT, frame.text.as_bytes()),
    }
}

enum WriteFailure {
    /// The socket accepted nothing for the write timeout.
    TimedOut,
    /// The socket is broken or closed.
    Socket,
}

/// Writes every frame `frames` yields from `progress` on (it is called
/// again after each partial write, and must yield the same frames); each
/// write must make progress within `limit`. `progress` tells how far it got
/// if it fails or is dropped.
async fn write_all<'a, F, I>(
    io: &OwnedWriteHalf,
    frames: F,
    progress: &mut Progress,
    limit: Duration,
) -> Result<(), WriteFailure>
where
    F: Fn() -> I,
    I: Iterator<Item = (u8, &'a [u8])>,
{
    loop {
        match wire::try_write(io, frames(), progress) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match timeout(limit, io.writable()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(WriteFailure::Socket),
                    Err(_) => return Err(WriteFailure::TimedOut),
                }
            }
            Err(_) => return Err(WriteFailure::Socket),
        }
    }
}
