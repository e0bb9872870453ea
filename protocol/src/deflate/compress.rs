//! Compressing one message as permessage-deflate sends it (RFC 7692 §7.2.1):
//! raw deflate, a fresh context per message, a sync flush with its trailing
//! `00 00 ff ff` removed; and the constants the read side shares.

use flate2::{Compress, Compression, FlushCompress, Status};

/// The four bytes a sync flush ends with, which a sender strips and a
/// receiver appends again (RFC 7692 §7.2.1, §7.2.2).
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The RSV1 bit of a frame's first byte: set on the first frame of a
/// compressed message (RFC 7692 §6).
pub const RSV1: u8 = 0x40;

/// Compresses one whole message with a fresh context (raw deflate, sync
/// flush, the trailing `00 00 ff ff` removed): the payload of a frame with
/// RSV1 set.
pub fn deflate(message: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    deflate_with(&mut compress, message)
}

/// [`deflate`] with a compressor the caller keeps (reset first, so no
/// context is carried): spares allocating one per message.
pub fn deflate_with(compress: &mut Compress, message: &[u8]) -> Vec<u8> {
    compress.reset();
    // Deflate never grows data by more than a few bytes per 16 KiB block.
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 16);
    let mut input = message;
    loop {
        let before_in = compress.total_in();
        let status = compress
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("raw deflate into a vector does not fail");
        input = &input[(compress.total_in() - before_in) as usize..];
        // Done when all input is in and the flush fitted (room left over).
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        debug_assert!(matches!(status, Status::Ok | Status::BufError));
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&SYNC_TAIL) {
        out.truncate(out.len() - SYNC_TAIL.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};
    use proptest::prelude::*;

    fn inflate_all(data: &[u8]) -> Vec<u8> {
        let mut d = Decompress::new(false);
        let mut input = data.to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn a_price_shrinks_and_comes_back() {
        let price = br#"{"type":"price_update","tokenId":"BTC","price":64012.5,"source":"trade","timestamp":1765000000000.5,"nonce":"n-1"}"#;
        let z = deflate(price);
        assert!(z.len() < price.len(), "{} vs {}", z.len(), price.len());
        assert!(!z.ends_with(&SYNC_TAIL));
        assert_eq!(inflate_all(&z), price);
        // RFC 7692 §7.2.3.1's example: "Hello" with no context.
        assert_eq!(
            deflate(b"Hello"),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    proptest! {
        #[test]
        fn any_message_round_trips(message in prop::collection::vec(any::<u8>(), 0..70_000)) {
            prop_assert_eq!(inflate_all(&deflate(&message)), message);
        }
    }
}
