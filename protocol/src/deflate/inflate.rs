//! The read side of permessage-deflate for a WebSocket library that has no
//! such extension: a rewriter of the received byte stream. It parses frame
//! headers as the bytes arrive; a frame without RSV1 (and the control frames
//! between fragments) passes through unchanged, byte for byte, while a
//! message whose first frame has RSV1 set is gathered (all its fragments),
//! inflated with a fresh context (the server answers
//! `client_no_context_takeover`; the server's messages never carry one), and
//! handed on as one final frame with RSV1 clear: masked with a zero key when
//! the original was masked (client to server), so the library sees exactly
//! the message it would have seen uncompressed.
//!
//! Its memory is bounded by the message limit it is given: a compressed
//! message over the limit (plus deflate's worst-case growth of
//! incompressible data), or its inflated size over the limit (a compression
//! bomb), stops at the limit and becomes a frame header announcing one byte
//! more than the limit, which the library refuses as too big (`1009`); broken compressed
//! data, or RSV1 where RFC 7692 forbids it (a control frame, a continuation,
//! a connection that did not negotiate the extension), becomes a frame with
//! RSV2 set, which it refuses as a protocol error (`1002`). After either,
//! the rest of the stream is dropped.

use flate2::{Decompress, FlushDecompress, Status};

use super::compress::{RSV1, SYNC_TAIL};

/// RSV2: set on the frame that makes the reader fail the connection.
const RSV2: u8 = 0x20;
const FIN: u8 = 0x80;
const MASKED: u8 = 0x80;
const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;

/// The byte-stream rewriter of one connection's received frames.
#[derive(Debug)]
pub struct FrameInflater {
    /// The largest message handed on, inflated, in bytes.
    limit: usize,
    /// Whether the extension was negotiated: without it RSV1 is an error.
    enabled: bool,
    /// The header being read (up to 14 bytes).
    header: Vec<u8>,
    /// The frame whose payload is being read, if its header is complete.
    frame: Option<Payload>,
    /// A compressed message being gathered: its opcode and payload so far
    /// (unmasked).
    message: Option<(u8, Vec<u8>)>,
    /// Whether the message's last frame has been seen.
    message_done: bool,
    /// After a refusal: everything more is dropped.
    failed: bool,
}

/// The payload of the frame being read.
#[derive(Debug)]
struct Payload {
    /// Bytes still to come.
    left: u64,
    /// Gathered into `message` (unmasked) rather than passed on.
    gather: bool,
    /// The masking key, when gathering a masked frame.
    key: Option<[u8; 4]>,
    /// Payload bytes read so far (the mask's position).
    at: usize,
    /// Whether the original frame was masked (the rewritten one is too).
    masked: bool,
}

impl FrameInflater {
    /// A rewriter handing on messages of at most `limit` bytes; `enabled`
    /// when permessage-deflate was negotiated.
    pub fn new(limit: usize, enabled: bool) -> Self {
        Self {
            limit,
            enabled,
            header: Vec::with_capacity(14),
            frame: None,
            message: None,
            message_done: false,
            failed: false,
        }
    }

    /// Reads `input` (the next bytes of the stream) and appends what the
    /// library should read instead to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.failed {
            match &mut self.frame {
                None => {
                    let want = header_len(&self.header);
                    let take = (want - self.header.len()).min(input.len());
                    self.header.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.header.len() == header_len(&self.header) {
                        self.start_frame(out);
                    }
                }
                Some(frame) => {
                    let take = usize::try_from(frame.left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (chunk, rest) = input.split_at(take);
                    input = rest;
                    frame.left -= take as u64;
                    if frame.gather {
                        let (_, data) = self.message.as_mut().expect("gathering a message");
                        for &b in chunk {
                            let k = frame.key.map_or(0, |k| k[frame.at % 4]);
                            data.push(b ^ k);
                            frame.at += 1;
                        }
                    } else {
                        out.extend_from_slice(chunk);
                    }
                    if frame.left == 0 {
                        self.end_frame(out);
                    }
                }
            }
        }
    }

    /// The header is complete: decide what the frame is.
    fn start_frame(&mut self, out: &mut Vec<u8>) {
        let h = std::mem::take(&mut self.header);
        let (b0, b1) = (h[0], h[1]);
        let opcode = b0 & 0x0f;
        let masked = b1 & MASKED != 0;
        let len = payload_len(&h);
        let key = masked.then(|| {
            let k = &h[h.len() - 4..];
            [k[0], k[1], k[2], k[3]]
        });
        let control = opcode & 0x8 != 0;
        let gathering = self.message.is_some();
        let gather = if b0 & RSV1 != 0 {
            // RFC 7692 §6.1: only on a message's first, data, frame.
            if !self.enabled || control || opcode == OP_CONTINUATION || gathering {
                return self.refuse(RSV2, 0, masked, out);
            }
            self.message = Some((opcode, Vec::new()));
            true
        } else if gathering && opcode == OP_CONTINUATION {
            true
        } else if gathering && !control {
            // A new message before the compressed one ended.
            return self.refuse(RSV2, 0, masked, out);
        } else {
            false
        };
        if gather {
            let (_, data) = self.message.as_ref().expect("just set");
            // Incompressible data grows a little when deflated: a message
            // within the limit may be slightly over it compressed.
            let room = self.limit + self.limit / 256 + 64 - data.len();
            if len > room as u64 {
                return self.too_big(masked, out);
            }
            self.message_done = b0 & FIN != 0;
        } else {
            out.extend_from_slice(&h);
        }
        self.header = h;
        self.header.clear();
        self.frame = Some(Payload {
            left: len,
            gather,
            key,
            at: 0,
            masked,
        });
        if len == 0 {
            self.end_frame(out);
        }
    }

    /// The frame's payload is complete: a gathered message that ended is
    /// inflated and handed on.
    fn end_frame(&mut self, out: &mut Vec<u8>) {
        let frame = self.frame.take().expect("a frame was being read");
        if !frame.gather || !self.message_done {
            return;
        }
        let (opcode, data) = self.message.take().expect("gathering a message");
        match inflate(&data, self.limit) {
            Inflated::Message(message) => {
                push_header(out, FIN | opcode, message.len() as u64, frame.masked);
                out.extend_from_slice(&message);
            }
            Inflated::TooBig => self.too_big(frame.masked, out),
            Inflated::Broken => self.refuse(RSV2, 0, frame.masked, out),
        }
    }

    /// Hands on a header announcing one byte over the limit: the library
    /// refuses it as too big before reading a payload.
    fn too_big(&mut self, masked: bool, out: &mut Vec<u8>) {
        self.refuse(0, self.limit as u64 + 1, masked, out);
    }

    /// Hands on a final text frame with the `rsv` bits and `len`, which the
    /// library refuses, and drops the rest of the stream.
    fn refuse(&mut self, rsv: u8, len: u64, masked: bool, out: &mut Vec<u8>) {
        push_header(out, FIN | rsv | OP_TEXT, len, masked);
        self.failed = true;
        self.frame = None;
        self.message = None;
    }
}

/// The length of the header that `bytes` begins (2 until the second byte
/// is known).
fn header_len(bytes: &[u8]) -> usize {
    let Some(&b1) = bytes.get(1) else {
        return 2;
    };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & MASKED != 0 { 4 } else { 0 }
}

/// The payload length a complete header announces.
fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => u64::from_be_bytes(h[2..10].try_into().expect("eight bytes")),
        n => u64::from(n),
    }
}

/// Appends a header (shortest length form); a masked one gets the zero key,
/// so the payload after it is the plain one.
fn push_header(out: &mut Vec<u8>, b0: u8, len: u64, masked: bool) {
    let mask = if masked { MASKED } else { 0 };
    out.push(b0);
    if len < 126 {
        out.push(mask | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&[0; 4]);
    }
}

/// What inflating a message gave.
enum Inflated {
    Message(Vec<u8>),
    /// Over the limit.
    TooBig,
    /// Not valid deflate data.
    Broken,
}

/// Inflates one message's payload (the tail appended), with a fresh context,
/// into at most `limit` bytes.
fn inflate(data: &[u8], limit: usize) -> Inflated {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(limit.min(data.len().saturating_mul(4).max(256)) + 1);
    for mut input in [data, &SYNC_TAIL[..]] {
        loop {
            if out.len() > limit {
                return Inflated::TooBig;
            }
            if out.len() == out.capacity() {
                // Never more room than one byte past the limit.
                let more = out.capacity().max(256).min(limit + 1 - out.len());
                out.reserve_exact(more);
            }
            let (in_before, out_before) = (d.total_in(), out.len());
            let status = match d.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(status) => status,
                Err(_) => return Inflated::Broken,
            };
            input = &input[(d.total_in() - in_before) as usize..];
            if status == Status::StreamEnd {
                // A final block: what follows (the tail) is not needed.
                return finish(out, limit);
            }
            // With room left over, the decompressor took all it could.
            if out.len() < out.capacity() {
                if input.is_empty() {
                    break;
                }
                if d.total_in() == in_before && out.len() == out_before {
                    return Inflated::Broken;
                }
            }
        }
    }
    finish(out, limit)
}

fn finish(out: Vec<u8>, limit: usize) -> Inflated {
    if out.len() > limit {
        Inflated::TooBig
    } else {
        Inflated::Message(out)
    }
}

#[cfg(test)]
mod tests;
