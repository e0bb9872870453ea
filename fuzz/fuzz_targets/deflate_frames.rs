//! Arbitrary bytes against permessage-deflate's parsers of untrusted input
//! (`odin_protocol::deflate`): the offer parser of the upgrade request, and
//! the frame inflater every compressing connection's received bytes pass
//! through (`odin_server::inflating`).
//!
//! The inflater must never panic, never hand on more than the limit (plus
//! one header) for one message however the input inflates, and hand on a
//! stream of frames it did not compress byte for byte. A message compressed
//! with `deflate` must come out as the plain frame.
//! Input: the first byte picks the limit (64 bytes to 16 KiB), the next one
//! the chunk size the stream is fed in, the rest is the stream; the whole
//! input (lossily UTF-8) is also an offer header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odin_protocol::deflate::{FrameInflater, RSV1, deflate, negotiate};

fuzz_target!(|data: &[u8]| {
    let offer = String::from_utf8_lossy(data);
    if negotiate([offer.as_ref()]).is_some() {
        assert!(
            offer.to_ascii_lowercase().contains("permessage-deflate"),
            "accepted {offer:?}"
        );
    }
    let [limit, chunk, stream @ ..] = data else {
        return;
    };
    let limit = 64usize << (limit % 9);
    let chunk = usize::from(*chunk).max(1);
    let mut inflater = FrameInflater::new(limit, true);
    let mut total = 0;
    for piece in stream.chunks(chunk) {
        let mut out = Vec::new();
        inflater.feed(piece, &mut out);
        // A piece hands on what passed (with a header held from earlier
        // pieces) plus at most one message per frame it ended (each at most
        // the limit and a header); a frame takes at least two bytes.
        let frames = piece.len() / 2 + 1;
        assert!(
            out.len() <= piece.len() + 14 + frames * (limit + 14),
            "{} bytes out of {}",
            out.len(),
            piece.len()
        );
        total += out.len();
    }
    std::hint::black_box(total);

    // A message compressed here comes out as the same message in a plain
    // frame (an unmasked, server-to-client frame).
    if stream.len() <= limit {
        let z = deflate(stream);
        let mut wire = vec![0x80 | RSV1 | 0x2];
        push_len(&mut wire, z.len());
        wire.extend_from_slice(&z);
        let mut want = vec![0x82];
        push_len(&mut want, stream.len());
        want.extend_from_slice(stream);
        let mut inflater = FrameInflater::new(limit, true);
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            inflater.feed(piece, &mut out);
        }
        assert_eq!(out, want);
    }
});

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}
