//! The WebSocket port's socket, plain or TLS, and its two halves: the read
//! half tungstenite reads frames from, the write half the writer task owns.
//! An enum rather than a boxed trait object: the plain path stays a direct
//! call on tokio's own halves (the writer's vectored `try_write`), and only
//! TLS goes through `AsyncWrite`.

use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_rustls::server::TlsStream;

/// An accepted socket, after its TLS handshake if the port speaks TLS.
pub(crate) enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// A TLS session over TCP, boxed: it is several hundred bytes.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read half of a [`ClientStream`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS: both halves share the session behind tokio's split.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a [`ClientStream`].
#[derive(Debug)]
pub(crate) enum WriteHalf {
    /// Plain TCP: written with non-blocking vectored writes.
    Plain(OwnedWriteHalf),
    /// TLS: written through the session, then flushed.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// Splits the socket for a reader and a writer.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            ClientStream::Plain(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            ClientStream::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

/// Implements `AsyncRead` and/or `AsyncWrite` for an enum whose variants
/// `Plain` and `Tls` each implement them, by forwarding every call to the
/// variant's own: `forward_io!(Type: read, write)`. The WebSocket port's
/// socket and halves here, and the HTTP port's connection
/// ([`crate::http_guard`]), are such enums.
macro_rules! forward_io {
    ($ty:ty: $($way:ident),+) => {
        $($crate::stream::forward_io!(@$way $ty);)+
    };
    (@call $self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Self::Plain($s) => {
                let $s = ::std::pin::Pin::new($s);
                $call
            }
            Self::Tls($s) => {
                let $s = ::std::pin::Pin::new($s);
                $call
            }
        }
    };
    (@read $ty:ty) => {
        impl ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                $crate::stream::forward_io!(@call self, s => s.poll_read(cx, buf))
            }
        }
    };
    (@write $ty:ty) => {
        impl ::tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                $crate::stream::forward_io!(@call self, s => s.poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                $crate::stream::forward_io!(@call self, s => s.poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Plain(s) => s.is_write_vectored(),
                    Self::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                $crate::stream::forward_io!(@call self, s => s.poll_flush(cx))
            }

            fn poll_shutdown(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                $crate::stream::forward_io!(@call self, s => s.poll_shutdown(cx))
            }
        }
    };
}
pub(crate) use forward_io;

forward_io!(ClientStream: read, write);
forward_io!(ReadHalf: read);
forward_io!(WriteHalf: write);
