//! A NATS message through the ingest's validation
//! (`odin_server::event::validate_live`: subject, UTF-8, the `Event`
//! schema, subject/type/token agreement, the value ranges of `Event::out_of_range`,
//! and the `EventLimits` size and timestamp window).
//!
//! Input: a payload starting with `{` is validated on the subject its own
//! `type` and `tokenId` name (so most inputs get past the subject check);
//! anything else is read as `<subject>[ <Nats-Msg-Id>]\n<payload>`.
//!
//! No input may panic. An accepted event is forwarded byte for byte, matches
//! its subject, has every value in the range PROTOCOL.md §1 gives (checked
//! here from the document, not with the code under test), lies in the
//! window and has the de-duplication key the protocol names; its
//! re-serialization is a valid event too; and `validate_live` agrees with
//! `validate` plus the limits.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use odin_fuzz::{is_nonce, json_close};
use odin_protocol::{Event, Subjects};
use odin_server::config::EventLimits;
use odin_server::event::{InvalidEvent, validate, validate_live};

/// "Now" for the window: the time of `fixtures/recordings/small-market.jsonl`,
/// so the seeds made from it are live.
const NOW_MS: f64 = 1_795_832_705_600.0;

fuzz_target!(|data: &[u8]| {
    let subjects = Subjects::default();
    let (subject, msg_id, payload) = if data.first() == Some(&b'{') {
        let subject = match serde_json::from_slice::<Event>(data) {
            Ok(event) => event.subject(&subjects),
            Err(_) => "odin.token.BTC.price".to_owned(),
        };
        (subject, None, data)
    } else {
        let Some(newline) = data.iter().position(|&b| b == b'\n') else {
            return;
        };
        // NATS subjects and header values are text.
        let Ok(head) = std::str::from_utf8(&data[..newline]) else {
            return;
        };
        let (subject, msg_id) = match head.split_once(' ') {
            Some((subject, id)) => (subject.to_owned(), Some(id)),
            None => (head.to_owned(), None),
        };
        (subject, msg_id, &data[newline + 1..])
    };
    check(&subjects, &subject, msg_id, payload);
});

fn check(subjects: &Subjects, subject: &str, msg_id: Option<&str>, payload: &[u8]) {
    let limits = EventLimits::default();
    let bytes = Bytes::copy_from_slice(payload);
    let live = validate_live(subjects, &limits, subject, msg_id, bytes.clone(), NOW_MS);
    let plain = validate(subjects, subject, msg_id, bytes);

    // The live check is the plain one plus size and window.
    let in_limits =
        |ts: f64| payload.len() <= limits.max_bytes && limits.off_by_ms(ts, NOW_MS).is_none();
    match (&live, &plain) {
        (Ok(l), Ok(p)) => {
            assert_eq!(l.event, p.event);
            assert_eq!(l.dedup_key, p.dedup_key);
        }
        (Err(InvalidEvent::TooLarge(n)), _) => {
            assert_eq!(*n, payload.len());
            assert!(*n > limits.max_bytes);
        }
        (
            Err(InvalidEvent::Untimely {
                timestamp,
                off_by_ms,
            }),
            Ok(p),
        ) => {
            assert_eq!(*timestamp, p.event.timestamp());
            assert!(*off_by_ms > 0.0, "off by {off_by_ms}");
            assert!(!in_limits(*timestamp));
        }
        (Err(l), Err(p)) => assert_eq!(l, p),
        (Ok(_), Err(e)) => panic!("live accepted what validate refused: {e}"),
        (Err(e), Ok(p)) => panic!("live refused ({e}) what validate accepted: {:?}", p.event),
    }
    if let Ok(p) = &plain {
        assert_eq!(live.is_ok(), in_limits(p.event.timestamp()));
    }

    let Ok(valid) = live else {
        return;
    };
    let event = &valid.event;
    // Forwarded unchanged (PROTOCOL.md §1).
    assert_eq!(valid.text.as_bytes(), payload);
    // On the subject of its type and token.
    let kind = subjects
        .parse(subject)
        .expect("an accepted event's subject parses");
    assert_eq!(kind.event_type(), event.type_name());
    assert_eq!(kind.token_id(), event.token_id().map(|t| t.as_str()));
    assert_eq!(event.subject(subjects), subject);
    // Values in range.
    in_range(event);
    let ts = event.timestamp();
    assert!(
        (NOW_MS - 3_600_000.0..=NOW_MS + 60_000.0).contains(&ts),
        "timestamp {ts}"
    );
    // The header wins when it is a valid nonce, else the body's nonce.
    match msg_id.filter(|id| is_nonce(id)) {
        Some(id) => assert_eq!(valid.dedup_key, id),
        None => assert_eq!(valid.dedup_key, event.nonce().as_str()),
    }
    assert!(is_nonce(&valid.dedup_key));

    // What a publisher would send for this event is the same event (floats
    // to within an ulp) and valid too; only a subnormal value may parse back
    // as zero, out of range.
    let json = event.to_json();
    let again: Event = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("re-serialized {json} does not parse: {e}"));
    let a = serde_json::to_value(event).unwrap();
    let b = serde_json::to_value(&again).unwrap();
    assert!(json_close(&a, &b), "{a} became {b}");
    match validate(subjects, subject, None, Bytes::from(json.clone())) {
        Ok(v) => assert_eq!(v.event, again),
        Err(InvalidEvent::OutOfRange(_)) if has_subnormal(&a) => {}
        Err(e) => panic!("re-serialized {json} refused: {e}"),
    }
}

/// Whether any number in `v` is a subnormal float.
fn has_subnormal(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(f64::is_subnormal),
        serde_json::Value::Array(a) => a.iter().any(has_subnormal),
        serde_json::Value::Object(o) => o.values().any(has_subnormal),
        _ => false,
    }
}

/// PROTOCOL.md §1: timestamp and prices above zero, amounts and volumes not
/// below; JSON has no NaN or infinity.
fn in_range(event: &Event) {
    let positive = |what: &str, v: f64| assert!(v.is_finite() && v > 0.0, "{what} {v}");
    let non_negative = |what: &str, v: f64| assert!(v.is_finite() && v >= 0.0, "{what} {v}");
    positive("timestamp", event.timestamp());
    match event {
        Event::PriceUpdate(e) => {
            positive("price", e.price);
            if let Some(p) = e.previous_price {
                positive("previousPrice", p);
            }
            if let Some(c) = e.change_24h {
                assert!(c.is_finite());
            }
        }
        Event::VolumeUpdate(e) => non_negative("volume24h", e.volume_24h),
        Event::TradeExecuted(e) => {
            positive("price", e.price);
            non_negative("amount", e.amount);
        }
        Event::BatchUpdate(e) => {
            for u in &e.updates {
                positive("updates[].price", u.price);
                if let Some(v) = u.volume_24h {
                    non_negative("updates[].volume24h", v);
                }
            }
        }
        Event::MarketStats(e) => non_negative("totalVolume24h", e.total_volume_24h),
    }
}
