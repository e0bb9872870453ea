//! The connection (TCP, or TLS over it: [`crate::stream`]) as tungstenite
//! sees it. tungstenite performs the
//! upgrade and then parses the client's frames, but it does not write once
//! the connection is up: the writer task owns the write half and sends every
//! frame itself (see [`crate::wire`]), answering pings and closes too. So
//! writes pass through to the socket until [`ClientSocket::take_writer`],
//! and are discarded after it (tungstenite's own pong and close replies,
//! which the connection sends through its outbox instead).
//!
//! Before tungstenite sees anything, [`read_request_head`] reads the upgrade
//! request's header block, at most [`MAX_REQUEST_HEAD`] bytes: a longer one
//! (an over-long token, a header flood) gets `431` here, where tungstenite
//! would drop the connection without an answer. What was read is handed to
//! tungstenite first, as if read from the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::stream::{ClientStream, ReadHalf, WriteHalf};

/// The longest upgrade request header block accepted (request line and
/// headers, up to the blank line), in bytes.
pub(crate) const MAX_REQUEST_HEAD: usize = 16 << 10;

/// How much more of a refused request is read (and dropped) before the
/// socket is closed.
const LINGER_BYTES: usize = 1 << 20;

/// The answer to a longer one.
const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\nContent-Length: 90\r\nConnection: close\r\n\r\n{\"error\":\"the request's header block is over 16384 bytes\",\"code\":\"request_head_too_large\"}";

/// What reading an upgrade request's header block found.
pub(crate) enum RequestHead {
    /// The whole block arrived: the socket, replaying it to tungstenite.
    Complete(ClientSocket),
    /// It was longer than [`MAX_REQUEST_HEAD`]; `431` has been sent.
    TooLarge,
    /// The client closed or the socket failed before the block ended.
    Gone,
}

/// Reads `stream` up to the blank line that ends the request's header block
/// (or [`MAX_REQUEST_HEAD`] bytes), answering `431` to a longer one.
pub(crate) async fn read_request_head(mut stream: ClientStream) -> RequestHead {
    match read_head(&mut stream).await {
        Some(head) if head_end(&head).is_some() => {
            RequestHead::Complete(ClientSocket::with_prefix(stream, head))
        }
        Some(_) => {
            linger_close(stream, HEAD_TOO_LARGE).await;
            RequestHead::TooLarge
        }
        None => RequestHead::Gone,
    }
}

/// Reads until the header block has ended or is over [`MAX_REQUEST_HEAD`]
/// bytes: what was read (which may go past the block), or `None` when the
/// client closed or the socket failed first.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::with_capacity(1024);
    while head_end(&head).is_none() && head.len() <= MAX_REQUEST_HEAD {
        // Straight into `head`: no copy, and no buffer beyond it.
        if head.len() == head.capacity() {
            head.reserve(1024);
        }
        match stream.read_buf(&mut head).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(head)
}

/// Where the header block in `bytes` ends (past its blank line), if it does
/// within [`MAX_REQUEST_HEAD`] bytes.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let within = &bytes[..bytes.len().min(MAX_REQUEST_HEAD)];
    within
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Reads the client's request head (at most [`MAX_REQUEST_HEAD`] bytes),
/// then writes `answer` and closes: a connection turned away before its
/// request was read. The caller bounds the time this takes.
pub(crate) async fn answer_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    answer: &[u8],
) {
    if read_head(&mut stream).await.is_some() {
        linger_close(stream, answer).await;
    }
}

/// Writes `answer`, shuts the write side, and reads (and drops) what more the
/// client sends, up to [`LINGER_BYTES`]: closing with unread data would
/// reset the connection, and the client could lose the answer. The caller
/// bounds the time this takes.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, answer: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
    let mut chunk = [0u8; 2048];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// A client's TCP connection, read by tungstenite, written by it only until
/// the upgrade is done.
#[derive(Debug)]
pub(crate) struct ClientSocket {
    /// Bytes already read from the socket, served to tungstenite first.
    prefix: Vec<u8>,
    /// How much of `prefix` has been served.
    served: usize,
    read: ReadHalf,
    write: Option<WriteHalf>,
}

impl ClientSocket {
    /// Wraps an accepted connection of which `prefix` was read already.
    fn with_prefix(stream: ClientStream, prefix: Vec<u8>) -> Self {
        let (read, write) = stream.split();
        Self {
            prefix,
            served: 0,
            read,
            write: Some(write),
        }
    }

    /// Hands the write half to the writer task; from now on tungstenite's
    /// writes go nowhere.
    pub(crate) fn take_writer(&mut self) -> Option<WriteHalf> {
        self.write.take()
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.served < this.prefix.len() {
            let left = &this.prefix[this.served..];
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            this.served += n;
            if this.served == this.prefix.len() {
                // Served in full: its memory goes back at once.
                this.prefix = Vec::new();
                this.served = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.write.as_mut() {
            Some(write) => Pin::new(write).poll_write(cx, buf),
            None => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.write.as_mut() {
            Some(write) => Pin::new(write).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.write.as_mut() {
            Some(write) => Pin::new(write).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{HEAD_TOO_LARGE, MAX_REQUEST_HEAD, head_end};

    #[test]
    fn a_head_ends_at_its_blank_line_within_the_limit() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        let mut long = vec![b'a'; MAX_REQUEST_HEAD];
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            head_end(&long),
            None,
            "the blank line lies beyond the limit"
        );
    }

    #[test]
    fn the_431_answer_is_well_formed() {
        let text = std::str::from_utf8(HEAD_TOO_LARGE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
