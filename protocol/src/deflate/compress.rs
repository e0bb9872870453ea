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

/// Figures for `docs/results/compression.md`: bytes per price event plain and
/// compressed, and the cost of compressing once per event against once per
/// recipient. Run by hand:
/// `cargo test --workspace --lib deflate::compress::figures -- --ignored --nocapture`
/// (add `--release` for the CPU figures).
#[cfg(test)]
mod figures {
    use std::time::Instant;

    use crate::ids::NonceSource;
    use crate::message::{PriceSource, PriceUpdate};
    use crate::{Event, TokenId};

    /// Price events as the publisher sends them: a random walk per token.
    fn prices(n: usize) -> Vec<Vec<u8>> {
        let nonces = NonceSource::with_instance(7);
        let tokens = ["BTC", "ETH", "SOL", "DOGE", "AVAX", "LINK", "MATIC", "DOT"];
        let mut price = 100.0_f64;
        (0..n)
            .map(|i| {
                price *= 1.0 + ((i * 7919 % 200) as f64 - 100.0) / 100_000.0;
                let event = Event::PriceUpdate(PriceUpdate {
                    token_id: TokenId::parse(tokens[i % tokens.len()]).unwrap(),
                    price: (price * 1e6).round() / 1e6,
                    source: if i % 3 == 0 {
                        PriceSource::Scheduler
                    } else {
                        PriceSource::Trade
                    },
                    previous_price: Some(price * 0.999),
                    change_24h: Some(((i % 1000) as f64 - 500.0) / 100.0),
                    timestamp: 1_765_000_000_000.0 + i as f64 * 2.5,
                    nonce: nonces.next(),
                });
                serde_json::to_vec(&event).unwrap()
            })
            .collect()
    }

    #[test]
    #[ignore = "prints figures; run by hand"]
    fn figures() {
        let events = prices(10_000);
        let plain: usize = events.iter().map(Vec::len).sum();
        let mut compress = flate2::Compress::new(flate2::Compression::default(), false);
        let start = Instant::now();
        let compressed: usize = events
            .iter()
            .map(|e| super::deflate_with(&mut compress, e).len())
            .sum();
        let once = start.elapsed().as_secs_f64() / events.len() as f64;
        println!(
            "price events: {} bytes plain, {} compressed per event on average: {:.1} %",
            plain / events.len(),
            compressed / events.len(),
            100.0 * compressed as f64 / plain as f64
        );
        println!("compressing one event: {:.2} µs", once * 1e6);
        // Per-connection compression: the same event once per recipient.
        let recipients = 1_000;
        let start = Instant::now();
        for e in events.iter().take(100) {
            for _ in 0..recipients {
                std::hint::black_box(super::deflate_with(&mut compress, e));
            }
        }
        let per_connection = start.elapsed().as_secs_f64() / 100.0;
        println!(
            "one event to {recipients} recipients: {:.2} ms compressing per recipient, {:.2} µs once per event ({:.0}x)",
            per_connection * 1e3,
            once * 1e6,
            per_connection / once
        );
    }
}
