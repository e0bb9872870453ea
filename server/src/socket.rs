//! The TCP connection as tungstenite sees it. tungstenite performs the
//! upgrade and then parses the client's frames, but it does not write once
//! the connection is up: the writer task owns the write half and sends every
//! frame itself (see [`crate::wire`]), answering pings and closes too. So
//! writes pass through to the socket until [`ClientSocket::take_writer`],
//! and are discarded after it (tungstenite's own pong and close replies,
//! which the connection sends through its outbox instead).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A client's TCP connection, read by tungstenite, written by it only until
/// the upgrade is done.
#[derive(Debug)]
pub(crate) struct ClientSocket {
    read: OwnedReadHalf,
    write: Option<OwnedWriteHalf>,
}

impl ClientSocket {
    /// Wraps an accepted connection.
    pub(crate) fn new(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            read,
            write: Some(write),
        }
    }

    /// Hands the write half to the writer task; from now on tungstenite's
    /// writes go nowhere.
    pub(crate) fn take_writer(&mut self) -> Option<OwnedWriteHalf> {
        self.write.take()
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
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
