//! A connection's single writer: waits for frames, takes everything queued
//! and hands it to the kernel in one vectored write (`writev`), finishing
//! partial writes; every heartbeat interval it queues a `heartbeat` and a
//! ping; it ends after a queued close frame, with `1001` at shutdown, or at
//! once when the connection is gone.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use odin_protocol::ServerMessage;
use odin_protocol::close;
use odin_protocol::message::Heartbeat;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::time::{Instant, MissedTickBehavior};

use super::frame;
use super::queue::Queue;
use super::shared::Shared;

/// How long a closing handshake may take before the socket is dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Most buffers in one `writev` (Linux's `IOV_MAX`); more frames than that
/// take more than one call.
const MAX_IOV: usize = 1024;

/// Writes `queue` to `socket` until the connection ends; its end cancels
/// the queue's `gone` token, which stops the reader.
pub(crate) async fn run(mut socket: OwnedWriteHalf, queue: Arc<Queue>, shared: Arc<Shared>) {
    let gone_token = queue.gone().clone();
    let _stop_reader = gone_token.clone().drop_guard();
    let gone = gone_token.cancelled();
    // A child token per writer: polling a cancellation future locks its
    // token, and this one is not shared by every connection.
    let shutdown_token = shared.shutdown.child_token();
    let shutdown = shutdown_token.cancelled();
    tokio::pin!(gone, shutdown);
    let period = shared.heartbeat;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let mut shutting_down = false;
    loop {
        tokio::select! {
            biased;
            () = &mut gone => return,
            () = &mut shutdown, if !shutting_down => {
                shutting_down = true;
                queue.close_with(frame::close(close::GOING_AWAY));
            }
            _ = heartbeat.tick() => {
                let message = shared.message(|timestamp, nonce| {
                    ServerMessage::Heartbeat(Heartbeat {
                        server_id: shared.server_id.clone(),
                        timestamp,
                        nonce,
                    })
                });
                queue.push(message);
                queue.push(frame::ping());
            }
            () = queue.ready() => {}
        }
        let taken = queue.take(&mut batch);
        let written = tokio::select! {
            biased;
            () = &mut gone => return,
            written = write_all(&socket, &mut batch) => written,
        };
        if written.is_err() {
            return;
        }
        if taken.closing {
            // The close frame is out: end the TCP stream too.
            let _ = tokio::time::timeout(CLOSE_GRACE, socket.shutdown()).await;
            return;
        }
    }
}

/// Writes every frame of `frames`, as few `writev` calls as the kernel
/// allows; a partial write leaves the rest (a frame cut in the middle
/// included) for the next call.
pub(crate) async fn write_all(
    socket: &OwnedWriteHalf,
    frames: &mut VecDeque<Bytes>,
) -> io::Result<()> {
    while !frames.is_empty() {
        match write_some(socket, frames) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(frames, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `writev` of the frames at the front. Not async: the slice array
/// lives on this call's stack, not in every connection's future.
fn write_some(socket: &OwnedWriteHalf, frames: &VecDeque<Bytes>) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let mut count = 0;
    for (slot, frame) in slices.iter_mut().zip(frames) {
        *slot = IoSlice::new(frame);
        count += 1;
    }
    socket.try_write_vectored(&slices[..count])
}

/// Drops the first `n` written bytes from `frames`.
fn consume(frames: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = frames.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            frames.pop_front();
        } else {
            // This connection's view of the shared frame moves on; the
            // other recipients' views are untouched.
            front.advance(n);
            n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn consume_cuts_a_shared_frame_for_this_view_only() {
        let shared = Bytes::from_static(b"abcdef");
        let mut frames: VecDeque<Bytes> = [Bytes::from_static(b"xy"), shared.clone()].into();
        consume(&mut frames, 4);
        assert_eq!(frames, [&b"cdef"[..]]);
        assert_eq!(shared, &b"abcdef"[..]);
        consume(&mut frames, 4);
        assert!(frames.is_empty());
    }

    #[tokio::test]
    async fn writes_everything_through_a_full_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (_read, write) = server.into_split();
        // Far more than the socket buffers hold: partial writes for sure.
        let frame = Bytes::from(vec![7u8; 100_000]);
        let mut frames: VecDeque<Bytes> = (0..80).map(|_| frame.clone()).collect();
        let total = 80 * 100_000;
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0usize;
            while got < total {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
                got += n;
            }
            got
        });
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            write_all(&write, &mut frames),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(frames.is_empty());
        assert_eq!(reader.await.unwrap(), total);
    }
}
