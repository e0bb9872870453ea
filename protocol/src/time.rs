//! The protocol's clock: milliseconds since the Unix epoch with a microsecond
//! fraction, as carried in every message's `timestamp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch, with microsecond precision
/// (e.g. `1764288000123.456`).
pub fn now_millis() -> f64 {
    millis_of(SystemTime::now())
}

/// `t` in the protocol's timestamp form.
pub fn millis_of(t: SystemTime) -> f64 {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    since.as_micros() as f64 / 1000.0
}

/// How long ago `timestamp` was, in milliseconds; negative when the sender's
/// clock is ahead of ours.
pub fn age_millis(timestamp: f64) -> f64 {
    now_millis() - timestamp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_288_000_123_456);
        assert_eq!(millis_of(t), 1_764_288_000_123.456);
        assert_eq!(
            serde_json::to_string(&millis_of(t)).unwrap(),
            "1764288000123.456"
        );
    }
}
