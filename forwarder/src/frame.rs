//! The WebSocket framing the forwarder speaks (RFC 6455 §5), by hand: server
//! frames are built once into [`Bytes`] (unmasked, never fragmented) so the
//! write path is a `writev` of shared buffers and nothing else; client frames
//! are read masked, with hard limits, and anything malformed ends that one
//! connection with a close code instead of a panic.

use bytes::{BufMut, Bytes, BytesMut};
use odin_protocol::close::{self, CloseCode};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// `1002`: a frame RFC 6455 does not allow (unmasked, reserved bits or
/// opcodes, a fragmented or oversized control frame, a stray continuation).
pub(crate) const PROTOCOL_ERROR: CloseCode = CloseCode {
    code: 1002,
    reason: "protocol error",
};

/// `1000`: the answer to a client's close without a usable code.
const NORMAL: CloseCode = CloseCode {
    code: 1000,
    reason: "",
};

/// A whole server frame: FIN, `opcode`, the length, `payload`; one buffer.
fn server_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(len + 10);
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(short);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

/// A text frame holding `payload` (UTF-8 JSON: an event's bytes as they came
/// from NATS, or a message the forwarder wrote).
pub(crate) fn text(payload: &[u8]) -> Bytes {
    server_frame(OP_TEXT, payload)
}

/// A ping with no payload (sent with every heartbeat).
pub(crate) fn ping() -> Bytes {
    Bytes::from_static(&[0x80 | OP_PING, 0])
}

/// The pong answering a client's ping: the same payload (at most 125 bytes,
/// which [`Decoder`] guarantees).
pub(crate) fn pong(payload: &[u8]) -> Bytes {
    server_frame(OP_PONG, &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)])
}

/// A close frame with `code` and its reason (cut to fit a control frame).
pub(crate) fn close(code: CloseCode) -> Bytes {
    let mut payload = Vec::with_capacity(2 + code.reason.len());
    payload.extend_from_slice(&code.code.to_be_bytes());
    let mut reason = code.reason;
    while reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        // Cut at a character boundary: the reason must stay UTF-8.
        let mut end = MAX_CONTROL_PAYLOAD - 2;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason = &reason[..end];
    }
    payload.extend_from_slice(reason.as_bytes());
    server_frame(OP_CLOSE, &payload)
}

/// The close frame answering a client's close with `code`: the same code
/// when it is one a peer may send, `1000` without one, `1002` otherwise.
pub(crate) fn close_reply(code: Option<u16>) -> Bytes {
    match code {
        None => close(NORMAL),
        Some(c) if matches!(c, 1000..=1003 | 1007..=1011 | 3000..=4999) => close(CloseCode {
            code: c,
            reason: "",
        }),
        Some(_) => close(PROTOCOL_ERROR),
    }
}

/// A complete message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClientFrame {
    /// A text message, reassembled when it came in fragments.
    Text(String),
    /// A ping, with its payload to echo.
    Ping(Vec<u8>),
    /// A pong (answers our heartbeat ping; nothing to do).
    Pong,
    /// A close, with its code when it had one.
    Close(Option<u16>),
}

/// Reads client frames out of a connection's read buffer.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Largest text message, fragments together (`PROTOCOL.md` §5: 4096,
    /// exactly 4096 accepted).
    max_message: usize,
    /// The fragments of a text message so far. Invariant: at most
    /// `max_message` bytes.
    partial: Option<Vec<u8>>,
}

impl Decoder {
    /// A decoder that refuses messages above `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
        }
    }

    /// Takes the next complete frame out of `buf`: `Ok(None)` when more bytes
    /// are needed (what is there stays), `Err` with the close code when the
    /// input must end the connection. The length is checked from the header,
    /// before the payload is waited for, so `buf` never has to hold more than
    /// one allowed frame.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ClientFrame>, CloseCode> {
        loop {
            let Some(header) = Header::parse(buf)? else {
                return Ok(None);
            };
            let control = header.opcode & 0x8 != 0;
            if control {
                if !header.fin || header.len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(PROTOCOL_ERROR);
                }
            } else {
                let before = self.partial.as_ref().map_or(0, Vec::len) as u64;
                if header.len.saturating_add(before) > self.max_message as u64 {
                    return Err(close::MESSAGE_TOO_BIG);
                }
            }
            // Bounded above: at most `max_message` (or 125) bytes.
            let len = header.len as usize;
            if buf.len() < header.size + len {
                return Ok(None);
            }
            let mut frame = buf.split_to(header.size + len);
            let payload = &mut frame[header.size..];
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= header.mask[i % 4];
            }
            let payload = &frame[header.size..];
            match (header.opcode, self.partial.as_mut()) {
                (OP_TEXT, None) if header.fin => return text_of(payload.to_vec()).map(Some),
                (OP_TEXT, None) => self.partial = Some(payload.to_vec()),
                (OP_CONTINUATION, Some(partial)) => {
                    partial.extend_from_slice(payload);
                    if header.fin {
                        let whole = self.partial.take().unwrap_or_default();
                        return text_of(whole).map(Some);
                    }
                }
                (OP_BINARY, _) => return Err(close::UNSUPPORTED_DATA),
                (OP_CLOSE, _) => {
                    return match payload {
                        [] => Ok(Some(ClientFrame::Close(None))),
                        [hi, lo, ..] => Ok(Some(ClientFrame::Close(Some(u16::from_be_bytes([
                            *hi, *lo,
                        ]))))),
                        [_] => Err(PROTOCOL_ERROR),
                    };
                }
                (OP_PING, _) => return Ok(Some(ClientFrame::Ping(payload.to_vec()))),
                (OP_PONG, _) => return Ok(Some(ClientFrame::Pong)),
                // A text frame inside a fragmented message, a continuation
                // of nothing, or a reserved opcode.
                _ => return Err(PROTOCOL_ERROR),
            }
        }
    }
}

fn text_of(bytes: Vec<u8>) -> Result<ClientFrame, CloseCode> {
    String::from_utf8(bytes)
        .map(ClientFrame::Text)
        .map_err(|_| close::INVALID_PAYLOAD)
}

/// A client frame's header.
struct Header {
    fin: bool,
    opcode: u8,
    /// Payload length as declared (checked against limits before use).
    len: u64,
    mask: [u8; 4],
    /// Header bytes, mask included.
    size: usize,
}

impl Header {
    /// The header at the start of `buf`, `None` until it is all there.
    fn parse(buf: &[u8]) -> Result<Option<Header>, CloseCode> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved bits without an extension, or an unmasked client
            // frame (RFC 6455 §5.1: the server must close).
            return Err(PROTOCOL_ERROR);
        }
        let (len, ext) = match b1 & 0x7F {
            126 => match rest {
                [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
                _ => return Ok(None),
            },
            127 => match rest.get(..8) {
                Some(bytes) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(bytes);
                    (u64::from_be_bytes(be), 8)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 0),
        };
        let Some(mask) = rest.get(ext..ext + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            len,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            size: 2 + ext + 4,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<ClientFrame>, CloseCode> {
        let mut d = Decoder::new(4096);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn server_frames_carry_the_right_length_form() {
        assert_eq!(&text(b"hi")[..], &[0x81, 2, b'h', b'i']);
        let mid = text(&[b'x'; 300]);
        assert_eq!(&mid[..4], &[0x81, 126, 1, 44]);
        assert_eq!(mid.len(), 304);
        let big = text(&vec![b'x'; 70_000]);
        assert_eq!(&big[..2], &[0x81, 127]);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
        assert_eq!(&ping()[..], &[0x89, 0]);
        let c = close(close::GOING_AWAY);
        assert_eq!(&c[..4], &[0x88, 12, 0x03, 0xE9]);
        assert_eq!(&c[4..], b"going away");
    }

    #[test]
    fn reads_masked_frames_whole_split_and_fragmented() {
        let mut bytes = client(true, OP_TEXT, br#"{"type":"ping"}"#);
        bytes.extend(client(false, OP_TEXT, b"ab"));
        bytes.extend(client(true, OP_PING, b"p"));
        bytes.extend(client(true, OP_CONTINUATION, b"cd"));
        bytes.extend(client(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let want = vec![
            ClientFrame::Text(r#"{"type":"ping"}"#.into()),
            ClientFrame::Ping(b"p".to_vec()),
            ClientFrame::Text("abcd".into()),
            ClientFrame::Close(Some(1000)),
        ];
        assert_eq!(decode_all(&bytes).unwrap(), want);
        // Byte by byte: nothing is lost or invented at any split point.
        let mut d = Decoder::new(4096);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_what_the_protocol_refuses() {
        let exactly = client(true, OP_TEXT, &[b'a'; 4096]);
        assert!(
            matches!(&decode_all(&exactly).unwrap()[..], [ClientFrame::Text(t)] if t.len() == 4096)
        );
        let over = client(true, OP_TEXT, &[b'a'; 4097]);
        assert_eq!(decode_all(&over), Err(close::MESSAGE_TOO_BIG));
        // Too big is seen from the header alone.
        let mut d = Decoder::new(4096);
        let mut head = BytesMut::from(&over[..8]);
        assert_eq!(d.decode(&mut head), Err(close::MESSAGE_TOO_BIG));
        let mut frags = client(false, OP_TEXT, &[b'a'; 4000]);
        frags.extend(client(true, OP_CONTINUATION, &[b'a'; 97]));
        assert_eq!(decode_all(&frags), Err(close::MESSAGE_TOO_BIG));
        assert_eq!(
            decode_all(&client(true, OP_BINARY, b"x")),
            Err(close::UNSUPPORTED_DATA)
        );
        assert_eq!(
            decode_all(&client(true, OP_TEXT, &[0xff, 0xfe])),
            Err(close::INVALID_PAYLOAD)
        );
        let mut unmasked = client(true, OP_TEXT, b"x");
        unmasked[1] &= 0x7F;
        assert_eq!(decode_all(&unmasked), Err(PROTOCOL_ERROR));
        for bad in [
            client(true, OP_CONTINUATION, b"x"),
            client(false, OP_PING, b"x"),
            client(true, OP_PING, &[0; 126]),
            client(true, 0x3, b"x"),
            client(true, OP_CLOSE, &[3]),
            [client(false, OP_TEXT, b"a"), client(true, OP_TEXT, b"b")].concat(),
            vec![0xC1, 0x80, 0, 0, 0, 0],
        ] {
            assert_eq!(decode_all(&bad), Err(PROTOCOL_ERROR), "{bad:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of many pseudo-random
        // buffers either decodes, waits or refuses.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            let _ = decode_all(&bytes);
        }
    }

    #[test]
    fn answers_a_close_with_an_allowed_code() {
        assert_eq!(&close_reply(Some(1000))[2..4], &1000u16.to_be_bytes());
        assert_eq!(&close_reply(None)[2..4], &1000u16.to_be_bytes());
        assert_eq!(&close_reply(Some(1005))[2..4], &1002u16.to_be_bytes());
        assert_eq!(&close_reply(Some(4001))[2..4], &4001u16.to_be_bytes());
    }
}
