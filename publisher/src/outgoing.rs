//! One NATS message ready to send: subject, payload bytes and nonce, plus
//! what the counters need to know about it.
//!
//! Sources (simulation, replay) build these once; the runner records them,
//! counts them and hands them to the sink without looking inside the JSON.

use async_nats::Subject;
use bytes::Bytes;
use odin_protocol::message::PriceSource;
use odin_protocol::{Event, Nonce};
use serde::{Deserialize, Serialize};

/// The five event types of `PROTOCOL.md` §1, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `price_update`
    PriceUpdate,
    /// `volume_update`
    VolumeUpdate,
    /// `trade_executed`
    TradeExecuted,
    /// `batch_update`
    BatchUpdate,
    /// `market_stats`
    MarketStats,
}

impl EventKind {
    /// The kind of `event`.
    pub fn of(event: &Event) -> Self {
        match event {
            Event::PriceUpdate(_) => EventKind::PriceUpdate,
            Event::VolumeUpdate(_) => EventKind::VolumeUpdate,
            Event::TradeExecuted(_) => EventKind::TradeExecuted,
            Event::BatchUpdate(_) => EventKind::BatchUpdate,
            Event::MarketStats(_) => EventKind::MarketStats,
        }
    }
}

/// Counts per event kind, keyed by the wire `type` in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// `price_update` events.
    pub price_update: u64,
    /// `volume_update` events.
    pub volume_update: u64,
    /// `trade_executed` events.
    pub trade_executed: u64,
    /// `batch_update` events.
    pub batch_update: u64,
    /// `market_stats` events.
    pub market_stats: u64,
}

impl KindCounts {
    /// Counts one event of `kind`.
    pub fn add(&mut self, kind: EventKind) {
        *self.get_mut(kind) += 1;
    }

    /// The count of `kind`.
    pub fn get(&self, kind: EventKind) -> u64 {
        match kind {
            EventKind::PriceUpdate => self.price_update,
            EventKind::VolumeUpdate => self.volume_update,
            EventKind::TradeExecuted => self.trade_executed,
            EventKind::BatchUpdate => self.batch_update,
            EventKind::MarketStats => self.market_stats,
        }
    }

    fn get_mut(&mut self, kind: EventKind) -> &mut u64 {
        match kind {
            EventKind::PriceUpdate => &mut self.price_update,
            EventKind::VolumeUpdate => &mut self.volume_update,
            EventKind::TradeExecuted => &mut self.trade_executed,
            EventKind::BatchUpdate => &mut self.batch_update,
            EventKind::MarketStats => &mut self.market_stats,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.price_update
            + self.volume_update
            + self.trade_executed
            + self.batch_update
            + self.market_stats
    }
}

/// `event` as JSON: the same bytes as [`Event::to_json`] (same serde
/// serialiser), written into a buffer sized for a typical event so the hot
/// path does not grow it several times; with `scheduled_at`, the optional
/// `scheduledAt` field of `PROTOCOL.md` §1 comes last.
pub fn encode(event: &Event, scheduled_at: Option<f64>) -> Bytes {
    let capacity = match event {
        Event::BatchUpdate(b) => 128 + 80 * b.updates.len(),
        _ => 320,
    };
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, event).expect("events always serialize");
    if let Some(at) = scheduled_at.filter(|t| t.is_finite()) {
        // An event serialises as one JSON object: reopen it for one more
        // field (the protocol types know nothing of the schedule).
        debug_assert_eq!(buf.last(), Some(&b'}'));
        buf.pop();
        buf.extend_from_slice(b",\"scheduledAt\":");
        serde_json::to_writer(&mut buf, &at).expect("a finite number serialises");
        buf.push(b'}');
    }
    Bytes::from(buf)
}

/// A message ready for NATS.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Which event it carries.
    pub kind: EventKind,
    /// A `price_update` caused by a trade: what `--rate` paces and the
    /// achieved rate counts.
    pub trade_price: bool,
    /// Index of the event's token in the source's token list, for per-token
    /// counts; `None` for batch and market events.
    pub token: Option<u32>,
    /// The NATS subject (`PROTOCOL.md` §1), built from a valid token id.
    pub subject: Subject,
    /// The body's nonce, also sent as the `Nats-Msg-Id` header.
    pub nonce: Nonce,
    /// The body's `timestamp` (protocol milliseconds).
    pub timestamp: f64,
    /// The JSON body, exactly as clients will receive it.
    pub payload: Bytes,
    /// A deliberate re-publication of the previous message with the same
    /// nonce (`--dup-ratio`), not a new event.
    pub duplicate: bool,
}

/// What the counters need to know about a message, kept after the message
/// itself has been handed to the sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    /// See [`Outgoing::kind`].
    pub kind: EventKind,
    /// See [`Outgoing::trade_price`].
    pub trade_price: bool,
    /// See [`Outgoing::token`].
    pub token: Option<u32>,
    /// See [`Outgoing::duplicate`].
    pub duplicate: bool,
    /// See [`Outgoing::timestamp`].
    pub timestamp: f64,
}

impl Outgoing {
    /// The counters' view of this message.
    pub fn meta(&self) -> Meta {
        Meta {
            kind: self.kind,
            trade_price: self.trade_price,
            token: self.token,
            duplicate: self.duplicate,
            timestamp: self.timestamp,
        }
    }

    /// The message of `event` on `subject`, due at `scheduled_at` (ms since
    /// the Unix epoch) when a schedule paces it.
    pub fn new(
        event: &Event,
        token: Option<u32>,
        subject: Subject,
        scheduled_at: Option<f64>,
    ) -> Self {
        let trade_price = matches!(event, Event::PriceUpdate(e) if e.source == PriceSource::Trade);
        Self {
            kind: EventKind::of(event),
            trade_price,
            token,
            subject,
            nonce: event.nonce().clone(),
            timestamp: event.timestamp(),
            payload: encode(event, scheduled_at),
            duplicate: false,
        }
    }

    /// The same bytes and nonce again, marked as a duplicate.
    pub fn to_duplicate(&self) -> Self {
        Self {
            duplicate: true,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimParams, Simulation};
    use crate::source::Source;
    use crate::stamp::FixedStamper;

    #[test]
    fn encode_matches_the_protocol_serialisation() {
        let params = SimParams {
            tokens: 3,
            rate: 10.0,
            pacing: crate::schedule::Pacing::Uniform,
            tick: std::time::Duration::from_millis(300),
            seed: 1,
            dup_ratio: 0.0,
            skew: 1.0,
            volatility: 1.0,
            batch_size: 2,
        };
        let mut sim = Simulation::new(&params, &odin_protocol::Subjects::default(), 1).unwrap();
        let mut out = Vec::new();
        for _ in 0..20 {
            sim.step(&mut FixedStamper::new(0.0, 1.0, 1), &mut out)
                .unwrap();
        }
        for m in out {
            let event: Event = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(m.payload, event.to_json().as_bytes());
        }
    }

    #[test]
    fn a_scheduled_event_carries_scheduled_at_last_and_parses_as_the_same_event() {
        let mut stamper = FixedStamper::new(1_764_288_000_000.0, 1.0, 1);
        let (timestamp, nonce) = crate::stamp::Stamper::stamp(&mut stamper);
        let event = Event::VolumeUpdate(odin_protocol::message::VolumeUpdate {
            token_id: odin_protocol::TokenId::parse("tok-1").unwrap(),
            volume_24h: 10.5,
            timestamp,
            nonce,
        });
        let plain = encode(&event, None);
        let scheduled = encode(&event, Some(1_764_287_999_990.25));
        let text = std::str::from_utf8(&scheduled).unwrap();
        assert!(
            text.ends_with(r#","scheduledAt":1764287999990.25}"#),
            "{text}"
        );
        assert_eq!(&scheduled[..plain.len() - 1], &plain[..plain.len() - 1]);
        // Clients that know nothing of the field read the same event.
        let back: Event = serde_json::from_slice(&scheduled).unwrap();
        assert_eq!(back, event);
        let fields: serde_json::Value = serde_json::from_slice(&scheduled).unwrap();
        assert_eq!(fields["scheduledAt"], 1_764_287_999_990.25);
        // Not a number JSON can hold: left out.
        assert_eq!(encode(&event, Some(f64::NAN)), plain);
    }
}
