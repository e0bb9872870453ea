//! A cheap, borrowed view of a server frame: just what the client loop needs
//! (type, nonce, timestamp, token, price), parsed without allocating.
//!
//! The load tests push tens of thousands of frames per second through the
//! reference client, so the hot path does not build a full
//! [`ServerMessage`]; a test that wants one calls [`MessageView::decode`].

use std::borrow::Cow;

use odin_protocol::ServerMessage;
use odin_protocol::ids::validate_nonce;
use serde::Deserialize;

/// The `type` of a server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// `connection_established`
    ConnectionEstablished,
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
    /// `heartbeat`
    Heartbeat,
    /// `subscribed`
    Subscribed,
    /// `unsubscribed`
    Unsubscribed,
    /// `pong`
    Pong,
    /// `refreshed` (version 2)
    Refreshed,
    /// `error`
    Error,
    /// `reconnect` (version 2)
    Reconnect,
    /// A type this client does not know (a newer protocol, or a bug).
    #[serde(other)]
    Unknown,
}

impl MessageKind {
    /// Whether this is one of the five NATS event kinds: the messages the
    /// application receives and de-duplication applies to.
    pub fn is_event(self) -> bool {
        matches!(
            self,
            MessageKind::PriceUpdate
                | MessageKind::VolumeUpdate
                | MessageKind::TradeExecuted
                | MessageKind::BatchUpdate
                | MessageKind::MarketStats
        )
    }
}

/// Why a frame is not a server message.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Not a JSON object with a string `type`, or a field of the wrong type.
    #[error("malformed server message: {0}")]
    Json(#[from] serde_json::Error),
    /// The `nonce` every server message carries is missing or invalid.
    #[error("server message without a valid nonce")]
    Nonce,
    /// The `timestamp` every server message carries is missing.
    #[error("server message without a timestamp")]
    Timestamp,
}

/// The fields read from every frame; unknown fields are skipped unparsed.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type")]
    kind: MessageKind,
    #[serde(borrow, default)]
    nonce: Option<Text<'a>>,
    #[serde(default)]
    timestamp: Option<f64>,
    #[serde(rename = "tokenId", borrow, default)]
    token_id: Option<Text<'a>>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(rename = "scheduledAt", default)]
    scheduled_at: Option<f64>,
}

/// A string borrowed from the frame unless it had escapes.
///
/// serde only borrows a `Cow<str>` that is a field's whole type; inside an
/// `Option` it always allocates. This wrapper's own visitor borrows.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(Visitor).map(Text)
    }
}

/// A server frame, parsed just enough; borrows the frame's text.
#[derive(Debug, Clone)]
pub struct MessageView<'a> {
    kind: MessageKind,
    /// Borrowed unless the JSON string had escapes.
    nonce: Cow<'a, str>,
    timestamp: f64,
    token_id: Option<Cow<'a, str>>,
    price: Option<f64>,
    scheduled_at: Option<f64>,
    raw: &'a str,
}

impl<'a> MessageView<'a> {
    /// Reads the view out of a text frame.
    pub fn parse(raw: &'a str) -> Result<Self, ViewError> {
        let f: Fields<'a> = serde_json::from_str(raw)?;
        let nonce = f.nonce.ok_or(ViewError::Nonce)?.0;
        validate_nonce(&nonce).map_err(|_| ViewError::Nonce)?;
        Ok(Self {
            kind: f.kind,
            nonce,
            timestamp: f.timestamp.ok_or(ViewError::Timestamp)?,
            token_id: f.token_id.map(|t| t.0),
            price: f.price,
            scheduled_at: f.scheduled_at,
            raw,
        })
    }

    /// The message type.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The de-duplication key.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Milliseconds since the Unix epoch when the event was created.
    pub fn timestamp(&self) -> f64 {
        self.timestamp
    }

    /// `tokenId`, for per-token messages.
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// `price`, for price updates and trades.
    pub fn price(&self) -> Option<f64> {
        self.price
    }

    /// `scheduledAt` (`PROTOCOL.md` §1): when a paced publisher meant to
    /// send the event, ms since the Unix epoch; `None` from publishers that
    /// do not say.
    pub fn scheduled_at(&self) -> Option<f64> {
        self.scheduled_at
    }

    /// The whole frame text, byte for byte as the server sent it.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Microseconds from `timestamp` to now (negative if the sender's clock
    /// is ahead).
    pub fn latency_us(&self) -> i64 {
        (odin_protocol::time::age_millis(self.timestamp) * 1000.0).round() as i64
    }

    /// The full, typed message (allocates; for tests, not the hot path).
    pub fn decode(&self) -> Result<ServerMessage, serde_json::Error> {
        serde_json::from_str(self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scheduled_at_when_the_publisher_sends_it() {
        let raw = r#"{"type":"trade_executed","tokenId":"A","timestamp":1000.5,"nonce":"n1","scheduledAt":990.25}"#;
        assert_eq!(
            MessageView::parse(raw).unwrap().scheduled_at(),
            Some(990.25)
        );
        let raw = r#"{"type":"trade_executed","tokenId":"A","timestamp":1000.5,"nonce":"n1"}"#;
        assert_eq!(MessageView::parse(raw).unwrap().scheduled_at(), None);
    }

    #[test]
    fn reads_the_hot_fields_and_skips_the_rest() {
        let raw = r#"{"type":"price_update","tokenId":"BTC","price":1.5,"source":"trade",
            "previousPrice":1.4,"timestamp":1764288000123.456,"nonce":"n-1"}"#;
        let v = MessageView::parse(raw).unwrap();
        assert_eq!(v.kind(), MessageKind::PriceUpdate);
        assert!(v.kind().is_event());
        assert_eq!(v.nonce(), "n-1");
        assert!(matches!(v.nonce, Cow::Borrowed(_)), "the nonce was copied");
        assert!(
            matches!(v.token_id, Some(Cow::Borrowed(_))),
            "the token id was copied"
        );
        assert_eq!(v.token_id(), Some("BTC"));
        assert_eq!(v.price(), Some(1.5));
        assert_eq!(v.timestamp(), 1764288000123.456);
        assert!(matches!(v.decode().unwrap(), ServerMessage::PriceUpdate(_)));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let raw = r#"{"type":"trade_executed","tokenId":"A\u0042","timestamp":1,"nonce":"n\"1"}"#;
        let v = MessageView::parse(raw).unwrap();
        assert_eq!((v.nonce(), v.token_id()), ("n\"1", Some("AB")));
    }

    #[test]
    fn batch_updates_skip_their_entries() {
        let raw = r#"{"type":"batch_update","source":"scheduler","updates":[{"tokenId":"A","price":1}],"timestamp":1,"nonce":"b"}"#;
        let v = MessageView::parse(raw).unwrap();
        assert_eq!((v.kind(), v.token_id()), (MessageKind::BatchUpdate, None));
    }

    #[test]
    fn refuses_frames_without_nonce_or_timestamp() {
        for raw in [
            r#"{"type":"heartbeat","serverId":"s","timestamp":1}"#,
            r#"{"type":"heartbeat","serverId":"s","timestamp":1,"nonce":""}"#,
            r#"{"type":"heartbeat","serverId":"s","nonce":"x"}"#,
            r#"{"nonce":"x","timestamp":1}"#,
            "[]",
            "nope",
        ] {
            assert!(MessageView::parse(raw).is_err(), "{raw}");
        }
        let unknown = MessageView::parse(r#"{"type":"dance","timestamp":1,"nonce":"x"}"#);
        assert_eq!(unknown.unwrap().kind(), MessageKind::Unknown);
    }
}
