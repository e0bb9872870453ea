//! The writer's path for a TLS socket: the same frames, written through
//! the session with vectored writes (rustls encrypts them into records as
//! they come), then flushed, each step bounded by the write timeout.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;

use crate::wire::{self, Progress};

/// Writes every frame `frames` yields from `progress` on, as the plain
/// path does, and flushes the session; each step must make progress within
/// `limit`, else `TimedOut`.
pub(super) async fn write_all<'a, F, I>(
    io: &mut tokio::io::WriteHalf<TlsStream<TcpStream>>,
    frames: F,
    progress: &mut Progress,
    limit: Duration,
) -> io::Result<()>
where
    F: Fn() -> I,
    I: Iterator<Item = (u8, &'a [u8])>,
{
    let timed_out = |_| io::Error::from(io::ErrorKind::TimedOut);
    loop {
        let write = poll_fn(|cx| {
            let written = wire::write_frames(
                |slices| match Pin::new(&mut *io).poll_write_vectored(cx, slices) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                },
                frames(),
                progress,
            );
            match written {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                done => Poll::Ready(done),
            }
        });
        if timeout(limit, write).await.map_err(timed_out)?? == 0 {
            break;
        }
    }
    let flush = poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx));
    timeout(limit, flush).await.map_err(timed_out)?
}
