//! One client connection from the accepted socket to its end: the upgrade,
//! `connection_established`, the writer task, the read loop (client frames
//! to the session, pings to pongs, a close answered), and the clean-up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use odin_protocol::message::ConnectionEstablished;
use odin_protocol::{ProtocolVersion, ServerMessage};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

use super::frame::{self, ClientFrame, Decoder};
use super::handshake;
use super::queue::Queue;
use super::session::Session;
use super::shared::Shared;
use super::writer::{self, CLOSE_GRACE};

/// How long the upgrade may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest client message (`PROTOCOL.md` §5).
const MAX_MESSAGE_BYTES: usize = 4096;

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 1024;

/// How the read loop ended.
enum End {
    /// A close frame is queued: let the writer send it.
    Closing,
    /// The peer or the writer is gone.
    Gone,
}

/// Serves one accepted socket until the connection ends.
pub(crate) async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::accept(&mut stream, &mut buf)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
        Err(_) => {
            tracing::debug!("upgrade timed out");
            return;
        }
    }
    let conn = shared.next_conn();
    let queue = Arc::new(Queue::new(shared.max_queue_bytes));
    queue.push(shared.message(|timestamp, nonce| {
        ServerMessage::ConnectionEstablished(ConnectionEstablished {
            client_id: format!("{}-{conn}", shared.server_id),
            server_id: shared.server_id.clone(),
            // The bare forwarder speaks version 1 only: it never sends `reconnect`.
            protocol_version: ProtocolVersion::V1.number(),
            heartbeat_interval_ms: shared.heartbeat.as_millis() as u64,
            timestamp,
            nonce,
        })
    }));
    let (mut read, write) = stream.into_split();
    let mut writer = tokio::spawn(writer::run(write, queue.clone(), shared.clone()));
    let mut session = Session::new(queue.clone(), shared.clone());
    let end = read_loop(&mut read, &mut buf, &mut session, &queue).await;
    session.finish();
    if matches!(end, End::Gone) {
        queue.gone().cancel();
    }
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        // The client does not take its close frame: drop the socket.
        queue.gone().cancel();
        let _ = writer.await;
    }
    if queue.overflowed() {
        shared.overflows.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(conn, "queue overflowed: connection dropped");
    }
}

/// Reads and handles client frames until the connection is over.
async fn read_loop(
    read: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    session: &mut Session,
    queue: &Queue,
) -> End {
    let mut decoder = Decoder::new(MAX_MESSAGE_BYTES);
    let gone_token = queue.gone().clone();
    let gone = gone_token.cancelled();
    tokio::pin!(gone);
    loop {
        loop {
            match decoder.decode(buf) {
                Ok(Some(ClientFrame::Text(text))) => {
                    if !queue.is_closing() {
                        session.on_text(&text);
                    }
                }
                Ok(Some(ClientFrame::Ping(payload))) => {
                    queue.push(frame::pong(&payload));
                }
                Ok(Some(ClientFrame::Pong)) => {}
                Ok(Some(ClientFrame::Close(code))) => {
                    // Our answer, unless we closed first (then this was
                    // the client's answer, and the writer is done).
                    queue.close_with(frame::close_reply(code));
                    return End::Closing;
                }
                Ok(None) => break,
                Err(code) => {
                    tracing::debug!(code = code.code, "closing on bad input");
                    queue.close_with(frame::close(code));
                    return End::Closing;
                }
            }
        }
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = &mut gone => return End::Gone,
            read = read.read_buf(buf) => read,
        };
        match read {
            Ok(0) | Err(_) => return End::Gone,
            Ok(_) => {}
        }
    }
}
