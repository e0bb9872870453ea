//! The latency histogram every part of a run shares: one set of bounds and
//! precision, so users', seconds' and processes' histograms add up, and its
//! encoding in `report.json`.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Highest latency a histogram tracks (larger values are clamped): 60 s.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Significant figures of every latency histogram. Two keep a user's
/// histogram near 10 KB (so 5,000 users fit easily) at ±1 % per value.
pub const LATENCY_SIGFIG: u8 = 2;

/// A latency histogram as every load user keeps it.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGFIG).expect("valid bounds")
}

/// Serialises a histogram for the report (V2, base64).
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising to memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads a histogram written by [`encode_histogram`].
pub fn decode_histogram(text: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
    Ok(h)
}
