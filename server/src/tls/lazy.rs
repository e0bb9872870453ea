//! A TLS stream whose handshake runs on first use, in the task that uses
//! it: `axum::serve` accepts connections one at a time, and a handshake in
//! `accept` would let one slow client hold up every other. The socket below
//! keeps its deadlines ([`crate::http_guard`]), which bound the handshake
//! too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{Accept, TlsAcceptor};

/// A server-side TLS stream over `Io`, handshaking until first ready.
pub(crate) enum LazyTls<Io> {
    /// The handshake under way (boxed like the session).
    Accepting(Box<Accept<Io>>),
    /// The session, boxed: rustls's state is over a kilobyte.
    Ready(Box<TlsStream<Io>>),
    /// The handshake failed; every use fails.
    Failed,
}

impl<Io: AsyncRead + AsyncWrite + Unpin> LazyTls<Io> {
    /// Starts the handshake on `io` (it advances when the stream is used).
    pub(crate) fn new(acceptor: &TlsAcceptor, io: Io) -> Self {
        LazyTls::Accepting(Box::new(acceptor.accept(io)))
    }

    /// The session once the handshake is done.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TlsStream<Io>>> {
        if let LazyTls::Accepting(accept) = self {
            match ready!(Pin::new(&mut **accept).poll(cx)) {
                Ok(stream) => *self = LazyTls::Ready(Box::new(stream)),
                Err(e) => {
                    *self = LazyTls::Failed;
                    tracing::debug!(error = %e, "TLS handshake failed on the HTTP port");
                    return Poll::Ready(Err(e));
                }
            }
        }
        match self {
            LazyTls::Ready(stream) => Poll::Ready(Ok(stream)),
            _ => Poll::Ready(Err(io::Error::other("TLS handshake failed"))),
        }
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncRead for LazyTls<Io> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_ready(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl<Io: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LazyTls<Io> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_ready(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_ready(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_ready(cx))?;
        Pin::new(stream).poll_shutdown(cx)
    }
}
