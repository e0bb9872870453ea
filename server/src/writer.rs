//! A connection's single writer task: it owns the sending half of the
//! socket, drains the outbox into it (everything queued goes out with one
//! flush), sends heartbeats and pings, enforces the token's expiry, the pong
//! deadline and the write timeout, and performs the closing handshake.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use odin_protocol::ServerMessage;
use odin_protocol::close::{self, CloseCode};
use odin_protocol::message::Heartbeat;
use tokio::time::{Instant, MissedTickBehavior, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::outbox::{Frame, Outbox};
use crate::shared::Shared;

/// How long the closing handshake may take before the TCP connection is
/// dropped (`PROTOCOL.md` §4.5).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Whether the client owes us a pong; set by the writer when it pings,
/// cleared by the reader when a pong arrives.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    awaiting_pong: AtomicBool,
}

impl Liveness {
    pub(crate) fn pong_received(&self) {
        self.awaiting_pong.store(false, Ordering::Release);
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
}

/// Why the write loop stopped.
enum Stop {
    /// Close the connection with this code.
    Close(CloseCode),
    /// The peer is gone or the socket failed: nothing more to send.
    Gone,
}

/// Runs until the connection ends.
pub(crate) async fn run<S>(mut sink: S, ctx: WriterContext)
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let stop = write_loop(&mut sink, &ctx).await;
    if let Stop::Close(code) = stop {
        if code == close::SLOW_CONSUMER {
            ctx.shared.metrics.slow_consumer_disconnects.inc();
        }
        let deadline = Instant::now() + CLOSE_GRACE;
        let frame = CloseFrame {
            code: WsCloseCode::from(code.code),
            reason: code.reason.into(),
        };
        // Send our close, then wait for the reader to see the peer's; give up
        // on both at the deadline and let the socket drop.
        if let Ok(Ok(())) = timeout_at(deadline, sink.send(Message::Close(Some(frame)))).await {
            let _ = timeout_at(deadline, ctx.reader_done.cancelled()).await;
        }
    }
}

async fn write_loop<S>(sink: &mut S, ctx: &WriterContext) -> Stop
where
    S: Sink<Message, Error = WsError> + Unpin,
{
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
    loop {
        let mut ping = false;
        tokio::select! {
            biased;
            _ = &mut reader_done => return Stop::Gone,
            _ = &mut shutdown => return Stop::Close(close::GOING_AWAY),
            _ = &mut expiry => return Stop::Close(close::TOKEN_EXPIRED),
            _ = heartbeat.tick() => {
                if ctx.liveness.awaiting_pong.swap(true, Ordering::AcqRel) {
                    return Stop::Close(close::NO_PONG);
                }
                ctx.outbox.push(shared.frame(|timestamp, nonce| ServerMessage::Heartbeat(Heartbeat {
                    server_id: shared.server_id.clone(),
                    timestamp,
                    nonce,
                })));
                ping = true;
            }
            _ = ctx.outbox.ready() => {}
        }
        let close = ctx.outbox.take(&mut batch);
        let count = batch.len() as u64;
        let written = tokio::select! {
            biased;
            // An overflow while a write is stuck on a full socket: stop now,
            // not at the write timeout (the close below may then find the
            // socket still full and drop it after the grace, as §8 allows).
            _ = &mut aborted => {
                let request = ctx.outbox.take(&mut batch);
                return Stop::Close(request.map_or(close::SLOW_CONSUMER, |r| r.code));
            }
            written = write_batch(sink, &mut batch, ping, shared.config.write_timeout) => written,
        };
        match written {
            Ok(()) => {
                shared.metrics.messages_delivered.inc_by(count);
            }
            Err(WriteFailure::TimedOut) => return Stop::Close(close::SLOW_CONSUMER),
            Err(WriteFailure::Socket) => return Stop::Gone,
        }
        if let Some(request) = close {
            return Stop::Close(request.code);
        }
    }
}

enum WriteFailure {
    /// The socket accepted nothing for the write timeout.
    TimedOut,
    /// The socket is broken or closed.
    Socket,
}

/// Feeds every frame (and a ping) into the sink and flushes once; each step
/// must make progress within `limit`.
async fn write_batch<S>(
    sink: &mut S,
    batch: &mut VecDeque<Frame>,
    ping: bool,
    limit: Duration,
) -> Result<(), WriteFailure>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let step = |r: Result<Result<(), WsError>, tokio::time::error::Elapsed>| match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteFailure::Socket),
        Err(_) => Err(WriteFailure::TimedOut),
    };
    for frame in batch.drain(..) {
        step(timeout(limit, sink.feed(Message::Text(frame.text))).await)?;
    }
    if ping {
        step(timeout(limit, sink.feed(Message::Ping(Default::default()))).await)?;
    }
    step(timeout(limit, sink.flush()).await)
}
