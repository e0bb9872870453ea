use super::*;
use crate::deflate::compress::deflate;
use proptest::prelude::*;

/// A frame's bytes: `b0`, the payload, masked with `key` if given.
fn frame(b0: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    push_header(&mut out, b0, payload.len() as u64, false);
    if let Some(key) = key {
        out[1] |= MASKED;
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// The frames in `bytes` as (first byte, unmasked payload), parsed
/// independently of the rewriter.
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    while !bytes.is_empty() {
        let n = header_len(bytes);
        let len = payload_len(bytes) as usize;
        let key = (bytes[1] & MASKED != 0)
            .then(|| [bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
        let payload = bytes[n..n + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key.map_or(0, |k| k[i % 4]))
            .collect();
        found.push((bytes[0], payload));
        bytes = &bytes[n + len..];
    }
    found
}

fn feed_in_chunks(inflater: &mut FrameInflater, wire: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        inflater.feed(piece, &mut out);
    }
    out
}

#[test]
fn a_compressed_masked_message_becomes_a_plain_one() {
    let text = b"{\"type\":\"subscribe\",\"channels\":[\"token.BTC\",\"token.ETH\"]}";
    let wire = frame(FIN | RSV1 | OP_TEXT, &deflate(text), Some([1, 2, 3, 4]));
    let mut inflater = FrameInflater::new(1 << 16, true);
    let out = feed_in_chunks(&mut inflater, &wire, 3);
    assert_eq!(frames(&out), [(FIN | OP_TEXT, text.to_vec())]);
    assert_eq!(
        &out[1..6],
        &[MASKED | text.len() as u8, 0, 0, 0, 0],
        "zero key"
    );
}

#[test]
fn a_compression_bomb_stops_at_the_limit() {
    let bomb = deflate(&vec![b'a'; 8 << 20]);
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let mut inflater = FrameInflater::new(64 << 10, true);
    let wire = frame(FIN | RSV1 | OP_TEXT, &bomb, Some([9, 9, 9, 9]));
    let mut out = feed_in_chunks(&mut inflater, &wire, 4096);
    // Whatever follows is dropped.
    inflater.feed(&frame(FIN | OP_TEXT, b"after", Some([0; 4])), &mut out);
    assert_eq!(out.len(), 14, "a header only");
    assert_eq!(payload_len(&out), (64 << 10) + 1);
    assert_eq!(out[0] & (RSV1 | RSV2), 0);
}

#[test]
fn an_incompressible_message_of_the_limit_passes_though_it_grew() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let z = deflate(&data);
    assert!(z.len() > data.len(), "{}", z.len());
    let mut inflater = FrameInflater::new(data.len(), true);
    let out = feed_in_chunks(
        &mut inflater,
        &frame(FIN | RSV1 | 0x2, &z, Some([5, 6, 7, 8])),
        100,
    );
    assert_eq!(frames(&out), [(FIN | 0x2, data)]);
}

#[test]
fn a_compressed_frame_over_the_limit_is_refused_before_it_is_read() {
    let mut inflater = FrameInflater::new(100, true);
    let mut out = Vec::new();
    inflater.feed(&[FIN | RSV1 | OP_TEXT, 126, 0x10, 0x00], &mut out);
    assert_eq!(payload_len(&out), 101);
}

#[test]
fn rsv1_where_it_may_not_be_is_a_protocol_error() {
    let z = deflate(b"hello");
    let cases = [
        (true, frame(FIN | RSV1 | 0x9, b"", None)),
        (
            true,
            [frame(RSV1 | OP_TEXT, &z, None), frame(FIN | RSV1, &z, None)].concat(),
        ),
        (
            true,
            [
                frame(RSV1 | OP_TEXT, &z, None),
                frame(FIN | OP_TEXT, b"x", None),
            ]
            .concat(),
        ),
        (true, frame(FIN | RSV1 | OP_CONTINUATION, &z, None)),
        (false, frame(FIN | RSV1 | OP_TEXT, &z, None)),
        (true, frame(FIN | RSV1 | OP_TEXT, b"\xff\xff\xff\xff", None)),
    ];
    for (enabled, wire) in cases {
        let mut inflater = FrameInflater::new(1 << 16, enabled);
        let out = feed_in_chunks(&mut inflater, &wire, 7);
        let got = frames(&out);
        assert_eq!(
            got.last().map(|f| f.0 & RSV2),
            Some(RSV2),
            "{wire:?} gave {got:?}"
        );
    }
}

/// One message as the peer sends it.
#[derive(Debug, Clone)]
struct Sent {
    opcode: u8,
    data: Vec<u8>,
    compressed: bool,
    /// Where the payload is cut into fragments.
    cuts: Vec<usize>,
    /// A ping between its first two fragments.
    ping: bool,
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        prop::sample::select(vec![OP_TEXT, 0x2]),
        prop::collection::vec(prop::sample::select(b"{}\"abc,:0123".to_vec()), 0..600),
        any::<bool>(),
        prop::collection::vec(0usize..700, 0..4),
        any::<bool>(),
    )
        .prop_map(|(opcode, data, compressed, cuts, ping)| Sent {
            opcode,
            data,
            compressed,
            cuts,
            ping,
        })
}

/// The frames of `message`, masked with `key` if given, and how many
/// fragments it has.
fn encode(m: &Sent, key: Option<[u8; 4]>) -> (Vec<u8>, usize) {
    let payload = if m.compressed {
        deflate(&m.data)
    } else {
        m.data.clone()
    };
    let mut cuts: Vec<usize> = m.cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    cuts.sort();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&payload[start..c]);
        start = c;
    }
    pieces.push(&payload[start..]);
    let mut out = Vec::new();
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        let mut b0 = if i == 0 { m.opcode } else { OP_CONTINUATION };
        if i == 0 && m.compressed {
            b0 |= RSV1;
        }
        if i == last {
            b0 |= FIN;
        }
        out.extend(frame(b0, piece, key));
        if i == 0 && m.ping {
            out.extend(frame(FIN | 0x9, b"p", key));
        }
    }
    (out, pieces.len())
}

/// The messages (and pings) a reader of `bytes` gets.
fn messages(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    let mut current: Option<(u8, Vec<u8>)> = None;
    for (b0, payload) in frames(bytes) {
        assert_eq!(b0 & (RSV1 | RSV2), 0, "reserved bits handed on");
        let opcode = b0 & 0x0f;
        if opcode & 0x8 != 0 {
            found.push((opcode, payload));
            continue;
        }
        let (op, mut data) = current.take().unwrap_or((opcode, Vec::new()));
        data.extend(payload);
        if b0 & FIN != 0 {
            found.push((op, data));
        } else {
            current = Some((op, data));
        }
    }
    found
}

proptest! {
    /// Any messages, compressed or not, in any fragments, masked or not,
    /// read in any chunks, come out as the same messages in plain frames.
    #[test]
    fn any_stream_comes_out_as_the_same_messages_uncompressed(
        sent in prop::collection::vec(sent(), 0..8),
        masked in any::<bool>(),
        chunk in 1usize..300,
    ) {
        let key = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
        let wire: Vec<u8> = sent.iter().flat_map(|m| encode(m, key).0).collect();
        let mut inflater = FrameInflater::new(1 << 16, true);
        let out = feed_in_chunks(&mut inflater, &wire, chunk);
        let mut want = Vec::new();
        for m in &sent {
            // A ping between fragments goes on at once, before the rest.
            let fragments = encode(m, None).1;
            if m.ping && fragments > 1 {
                want.push((0x9, b"p".to_vec()));
            }
            want.push((m.opcode, m.data.clone()));
            if m.ping && fragments == 1 {
                want.push((0x9, b"p".to_vec()));
            }
        }
        prop_assert_eq!(messages(&out), want);
        // Uncompressed streams pass through byte for byte.
        if sent.iter().all(|m| !m.compressed) {
            prop_assert_eq!(out, wire);
        }
    }
}
