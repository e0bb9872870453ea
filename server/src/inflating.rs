//! A byte stream whose received WebSocket frames pass through a
//! [`FrameInflater`]: the way a WebSocket library without permessage-deflate
//! (tungstenite on the server, tokio-websockets in the reference client and
//! the load tool) reads compressed messages. Writes pass straight through.
//!
//! Until [`Inflating::enable`] it reads unchanged (the HTTP upgrade);
//! afterwards compressed messages arrive inflated (a client that offers the
//! extension uses [`Inflating::after_head`] instead: frames the server sends
//! right behind its `101` answer may arrive in the same read as it), bounded by the message
//! limit (see [`odin_protocol::deflate::inflate`]). Read through a stack
//! buffer: an idle connection holds no buffer of its own here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use odin_protocol::deflate::FrameInflater;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Rewritten bytes above this are freed once served, not kept.
const KEEP_CAPACITY: usize = 4096;

/// `S` with its received frames inflated once enabled.
#[derive(Debug)]
pub struct Inflating<S> {
    inner: S,
    inflater: Option<FrameInflater>,
    /// Rewritten bytes not yet read, from `served` on.
    out: Vec<u8>,
    served: usize,
    /// While `Some`: the HTTP head is still passing, and this many bytes of
    /// its closing blank line (`\r\n\r\n`) have been seen.
    head: Option<usize>,
}

impl<S> Inflating<S> {
    /// `inner`, read unchanged until [`Inflating::enable`].
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            inflater: None,
            out: Vec::new(),
            served: 0,
            head: None,
        }
    }

    /// `inner`, read unchanged up to the end of the HTTP head (the upgrade's
    /// answer), then inflating messages of at most `limit` bytes.
    pub fn after_head(inner: S, limit: usize) -> Self {
        Self {
            inflater: Some(FrameInflater::new(limit, true)),
            head: Some(0),
            ..Self::new(inner)
        }
    }

    /// From now on, inflate compressed messages of at most `limit` bytes
    /// (called once permessage-deflate is negotiated).
    pub fn enable(&mut self, limit: usize) {
        self.inflater = Some(FrameInflater::new(limit, true));
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inflater) = this.inflater.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if this.served < this.out.len() {
                let left = &this.out[this.served..];
                let n = left.len().min(buf.remaining());
                buf.put_slice(&left[..n]);
                this.served += n;
                if this.served == this.out.len() {
                    this.served = 0;
                    this.out.clear();
                    if this.out.capacity() > KEEP_CAPACITY {
                        this.out = Vec::new();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 2048];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    let mut bytes = read.filled();
                    if let Some(seen) = this.head.as_mut() {
                        let end = head_end(bytes, seen);
                        this.out.extend_from_slice(&bytes[..end]);
                        bytes = &bytes[end..];
                        if *seen == 4 {
                            this.head = None;
                        }
                    }
                    if this.head.is_none() {
                        inflater.feed(bytes, &mut this.out);
                    }
                }
                other => return other,
            }
        }
    }
}

/// How much of `bytes` belongs to the HTTP head, given that `seen` bytes of
/// its closing `\r\n\r\n` came before; advances `seen` (4: the head ended).
fn head_end(bytes: &[u8], seen: &mut usize) -> usize {
    const END: &[u8; 4] = b"\r\n\r\n";
    for (i, &b) in bytes.iter().enumerate() {
        *seen = if b == END[*seen] {
            *seen + 1
        } else if b == b'\r' {
            1
        } else {
            0
        };
        if *seen == 4 {
            return i + 1;
        }
    }
    bytes.len()
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn the_head_passes_and_the_frames_behind_it_are_inflated() {
        let text = br#"{"type":"price_update","tokenId":"BTC","price":1.5}"#;
        let z = odin_protocol::deflate::deflate(text);
        let mut wire = b"HTTP/1.1 101 Switching\r\nA: \r\r\n\r\n".to_vec();
        wire.extend_from_slice(&[0xC1, z.len() as u8]);
        wire.extend_from_slice(&z);
        let mut want = b"HTTP/1.1 101 Switching\r\nA: \r\r\n\r\n".to_vec();
        want.extend_from_slice(&[0x81, text.len() as u8]);
        want.extend_from_slice(text);
        for chunk in [1, 3, 7, 2048] {
            let (mut tx, rx) = tokio::io::duplex(chunk);
            let wire = wire.clone();
            let writer = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                for piece in wire.chunks(chunk) {
                    tx.write_all(piece).await.unwrap();
                }
            });
            let mut got = Vec::new();
            let mut reader = Inflating::after_head(rx, 1 << 16);
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                reader.read_to_end(&mut got),
            )
            .await
            .expect("read in time")
            .unwrap();
            writer.await.unwrap();
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }
}
