//! A connection's single writer task: it owns the write half of the
//! socket, drains the outbox into it (everything queued goes out in one
//! vectored write, straight from the shared payloads), answers pings, sends
//! heartbeats and pings, enforces the token's expiry, the connection's
//! lifetime, the pong deadline and the write timeout, and performs the
//! closing handshake (after a version 2 client's `reconnect` advisory when
//! the server closes it by shutdown or lifetime).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use odin_protocol::close::{self, CloseCode};
use odin_protocol::message::{Heartbeat, ReconnectReason};
use odin_protocol::time::now_millis;
use odin_protocol::{ProtocolVersion, ServerMessage};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::expiry::DeadlineWatch;
use crate::outbox::{Frame, Outbox};
use crate::shared::Shared;
use crate::stream::WriteHalf;
use crate::wire::{self, Progress};

mod tls;

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
    /// When the client's token expires; a `refresh` moves it.
    pub(crate) expires_at: DeadlineWatch,
    /// The protocol version the connection speaks.
    pub(crate) version: ProtocolVersion,
    /// When the connection's lifetime ends, if it has one.
    pub(crate) lifetime_ends: Option<Instant>,
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
        /// The `reconnect` advisory (JSON) that goes out just before the
        /// close frame: a version 2 client closed by shutdown or lifetime.
        advisory: Option<String>,
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
            advisory: None,
        }
    }

    /// The server ends the connection for `reason`: a version 2 client
    /// gets the `reconnect` advisory with its own delay first (queued
    /// frames are dropped, as for every close the server starts).
    fn leave(ctx: &WriterContext, reason: ReconnectReason) -> Self {
        let code = match reason {
            ReconnectReason::Shutdown => close::GOING_AWAY,
            ReconnectReason::Lifetime => close::LIFETIME_REACHED,
        };
        let advisory = ctx.shared.config.lifecycle.advisory(
            ctx.version,
            reason,
            &mut rand::rng(),
            now_millis(),
            ctx.shared.nonce(),
        );
        Stop::Close {
            code,
            reply: false,
            unfinished: None,
            advisory: advisory.map(|m| m.to_json()),
        }
    }
}

/// What woke the write loop.
enum Woke {
    /// The outbox has frames, a pong or a close request.
    Outbox,
    /// A heartbeat (and ping) is due.
    Heartbeat,
    /// The deadline passed, or a `refresh` moved it: look again.
    Deadline,
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
pub(crate) async fn run(mut io: WriteHalf, ctx: WriterContext) {
    let stop = write_loop(&mut io, &ctx).await;
    if let Stop::Close {
        code,
        reply,
        unfinished,
        advisory,
    } = stop
    {
        if code == close::SLOW_CONSUMER {
            ctx.shared.metrics.slow_consumer_disconnects.inc();
        }
        let deadline = Instant::now() + CLOSE_GRACE;
        let payload = wire::close_payload(code.code, code.reason);
        // The rest of a half-sent frame, if any, the advisory, if any, then
        // the close frame.
        let rest = unfinished.as_ref().map(|u| (u.opcode, &u.payload[..]));
        let advice = advisory.as_ref().map(|a| (wire::OP_TEXT, a.as_bytes()));
        let frames = || {
            rest.into_iter()
                .chain(advice)
                .chain(std::iter::once((wire::OP_CLOSE, payload.as_slice())))
        };
        let mut progress = Progress {
            frames: 0,
            offset: unfinished.as_ref().map_or(0, |u| u.offset),
        };
        let send_close = write_all(&mut io, frames, &mut progress, CLOSE_GRACE);
        // Send our close, then (unless it answers the peer's) wait for the
        // peer's (or the reader's end); give up on both at the deadline and let
        // the socket drop.
        let sent = matches!(timeout_at(deadline, send_close).await, Ok(Ok(())));
        if sent && advisory.is_some() {
            ctx.shared.metrics.messages_delivered.inc();
        }
        if sent && !reply {
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

async fn write_loop(io: &mut WriteHalf, ctx: &WriterContext) -> Stop {
    let shared = &ctx.shared;
    let period = shared.config.heartbeat_interval;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut deadline = ctx.expires_at.clone();
    let expiry = tokio::time::sleep_until(*deadline.borrow_and_update());
    // Without a lifetime its arm is switched off; the sleep is a stand-in.
    let has_lifetime = ctx.lifetime_ends.is_some();
    let lifetime = tokio::time::sleep_until(ctx.lifetime_ends.unwrap_or_else(Instant::now));
    // Made once and polled by reference: a fresh `cancelled()` per wake-up
    // would register with the token again each time. Every poll of a
    // cancellation future still locks its token's node, so the writer waits
    // on a child of the server-wide shutdown token: its own lock, not one
    // every connection contends for on every wake-up.
    let reader_done = ctx.reader_done.cancelled();
    let shutdown_token = shared.shutdown.child_token();
    let shutdown = shutdown_token.cancelled();
    let aborted = ctx.outbox.aborted();
    tokio::pin!(expiry, lifetime, reader_done, shutdown, aborted);
    let mut batch: VecDeque<Frame> = VecDeque::new();
    let mut rounds: u32 = 0;
    loop {
        // Under load nearly every wake-up is the outbox's: its arm comes
        // first, so a wake-up polls one future instead of all of them (the others
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
                _ = &mut shutdown => Woke::Stop(Stop::leave(ctx, ReconnectReason::Shutdown)),
                _ = &mut expiry => Woke::Deadline,
                _ = &mut lifetime, if has_lifetime => Woke::Stop(Stop::leave(ctx, ReconnectReason::Lifetime)),
                _ = heartbeat.tick() => Woke::Heartbeat,
                Ok(()) = deadline.changed() => Woke::Deadline,
            }
        } else {
            tokio::select! {
                biased;
                _ = &mut reader_done => Woke::Stop(Stop::Gone),
                _ = &mut shutdown => Woke::Stop(Stop::leave(ctx, ReconnectReason::Shutdown)),
                _ = &mut expiry => Woke::Deadline,
                _ = &mut lifetime, if has_lifetime => Woke::Stop(Stop::leave(ctx, ReconnectReason::Lifetime)),
                _ = heartbeat.tick() => Woke::Heartbeat,
                Ok(()) = deadline.changed() => Woke::Deadline,
                _ = ctx.outbox.ready() => Woke::Outbox,
            }
        };
        let ping = match woke {
            Woke::Stop(stop) => return stop,
            Woke::Outbox => false,
            // The timer re-reads the deadline rather than trusting the value
            // it was set to: a refresh moments before the old expiry has
            // moved it even if its change is not yet seen.
            Woke::Deadline => {
                let at = *deadline.borrow_and_update();
                if at <= Instant::now() {
                    return Stop::close(close::TOKEN_EXPIRED);
                }
                expiry.as_mut().reset(at);
                continue;
            }
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
            written = write_all(&mut *io, frames, &mut progress, shared.config.write_timeout) => written,
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
                    advisory: None,
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
                    advisory: None,
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
                advisory: None,
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
    io: &mut WriteHalf,
    frames: F,
    progress: &mut Progress,
    limit: Duration,
) -> Result<(), WriteFailure>
where
    F: Fn() -> I,
    I: Iterator<Item = (u8, &'a [u8])>,
{
    let io = match io {
        WriteHalf::Plain(io) => io,
        WriteHalf::Tls(io) => {
            return tls::write_all(io, frames, progress, limit)
                .await
                .map_err(|e| match e.kind() {
                    io::ErrorKind::TimedOut => WriteFailure::TimedOut,
                    _ => WriteFailure::Socket,
                });
        }
    };
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
