//! One client connection from the accepted upgrade to its end: greets the
//! client, spawns the writer task, reads client frames and hands their text to
//! the session, and cleans up (subscriptions, counters) however it ends.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;
use odin_protocol::close::{self, CloseCode};
use odin_protocol::message::ConnectionEstablished;
use odin_protocol::{ProtocolVersion, ServerMessage};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::expiry::{CENTURY, Deadline};
use crate::fairness::CountedConnection;
use crate::inflating::Inflating;
use crate::outbox::{CloseRequest, Outbox};
use crate::session::{Session, Subject};
use crate::shared::{AdmissionGuard, Shared};
use crate::socket::ClientSocket;
use crate::stream::WriteHalf;
use crate::wire;
use crate::writer::{self, Liveness, WriterContext};

/// What the handshake learned about the client.
pub(crate) struct Admitted {
    /// The protocol version the client asked for.
    pub(crate) version: ProtocolVersion,
    /// The token's `sub`.
    pub(crate) subject: String,
    /// The token's expiry.
    pub(crate) expires_at: SystemTime,
    /// The connection slot, released when the connection ends.
    pub(crate) slot: AdmissionGuard,
    /// The connection's place in its source address's budget.
    pub(crate) address: CountedConnection,
    /// Whether permessage-deflate was negotiated: shared events go out
    /// compressed.
    pub(crate) compression: bool,
}

/// Serves one upgraded connection until it closes.
pub(crate) async fn serve(
    mut stream: WebSocketStream<Inflating<ClientSocket>>,
    socket_writer: WriteHalf,
    admitted: Admitted,
    shared: Arc<Shared>,
) {
    let conn = shared.next_conn_id();
    let client_id = format!("{}-{conn}", shared.server_id);
    shared.metrics.connections.inc();
    tracing::debug!(%client_id, sub = %admitted.subject, "connected");

    let outbox = Arc::new(Outbox::new(
        shared.config.max_queue_bytes,
        shared.config.conflate_above_bytes,
    ));
    outbox.push(shared.frame(|timestamp, nonce| {
        ServerMessage::ConnectionEstablished(ConnectionEstablished {
            client_id: client_id.clone(),
            server_id: shared.server_id.clone(),
            protocol_version: admitted.version.number(),
            heartbeat_interval_ms: shared.config.heartbeat_interval.as_millis() as u64,
            timestamp,
            nonce,
        })
    }));

    let liveness = Arc::new(Liveness::default());
    let reader_done = CancellationToken::new();
    let writer_done = CancellationToken::new();
    let (deadline, deadline_watch) = Deadline::new(admitted.expires_at);
    let writer = tokio::spawn({
        let ctx = WriterContext {
            shared: shared.clone(),
            outbox: outbox.clone(),
            liveness: liveness.clone(),
            expires_at: deadline_watch,
            version: admitted.version,
            lifetime_ends: shared
                .config
                .lifecycle
                .draw_lifetime(&mut rand::rng())
                .map(|lifetime| Instant::now() + lifetime.min(CENTURY)),
            reader_done: reader_done.clone(),
            compression: admitted.compression,
        };
        let writer_done = writer_done.clone();
        async move {
            let _done = writer_done.drop_guard();
            writer::run(socket_writer, ctx).await;
        }
    });

    let mut session = Session::new(
        conn,
        outbox.clone(),
        shared.clone(),
        Subject {
            sub: admitted.subject.clone(),
            deadline,
        },
    );
    let close = |code: CloseCode| {
        outbox.close(CloseRequest {
            code,
            drain: false,
            reply: false,
        });
    };
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = writer_done.cancelled() => break,
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                if !outbox.is_closing() {
                    session.on_text(&text);
                }
            }
            Some(Ok(Message::Binary(_))) => close(close::UNSUPPORTED_DATA),
            // Control frames use the message budget: a flood of them is
            // abuse like any other (a pong still proves the peer alive).
            Some(Ok(Message::Pong(_))) => {
                liveness.pong_received();
                if !outbox.is_closing() {
                    session.on_control_frame();
                }
            }
            Some(Ok(Message::Ping(payload))) => {
                if !outbox.is_closing() && session.on_control_frame() {
                    outbox.pong(payload);
                }
            }
            // The peer closes: answer with its code (tungstenite has put a
            // disallowed one to `1002` already) unless our close is already
            // under way, and let the writer finish before the reader's end
            // stops it.
            Some(Ok(Message::Close(frame))) => {
                outbox.close(CloseRequest {
                    code: CloseCode {
                        code: frame.map_or(wire::NO_STATUS, |f| u16::from(f.code)),
                        reason: "",
                    },
                    drain: false,
                    reply: true,
                });
                liveness.close_received();
                writer_done.cancelled().await;
                break;
            }
            Some(Ok(Message::Frame(_))) => {}
            Some(Err(e)) => {
                if let Some(code) = refusal_code(&e) {
                    if shared.may_log_refusal() {
                        tracing::info!(%client_id, close = code.code, error = %e, "client broke the WebSocket rules");
                    }
                    // Stop reading (for an oversized frame, reading on would
                    // make tungstenite buffer it) and let the writer close
                    // within its grace period.
                    close(code);
                    writer_done.cancelled().await;
                } else {
                    tracing::debug!(%client_id, error = %e, "read failed");
                }
                break;
            }
            None => break,
        }
    }
    reader_done.cancel();
    session.finish();
    if writer.await.is_err() {
        tracing::warn!(%client_id, "writer task panicked");
    }
    // Free the slot before the gauge drops, so whoever sees the count fall
    // can connect.
    drop(admitted.slot);
    drop(admitted.address);
    shared.metrics.connections.dec();
    tracing::debug!(%client_id, "disconnected");
}

/// The close code for a read error that is the client's fault at the
/// WebSocket layer: a message over the size limit (`1009`), a text frame
/// that is not UTF-8 (`1007`, RFC 6455 §8.1: it never reaches the JSON
/// parser), or a frame that breaks the framing rules (`1002`, RFC 6455
/// §7.4.1). Other errors mean the peer is gone.
fn refusal_code(error: &WsError) -> Option<CloseCode> {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(close::MESSAGE_TOO_BIG),
        WsError::Utf8(_) => Some(close::INVALID_PAYLOAD),
        WsError::Protocol(
            ProtocolError::NonZeroReservedBits
            | ProtocolError::UnmaskedFrameFromClient
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::ControlFrameTooBig
            | ProtocolError::UnknownControlFrameType(_)
            | ProtocolError::UnknownDataFrameType(_)
            | ProtocolError::UnexpectedContinueFrame
            | ProtocolError::ExpectedFragment(_)
            | ProtocolError::InvalidOpcode(_)
            | ProtocolError::InvalidCloseSequence,
        ) => Some(close::PROTOCOL_ERROR),
        _ => None,
    }
}
