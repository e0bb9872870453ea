//! The one judge of an event from NATS, live or read back from the
//! last-prices store: it checks the subject and the payload against
//! `PROTOCOL.md` §1 ([`validate`]), a live event also against its size and
//! timestamp window ([`EventLimits`], [`validate_live`]), and drops a repeat
//! by its de-duplication key ([`judge`]). Ingest and the last-prices load
//! both call [`judge`], so a stored price is judged exactly like a live one.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use odin_protocol::dedup::Seen;
use odin_protocol::ids::validate_nonce;
use odin_protocol::{DedupWindow, Event, Subjects};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What a live event from NATS must respect beyond its schema: a size
/// (`--max-event-bytes`), and a `timestamp` within a window around the
/// gateway's clock (`--max-event-age` back, `--max-clock-skew` ahead), as
/// its latency would otherwise be a lie. Stored prices loaded at start-up
/// are exempt from the age: a token's latest price may be old by nature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventLimits {
    /// The largest payload accepted, in bytes.
    pub max_bytes: usize,
    /// How old an event may be.
    pub max_age: Duration,
    /// How far ahead of this clock an event may be dated.
    pub max_ahead: Duration,
}

impl EventLimits {
    /// How many milliseconds `timestamp` lies outside the window around
    /// `now_ms` (both since the epoch); `None` when it is inside.
    pub fn off_by_ms(&self, timestamp: f64, now_ms: f64) -> Option<f64> {
        let earliest = now_ms - self.max_age.as_secs_f64() * 1e3;
        let latest = now_ms + self.max_ahead.as_secs_f64() * 1e3;
        if timestamp < earliest {
            Some(earliest - timestamp)
        } else if timestamp > latest {
            Some(timestamp - latest)
        } else {
            None
        }
    }
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 10,
            max_age: Duration::from_secs(3600),
            max_ahead: Duration::from_secs(60),
        }
    }
}

/// An event that passed validation, with the bytes to forward unchanged.
#[derive(Debug)]
pub struct ValidEvent {
    /// The parsed event (for routing and latency).
    pub event: Event,
    /// The payload exactly as received, shared by every recipient.
    pub text: Utf8Bytes,
    /// The de-duplication key: the `Nats-Msg-Id` header when present and
    /// valid, else the body's `nonce`.
    pub dedup_key: String,
}

/// Why an event was dropped as invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidEvent {
    /// The subject is not one of the protocol's five forms.
    #[error("unknown subject {0:?}")]
    Subject(String),
    /// The payload is not UTF-8.
    #[error("payload is not UTF-8")]
    Utf8,
    /// The payload is not a valid event of a known type.
    #[error("payload is not a valid event: {0}")]
    Payload(String),
    /// The payload's type or token does not match its subject.
    #[error("payload {0} does not match subject {1:?}")]
    Mismatch(&'static str, String),
    /// A value outside the range `PROTOCOL.md` §1 allows (a price that is
    /// not positive, a negative volume, …).
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// A live event larger than `--max-event-bytes` (its size).
    #[error("{0} bytes is over the event size limit")]
    TooLarge(usize),
    /// A live event made longer ago than `--max-event-age`, or further in
    /// the future than `--max-clock-skew`: its latency would be a lie.
    #[error("timestamp {timestamp} is {off_by_ms:.0} ms outside the window around now")]
    Untimely {
        /// The event's `timestamp`.
        timestamp: f64,
        /// How far outside the window, in milliseconds.
        off_by_ms: f64,
    },
}

/// Checks one NATS message against `PROTOCOL.md` §1.
pub fn validate(
    subjects: &Subjects,
    subject: &str,
    msg_id: Option<&str>,
    payload: Bytes,
) -> Result<ValidEvent, InvalidEvent> {
    let kind = subjects
        .parse(subject)
        .ok_or_else(|| InvalidEvent::Subject(subject.to_owned()))?;
    let text = Utf8Bytes::try_from(payload).map_err(|_| InvalidEvent::Utf8)?;
    let event: Event =
        serde_json::from_str(text.as_str()).map_err(|e| InvalidEvent::Payload(e.to_string()))?;
    if event.type_name() != kind.event_type()
        || event.token_id().map(|t| t.as_str()) != kind.token_id()
    {
        return Err(InvalidEvent::Mismatch(
            event.type_name(),
            subject.to_owned(),
        ));
    }
    if let Some(field) = event.out_of_range() {
        return Err(InvalidEvent::OutOfRange(field));
    }
    let dedup_key = match msg_id.filter(|id| validate_nonce(id).is_ok()) {
        Some(id) => id.to_owned(),
        None => event.nonce().as_str().to_owned(),
    };
    Ok(ValidEvent {
        event,
        text,
        dedup_key,
    })
}

/// [`validate`], and what only a live event must respect: its size and its
/// timestamp window (`limits`, at `now_ms`).
pub fn validate_live(
    subjects: &Subjects,
    limits: &EventLimits,
    subject: &str,
    msg_id: Option<&str>,
    payload: Bytes,
    now_ms: f64,
) -> Result<ValidEvent, InvalidEvent> {
    if payload.len() > limits.max_bytes {
        return Err(InvalidEvent::TooLarge(payload.len()));
    }
    let valid = validate(subjects, subject, msg_id, payload)?;
    let timestamp = valid.event.timestamp();
    match limits.off_by_ms(timestamp, now_ms) {
        None => Ok(valid),
        Some(off_by_ms) => Err(InvalidEvent::Untimely {
            timestamp,
            off_by_ms,
        }),
    }
}

/// What [`judge`] made of one message.
#[derive(Debug)]
pub enum Judged {
    /// Valid, and not seen before: to be used.
    Fresh(ValidEvent),
    /// Valid, but its key is in the de-duplication window: dropped.
    Duplicate,
    /// Invalid: dropped.
    Invalid(InvalidEvent),
}

/// The `Nats-Msg-Id` header of a message, if it has one.
pub fn msg_id(headers: Option<&HeaderMap>) -> Option<&str> {
    headers
        .and_then(|h| h.get(NATS_MESSAGE_ID))
        .map(|v| v.as_str())
}

/// Judges one message on `subject` with `headers` and `payload`: validated
/// (a live event, given its `limits` and the time `now_ms`, with
/// [`validate_live`], a stored one with [`validate`]), then, given a
/// `window`, de-duplicated in it by its key.
#[inline]
pub fn judge(
    subjects: &Subjects,
    live: Option<(&EventLimits, f64)>,
    window: Option<&mut DedupWindow>,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: Bytes,
) -> Judged {
    let msg_id = msg_id(headers);
    let checked = match live {
        Some((limits, now_ms)) => validate_live(subjects, limits, subject, msg_id, payload, now_ms),
        None => validate(subjects, subject, msg_id, payload),
    };
    let valid = match checked {
        Ok(valid) => valid,
        Err(e) => return Judged::Invalid(e),
    };
    if let Some(window) = window
        && window.observe(&valid.dedup_key, Instant::now()) == Seen::Duplicate
    {
        return Judged::Duplicate;
    }
    Judged::Fresh(valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: &str = r#"{"type":"price_update","tokenId":"BTC","price":1.0,"source":"trade","timestamp":1.5,"nonce":"body"}"#;

    #[test]
    fn live_events_respect_the_size_and_the_timestamp_window() {
        let s = Subjects::default();
        let limits = EventLimits {
            max_bytes: PRICE.len(),
            ..EventLimits::default()
        };
        let at = |now_ms: f64, payload: String| {
            validate_live(
                &s,
                &limits,
                "odin.token.BTC.price",
                None,
                Bytes::from(payload),
                now_ms,
            )
        };
        assert!(
            at(1.5, PRICE.to_owned()).is_ok(),
            "exactly the limit, and now"
        );
        assert_eq!(
            at(1.5, format!("{PRICE} ")).unwrap_err(),
            InvalidEvent::TooLarge(PRICE.len() + 1)
        );
        let an_hour_later = 1.5 + 3_600_000.0;
        assert!(at(an_hour_later, PRICE.to_owned()).is_ok(), "an hour old");
        assert!(matches!(
            at(an_hour_later + 1.0, PRICE.to_owned()),
            Err(InvalidEvent::Untimely { off_by_ms, .. }) if off_by_ms == 1.0
        ));
        assert!(
            matches!(
                at(1.5 - 60_001.0, PRICE.to_owned()),
                Err(InvalidEvent::Untimely { .. })
            ),
            "a minute and a millisecond ahead"
        );
    }

    #[test]
    fn refuses_values_out_of_range() {
        let s = Subjects::default();
        let bad = PRICE.replace(r#""price":1.0"#, r#""price":-5"#);
        assert_eq!(
            validate(&s, "odin.token.BTC.price", None, Bytes::from(bad)).unwrap_err(),
            InvalidEvent::OutOfRange("price")
        );
        let bad = PRICE.replace(r#""timestamp":1.5"#, r#""timestamp":-1e308"#);
        assert_eq!(
            validate(&s, "odin.token.BTC.price", None, Bytes::from(bad)).unwrap_err(),
            InvalidEvent::OutOfRange("timestamp")
        );
    }

    #[test]
    fn accepts_a_valid_event_and_keeps_its_bytes() {
        let s = Subjects::default();
        let v = validate(
            &s,
            "odin.token.BTC.price",
            None,
            Bytes::from_static(PRICE.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.text.as_str(), PRICE);
        assert_eq!(v.dedup_key, "body");
    }

    #[test]
    fn header_wins_over_body_nonce() {
        let s = Subjects::default();
        let v = validate(
            &s,
            "odin.token.BTC.price",
            Some("hdr"),
            Bytes::from_static(PRICE.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.dedup_key, "hdr");
        let v = validate(
            &s,
            "odin.token.BTC.price",
            Some(""),
            Bytes::from_static(PRICE.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.dedup_key, "body");
    }

    #[test]
    fn refuses_mismatches_and_garbage() {
        let s = Subjects::default();
        let p = || Bytes::from_static(PRICE.as_bytes());
        assert!(matches!(
            validate(&s, "odin.token.ETH.price", None, p()),
            Err(InvalidEvent::Mismatch(..))
        ));
        assert!(matches!(
            validate(&s, "odin.trades.BTC", None, p()),
            Err(InvalidEvent::Mismatch(..))
        ));
        assert!(matches!(
            validate(&s, "odin.nope", None, p()),
            Err(InvalidEvent::Subject(_))
        ));
        assert!(matches!(
            validate(&s, "odin.token.BTC.price", None, Bytes::from_static(b"{}")),
            Err(InvalidEvent::Payload(_))
        ));
        assert!(matches!(
            validate(
                &s,
                "odin.token.BTC.price",
                None,
                Bytes::from_static(b"\xff")
            ),
            Err(InvalidEvent::Utf8)
        ));
    }

    #[test]
    fn a_repeat_is_a_duplicate_in_a_window_and_fresh_without_one() {
        let s = Subjects::default();
        let mut window = DedupWindow::new(Duration::from_secs(60), 100);
        let p = || Bytes::from_static(PRICE.as_bytes());
        let subject = "odin.token.BTC.price";
        let mut judged = || judge(&s, None, Some(&mut window), subject, None, p());
        assert!(matches!(judged(), Judged::Fresh(_)));
        assert!(matches!(judged(), Judged::Duplicate));
        assert!(matches!(
            judge(&s, None, None, subject, None, p()),
            Judged::Fresh(_)
        ));
        assert!(matches!(
            judge(&s, None, None, subject, None, Bytes::from_static(b"{}")),
            Judged::Invalid(InvalidEvent::Payload(_))
        ));
    }
}
