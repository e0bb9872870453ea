//! Server-to-client WebSocket frames on the wire (RFC 6455 §5.2): the
//! header of an unmasked frame, and a run of frames written straight from
//! their shared payloads with vectored writes — no copy into a
//! per-connection buffer, one `writev` for as many frames as the socket
//! takes.
//!
//! Public for the instruction-count benchmark (`server/benches/instructions.rs`),
//! which encodes frames with [`write_frames`] as the writer does, into memory.

use std::io::{self, IoSlice};

use tokio::net::tcp::OwnedWriteHalf;

/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// The RSV1 bit, or-ed into an opcode: the frame is a message compressed
/// with permessage-deflate (RFC 7692 §6). [`Header::new`] keeps it.
pub const RSV1: u8 = odin_protocol::deflate::RSV1;
/// Close frame opcode.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// The close code that is never sent (RFC 6455 §7.4.1): it stands for a
/// close without a body, the answer to a peer's close that carried no code.
pub(crate) const NO_STATUS: u16 = 1005;

/// Frames handed to one `writev` at most (two slices each); well under
/// Linux's `IOV_MAX` of 1,024.
const FRAMES_PER_WRITE: usize = 64;

/// The header of a final, unmasked frame: 2, 4 or 10 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    bytes: [u8; 10],
    len: u8,
}

impl Header {
    /// The header of a frame with `opcode` (with [`RSV1`] or-ed in for a
    /// compressed message) and a payload of `payload_len` bytes.
    pub(crate) fn new(opcode: u8, payload_len: usize) -> Self {
        let mut bytes = [0u8; 10];
        bytes[0] = 0x80 | opcode;
        let len = if payload_len < 126 {
            bytes[1] = payload_len as u8;
            2
        } else if let Ok(short) = u16::try_from(payload_len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        };
        Self { bytes, len }
    }

    /// The header's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// The payload of a close frame: the code and its reason (RFC 6455 §5.5.1).
/// [`NO_STATUS`] gives an empty body.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    if code == NO_STATUS {
        return Vec::new();
    }
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Where a run of frames stands: how much of it the socket has taken.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Frames written completely.
    pub(crate) frames: usize,
    /// Bytes of the next frame (header included) already written.
    pub(crate) offset: usize,
}

/// Writes as much of `frames` (opcode and payload each), from `progress`
/// on, as the socket takes without waiting, and advances `progress`.
/// Returns the bytes written; `WouldBlock` means the socket is full.
pub(crate) fn try_write<'a, I>(
    io: &OwnedWriteHalf,
    frames: I,
    progress: &mut Progress,
) -> io::Result<usize>
where
    I: IntoIterator<Item = (u8, &'a [u8])>,
{
    write_frames(|slices| io.try_write_vectored(slices), frames, progress)
}

/// `try_write` over any vectored write: builds the slices of the next
/// `FRAMES_PER_WRITE` (64) frames, writes once, advances `progress`.
pub fn write_frames<'a, I, W>(mut write: W, frames: I, progress: &mut Progress) -> io::Result<usize>
where
    I: IntoIterator<Item = (u8, &'a [u8])>,
    W: FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
{
    let mut headers = [Header::new(0, 0); FRAMES_PER_WRITE];
    let mut payloads: [&[u8]; FRAMES_PER_WRITE] = [&[]; FRAMES_PER_WRITE];
    let mut count = 0;
    for (opcode, payload) in frames.into_iter().skip(progress.frames) {
        if count == FRAMES_PER_WRITE {
            break;
        }
        headers[count] = Header::new(opcode, payload.len());
        payloads[count] = payload;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
    let mut used = 0;
    for i in 0..count {
        let (mut header, mut payload) = (headers[i].as_bytes(), payloads[i]);
        if i == 0 {
            // Skip what an earlier, partial write already sent.
            let skip = progress.offset;
            if skip < header.len() {
                header = &header[skip..];
            } else {
                payload = &payload[skip - header.len()..];
                header = &[];
            }
        }
        if !header.is_empty() {
            slices[used] = IoSlice::new(header);
            used += 1;
        }
        if !payload.is_empty() {
            slices[used] = IoSlice::new(payload);
            used += 1;
        }
    }
    let written = write(&slices[..used])?;
    if written == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    // Advance over whole frames, then into the first partial one.
    let mut left = written;
    for i in 0..count {
        let frame_left = headers[i].as_bytes().len() + payloads[i].len() - progress.offset;
        if left < frame_left {
            progress.offset += left;
            break;
        }
        left -= frame_left;
        progress.frames += 1;
        progress.offset = 0;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_use_the_shortest_length_form() {
        assert_eq!(Header::new(OP_TEXT, 0).as_bytes(), [0x81, 0]);
        assert_eq!(Header::new(OP_TEXT, 125).as_bytes(), [0x81, 125]);
        assert_eq!(Header::new(OP_PONG, 126).as_bytes(), [0x8A, 126, 0, 126]);
        assert_eq!(Header::new(OP_TEXT | RSV1, 5).as_bytes(), [0xC1, 5]);
        assert_eq!(
            Header::new(OP_TEXT, 65_535).as_bytes(),
            [0x81, 126, 0xFF, 0xFF]
        );
        assert_eq!(
            Header::new(OP_TEXT, 65_536).as_bytes(),
            [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn close_payload_is_code_then_reason_or_empty_for_no_status() {
        assert_eq!(
            close_payload(4008, "slow"),
            [0x0F, 0xA8, b's', b'l', b'o', b'w']
        );
        assert!(close_payload(1005, "").is_empty());
    }

    /// The bytes a frame puts on the wire, built independently of
    /// `write_frames`.
    fn encoded(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (opcode, payload) in frames {
            out.push(0x80 | opcode);
            match payload.len() {
                n if n < 126 => out.push(n as u8),
                n if n <= 0xFFFF => {
                    out.push(126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            out.extend_from_slice(payload);
        }
        out
    }

    proptest! {
        /// However the socket splits the writes (a few bytes, mid-header,
        /// mid-payload, more than 64 frames), the bytes on the wire are the
        /// frames in order, each once.
        #[test]
        fn partial_writes_put_every_frame_on_the_wire_once(
            frames in prop::collection::vec(
                (prop::sample::select(vec![OP_TEXT, OP_PING, OP_PONG, OP_CLOSE]),
                 prop::collection::vec(any::<u8>(), 0..300)),
                0..150,
            ),
            caps in prop::collection::vec(1usize..700, 1..64),
        ) {
            let mut wire = Vec::new();
            let mut progress = Progress::default();
            let mut turn = 0;
            loop {
                let cap = caps[turn % caps.len()];
                turn += 1;
                let view = frames.iter().map(|(op, p)| (*op, p.as_slice()));
                let written = write_frames(
                    |slices| {
                        let mut n = 0;
                        for s in slices {
                            let take = s.len().min(cap - n);
                            wire.extend_from_slice(&s[..take]);
                            n += take;
                            if n == cap {
                                break;
                            }
                        }
                        Ok(n)
                    },
                    view,
                    &mut progress,
                ).unwrap();
                if written == 0 {
                    break;
                }
            }
            prop_assert_eq!(progress.frames, frames.len());
            prop_assert_eq!(wire, encoded(&frames));
        }
    }
}
