//! The HTTP listener's budgets and deadlines: a cap on open HTTP
//! connections (apart from the WebSocket budget), a cap per source address,
//! and deadlines on every socket, so half-sent or idle requests can neither
//! hold the process's file descriptors nor crowd out `/health`.
//!
//! [`GuardedListener`] is what `axum::serve` accepts from: a connection over
//! either cap gets a `503` with `Retry-After` and is closed at once, before
//! hyper sees it. [`GuardedIo`] fails the socket (hyper then drops it) when
//! the client has sent nothing for the idle timeout, whether mid-request or
//! between keep-alive requests, or when the connection is older than its
//! lifetime, which also ends a slow drip of bytes. With TLS, [`HttpIo`]
//! runs the handshake over the guarded socket, so the deadlines bound it
//! too.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::fairness::{ConnectionCounts, CountedConnection, Source};
use crate::metrics::Metrics;
use crate::tls::lazy::LazyTls;
use tokio_rustls::TlsAcceptor;

/// The HTTP listener's budgets (`--http-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open HTTP connections at most.
    pub max_connections: usize,
    /// Open HTTP connections from one source address at most.
    pub max_per_address: usize,
    /// A connection whose client sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A connection is closed this long after it was accepted.
    pub max_lifetime: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_per_address: 256,
            idle_timeout: Duration::from_secs(10),
            max_lifetime: Duration::from_secs(60),
        }
    }
}

/// What a connection over a cap is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: 69\r\nConnection: close\r\n\r\n{\"error\":\"too many HTTP connections; retry later\",\"code\":\"http_busy\"}";

/// Why a connection past its lifetime fails.
const LIFETIME_REACHED: &str = "HTTP connection reached its lifetime";

/// The HTTP listener with its caps; hands `axum::serve` guarded sockets.
pub(crate) struct GuardedListener {
    listener: TcpListener,
    limits: HttpLimits,
    open: ConnectionCounts,
    metrics: Arc<Metrics>,
    /// Set when the port speaks TLS.
    tls: Option<TlsAcceptor>,
}

impl GuardedListener {
    pub(crate) fn new(
        listener: TcpListener,
        limits: HttpLimits,
        metrics: Arc<Metrics>,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        Self {
            listener,
            limits,
            open: ConnectionCounts::default(),
            metrics,
            tls,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = HttpIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (HttpIo, SocketAddr) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead
                    // of spinning; the listener stays usable.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = self.open.try_take(
                Source::from(peer.ip()),
                self.limits.max_connections,
                self.limits.max_per_address,
            );
            match slot {
                Some(slot) => {
                    let io = GuardedIo::new(stream, slot, &self.limits);
                    let io = match &self.tls {
                        None => HttpIo::Plain(io),
                        Some(tls) => HttpIo::Tls(LazyTls::new(tls, io)),
                    };
                    return (io, peer);
                }
                None if self.tls.is_some() => {
                    // A plain answer means nothing to a TLS client; no
                    // handshake is spent on a connection over the cap.
                    self.metrics.http_refused.inc();
                }
                None => {
                    self.metrics.http_refused.inc();
                    // Best effort and never waiting: the socket is new, so
                    // its send buffer is empty. What the client already
                    // sent is read first: closing a socket with unread data
                    // resets it, and the client might lose the answer.
                    let _ = stream.try_read(&mut [0u8; 2048]);
                    let _ = stream.try_write(BUSY);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted HTTP connection: the guarded socket, or TLS over it.
pub(crate) enum HttpIo {
    /// Plain HTTP.
    Plain(GuardedIo),
    /// HTTPS; the handshake runs on first use.
    Tls(LazyTls<GuardedIo>),
}

crate::stream::forward_io!(HttpIo: read, write);

/// An accepted HTTP socket with its slot and its two deadlines.
pub(crate) struct GuardedIo {
    stream: TcpStream,
    _slot: CountedConnection,
    idle_timeout: Duration,
    /// When the client's silence ends the connection; pushed back by every
    /// byte read.
    idle: Pin<Box<Sleep>>,
    /// When the connection ends whatever it does.
    lifetime: Pin<Box<Sleep>>,
}

impl GuardedIo {
    fn new(stream: TcpStream, slot: CountedConnection, limits: &HttpLimits) -> Self {
        let now = Instant::now();
        Self {
            stream,
            _slot: slot,
            idle_timeout: limits.idle_timeout,
            idle: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            lifetime: Box::pin(tokio::time::sleep_until(now + limits.max_lifetime)),
        }
    }
}

/// An error saying `what` once `deadline` has passed; until then `Ok`, and
/// the task is woken when it passes.
fn past(
    deadline: &mut Pin<Box<Sleep>>,
    cx: &mut Context<'_>,
    what: &'static str,
) -> io::Result<()> {
    match deadline.as_mut().poll(cx) {
        Poll::Ready(()) => Err(io::Error::new(io::ErrorKind::TimedOut, what)),
        Poll::Pending => Ok(()),
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        past(&mut this.lifetime, cx, LIFETIME_REACHED)?;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                past(
                    &mut this.idle,
                    cx,
                    "HTTP client sent nothing for the idle timeout",
                )?;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Pending => {
                // A client that does not read its answers is dropped at
                // the end of the connection's lifetime.
                past(&mut this.lifetime, cx, LIFETIME_REACHED)?;
                Poll::Pending
            }
            ready => ready,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }
}
