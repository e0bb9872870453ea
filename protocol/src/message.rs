//! Every message of `PROTOCOL.md` §3, as serde types.
//!
//! Server-to-client messages and NATS events share one set of structs: an
//! event published to NATS is byte-for-byte what a client receives, so
//! [`Event`] is the subset of [`ServerMessage`] that travels over NATS.
//!
//! Over 600 lines: it is §3's tables as types, every message of both
//! directions side by side, so the whole wire vocabulary reads in one place.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Nonce, TokenId};
pub use crate::reconnect::{Reconnect, ReconnectReason};
use crate::subject::Subjects;

/// Where a price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// A trade moved the price.
    Trade,
    /// The periodic scheduler published it.
    Scheduler,
}

/// The only source a `batch_update` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchSource {
    /// The periodic scheduler published it.
    Scheduler,
}

/// Side of a trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The taker bought.
    Buy,
    /// The taker sold.
    Sell,
}

/// `price_update`: a token's new price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PriceUpdate {
    /// The token.
    pub token_id: TokenId,
    /// The new price.
    pub price: f64,
    /// What caused it.
    pub source: PriceSource,
    /// The price before this update, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_price: Option<f64>,
    /// Change over the last 24 hours, in percent.
    #[serde(default, rename = "change24h", skip_serializing_if = "Option::is_none")]
    pub change_24h: Option<f64>,
    /// Milliseconds since the Unix epoch when the event was created.
    pub timestamp: f64,
    /// De-duplication key.
    pub nonce: Nonce,
}

/// `volume_update`: a token's 24-hour volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeUpdate {
    /// The token.
    pub token_id: TokenId,
    /// Traded volume over the last 24 hours.
    #[serde(rename = "volume24h")]
    pub volume_24h: f64,
    /// Milliseconds since the Unix epoch when the event was created.
    pub timestamp: f64,
    /// De-duplication key.
    pub nonce: Nonce,
}

/// `trade_executed`: one trade of a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TradeExecuted {
    /// The token.
    pub token_id: TokenId,
    /// The trade's own id.
    pub trade_id: String,
    /// Buy or sell.
    pub side: Side,
    /// Execution price.
    pub price: f64,
    /// Amount traded.
    pub amount: f64,
    /// Milliseconds since the Unix epoch when the event was created.
    pub timestamp: f64,
    /// De-duplication key.
    pub nonce: Nonce,
}

/// One token's entry in a `batch_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchEntry {
    /// The token.
    pub token_id: TokenId,
    /// Its price.
    pub price: f64,
    /// Its 24-hour volume, when known.
    #[serde(default, rename = "volume24h", skip_serializing_if = "Option::is_none")]
    pub volume_24h: Option<f64>,
}

/// `batch_update`: the prices of many tokens at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchUpdate {
    /// Always the scheduler.
    pub source: BatchSource,
    /// One entry per token.
    pub updates: Vec<BatchEntry>,
    /// Milliseconds since the Unix epoch when the event was created.
    pub timestamp: f64,
    /// De-duplication key.
    pub nonce: Nonce,
}

/// `market_stats`: market-wide figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketStats {
    /// Volume of all tokens over 24 hours.
    #[serde(rename = "totalVolume24h")]
    pub total_volume_24h: f64,
    /// Number of trades over 24 hours.
    #[serde(rename = "totalTrades24h", deserialize_with = "count")]
    pub total_trades_24h: u64,
    /// Number of tokens with activity.
    #[serde(deserialize_with = "count")]
    pub active_tokens: u64,
    /// Milliseconds since the Unix epoch when the event was created.
    pub timestamp: f64,
    /// De-duplication key.
    pub nonce: Nonce,
}

/// Reads a count that the protocol types as "number": any JSON number with an
/// integral, non-negative value (so a publisher writing `42.0` is accepted).
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => Ok(f as u64),
        _ => Err(serde::de::Error::custom(format!(
            "expected a non-negative whole number, got {n}"
        ))),
    }
}

/// `connection_established`: the first message on every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionEstablished {
    /// The server's id for this connection.
    pub client_id: String,
    /// The server instance.
    pub server_id: String,
    /// The version this connection speaks: 1, or 2 when the client asked
    /// for it with `?protocol=2` (see [`crate::ProtocolVersion`]).
    pub protocol_version: u32,
    /// How often the server sends `heartbeat` and a WebSocket ping.
    pub heartbeat_interval_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}

/// `heartbeat`: sent every heartbeat interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The server instance.
    pub server_id: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}

/// `subscribed` / `unsubscribed`: the answer to a channel request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelsAck {
    /// The channels the request changed or confirmed.
    pub channels: Vec<String>,
    /// The request's `id`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}

/// `pong`: the answer to a `ping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// The request's `id`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}

/// `refreshed`: the answer to a valid `refresh` (version 2); the
/// connection now ends at `exp` instead of the old token's expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refreshed {
    /// The new token's `exp`, whole seconds since the Unix epoch.
    pub exp: u64,
    /// The request's `id`, echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}

/// Machine-readable code of an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, unknown `type`, or a missing or wrongly typed field.
    InvalidMessage,
    /// A channel that matches no pattern, or an invalid token id.
    InvalidChannel,
    /// The per-connection channel limit was reached.
    TooManyChannels,
    /// The client sent more messages than the rate limit allows.
    RateLimited,
    /// A `refresh` token that is malformed, badly signed, of the wrong
    /// algorithm or key, or for another `sub` (version 2).
    AuthInvalid,
    /// A `refresh` token whose `exp` has passed (version 2).
    AuthExpired,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManyChannels => "too_many_channels",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::AuthInvalid => "auth_invalid",
            ErrorCode::AuthExpired => "auth_expired",
        }
    }
}

/// `error`: a request could not be (fully) served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessage {
    /// What kind of error.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// The request's `id`, echoed when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The channel an error is about, verbatim as the client sent it
    /// (`invalid_channel`: the refused channel; `too_many_channels`: the
    /// first channel the limit refused). Absent for other errors. Its size
    /// is bounded by the client message limit it came in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}

/// Every message a server sends to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// See [`ConnectionEstablished`].
    ConnectionEstablished(ConnectionEstablished),
    /// See [`PriceUpdate`].
    PriceUpdate(PriceUpdate),
    /// See [`VolumeUpdate`].
    VolumeUpdate(VolumeUpdate),
    /// See [`TradeExecuted`].
    TradeExecuted(TradeExecuted),
    /// See [`BatchUpdate`].
    BatchUpdate(BatchUpdate),
    /// See [`MarketStats`].
    MarketStats(MarketStats),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// Answer to `subscribe`.
    Subscribed(ChannelsAck),
    /// Answer to `unsubscribe`.
    Unsubscribed(ChannelsAck),
    /// Answer to `ping`.
    Pong(Pong),
    /// Answer to a valid `refresh`.
    Refreshed(Refreshed),
    /// See [`ErrorMessage`].
    Error(ErrorMessage),
    /// See [`Reconnect`] (version 2 only).
    Reconnect(Reconnect),
}

impl ServerMessage {
    /// The message as one JSON text, ready for a text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }

    /// The `nonce` every server message carries.
    pub fn nonce(&self) -> &Nonce {
        match self {
            ServerMessage::ConnectionEstablished(m) => &m.nonce,
            ServerMessage::PriceUpdate(m) => &m.nonce,
            ServerMessage::VolumeUpdate(m) => &m.nonce,
            ServerMessage::TradeExecuted(m) => &m.nonce,
            ServerMessage::BatchUpdate(m) => &m.nonce,
            ServerMessage::MarketStats(m) => &m.nonce,
            ServerMessage::Heartbeat(m) => &m.nonce,
            ServerMessage::Subscribed(m) | ServerMessage::Unsubscribed(m) => &m.nonce,
            ServerMessage::Pong(m) => &m.nonce,
            ServerMessage::Refreshed(m) => &m.nonce,
            ServerMessage::Error(m) => &m.nonce,
            ServerMessage::Reconnect(m) => &m.nonce,
        }
    }

    /// The `timestamp` every server message carries.
    pub fn timestamp(&self) -> f64 {
        match self {
            ServerMessage::ConnectionEstablished(m) => m.timestamp,
            ServerMessage::PriceUpdate(m) => m.timestamp,
            ServerMessage::VolumeUpdate(m) => m.timestamp,
            ServerMessage::TradeExecuted(m) => m.timestamp,
            ServerMessage::BatchUpdate(m) => m.timestamp,
            ServerMessage::MarketStats(m) => m.timestamp,
            ServerMessage::Heartbeat(m) => m.timestamp,
            ServerMessage::Subscribed(m) | ServerMessage::Unsubscribed(m) => m.timestamp,
            ServerMessage::Pong(m) => m.timestamp,
            ServerMessage::Refreshed(m) => m.timestamp,
            ServerMessage::Error(m) => m.timestamp,
            ServerMessage::Reconnect(m) => m.timestamp,
        }
    }

    /// The event this message carries, if it is one of the NATS event kinds.
    pub fn into_event(self) -> Option<Event> {
        Some(match self {
            ServerMessage::PriceUpdate(m) => Event::PriceUpdate(m),
            ServerMessage::VolumeUpdate(m) => Event::VolumeUpdate(m),
            ServerMessage::TradeExecuted(m) => Event::TradeExecuted(m),
            ServerMessage::BatchUpdate(m) => Event::BatchUpdate(m),
            ServerMessage::MarketStats(m) => Event::MarketStats(m),
            _ => return None,
        })
    }
}

/// The messages published to NATS (`PROTOCOL.md` §1): the payload on NATS is
/// exactly the JSON a client receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// See [`PriceUpdate`].
    PriceUpdate(PriceUpdate),
    /// See [`VolumeUpdate`].
    VolumeUpdate(VolumeUpdate),
    /// See [`TradeExecuted`].
    TradeExecuted(TradeExecuted),
    /// See [`BatchUpdate`].
    BatchUpdate(BatchUpdate),
    /// See [`MarketStats`].
    MarketStats(MarketStats),
}

impl Event {
    /// The event's de-duplication key.
    pub fn nonce(&self) -> &Nonce {
        match self {
            Event::PriceUpdate(e) => &e.nonce,
            Event::VolumeUpdate(e) => &e.nonce,
            Event::TradeExecuted(e) => &e.nonce,
            Event::BatchUpdate(e) => &e.nonce,
            Event::MarketStats(e) => &e.nonce,
        }
    }

    /// When the event was created, in milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> f64 {
        match self {
            Event::PriceUpdate(e) => e.timestamp,
            Event::VolumeUpdate(e) => e.timestamp,
            Event::TradeExecuted(e) => e.timestamp,
            Event::BatchUpdate(e) => e.timestamp,
            Event::MarketStats(e) => e.timestamp,
        }
    }

    /// The event's `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::PriceUpdate(_) => "price_update",
            Event::VolumeUpdate(_) => "volume_update",
            Event::TradeExecuted(_) => "trade_executed",
            Event::BatchUpdate(_) => "batch_update",
            Event::MarketStats(_) => "market_stats",
        }
    }

    /// The token a per-token event belongs to.
    pub fn token_id(&self) -> Option<&TokenId> {
        match self {
            Event::PriceUpdate(e) => Some(&e.token_id),
            Event::VolumeUpdate(e) => Some(&e.token_id),
            Event::TradeExecuted(e) => Some(&e.token_id),
            Event::BatchUpdate(_) | Event::MarketStats(_) => None,
        }
    }

    /// The NATS subject this event is published on.
    pub fn subject(&self, subjects: &Subjects) -> String {
        match self {
            Event::PriceUpdate(e) => subjects.price(&e.token_id),
            Event::VolumeUpdate(e) => subjects.volume(&e.token_id),
            Event::TradeExecuted(e) => subjects.trade(&e.token_id),
            Event::BatchUpdate(_) => subjects.batch(),
            Event::MarketStats(_) => subjects.market(),
        }
    }

    /// The event as one JSON text: the NATS payload and the client frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

impl From<Event> for ServerMessage {
    fn from(e: Event) -> Self {
        match e {
            Event::PriceUpdate(m) => ServerMessage::PriceUpdate(m),
            Event::VolumeUpdate(m) => ServerMessage::VolumeUpdate(m),
            Event::TradeExecuted(m) => ServerMessage::TradeExecuted(m),
            Event::BatchUpdate(m) => ServerMessage::BatchUpdate(m),
            Event::MarketStats(m) => ServerMessage::MarketStats(m),
        }
    }
}

/// `subscribe` / `unsubscribe`: a list of channel strings.
///
/// Channels stay strings here: an invalid channel is not an invalid message
/// (it gets `invalid_channel` while the valid ones still subscribe), so they
/// are parsed one by one with [`crate::Channel::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChannelRequest {
    /// The channels, e.g. `["token.BTC", "batch"]`.
    pub channels: Vec<String>,
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `ping`: asks for a `pong`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PingRequest {
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `refresh`: a fresh token for the open connection (version 2), so a
/// short-lived token need not end it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefreshRequest {
    /// The new JWT; checked like the one given at connect, same `sub`.
    pub token: String,
    /// Echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// The token is a credential: it is never printed.
impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("token", &"<redacted>")
            .field("id", &self.id)
            .finish()
    }
}

/// Every message a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Subscribe to channels.
    Subscribe(ChannelRequest),
    /// Unsubscribe from channels.
    Unsubscribe(ChannelRequest),
    /// Ask for a `pong`.
    Ping(PingRequest),
    /// Move the connection's expiry with a fresh token.
    Refresh(RefreshRequest),
}

impl ClientMessage {
    /// Parses one client text frame. Only a JSON object is a message
    /// (`PROTOCOL.md` §3): serde's tagged enums would also read an array
    /// with the tag first (`["ping"]`), which this refuses.
    pub fn parse(text: &str) -> Result<ClientMessage, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return Err(serde::de::Error::custom(
                "a client message is one JSON object",
            ));
        }
        serde_json::from_str(text)
    }

    /// The request's `id`, if it has one.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientMessage::Subscribe(r) | ClientMessage::Unsubscribe(r) => r.id.as_deref(),
            ClientMessage::Ping(r) => r.id.as_deref(),
            ClientMessage::Refresh(r) => r.id.as_deref(),
        }
    }

    /// The message as one JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages always serialize")
    }
}

/// Code in the JSON body of a refused upgrade (`PROTOCOL.md` §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthErrorCode {
    /// No token was given.
    AuthMissing,
    /// The token is malformed, badly signed, of the wrong algorithm, or lacks
    /// `sub` or `exp` (or fails a configured `aud`/`iss`).
    AuthInvalid,
    /// The token's `exp` has passed.
    AuthExpired,
}

/// JSON body of a `401` answer to the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuthErrorBody {
    /// Human-readable reason.
    pub error: String,
    /// Machine-readable reason.
    pub code: AuthErrorCode,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn price_update_has_the_documented_shape() {
        let e = Event::PriceUpdate(PriceUpdate {
            token_id: TokenId::parse("BTC").unwrap(),
            price: 1.5,
            source: PriceSource::Trade,
            previous_price: Some(1.4),
            change_24h: Some(-2.0),
            timestamp: 1764288000123.456,
            nonce: Nonce::parse("n1").unwrap(),
        });
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"price_update","tokenId":"BTC","price":1.5,"source":"trade",
                   "previousPrice":1.4,"change24h":-2.0,"timestamp":1764288000123.456,"nonce":"n1"})
        );
    }

    #[test]
    fn client_messages_parse_and_refuse() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"subscribe","channels":["token.A"],"id":"7"}"#)
                .unwrap();
        assert_eq!(m.id(), Some("7"));
        for bad in [
            r#"{"type":"subscribe","channels":[1]}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"dance"}"#,
            r#"{"channels":[]}"#,
            r#"{"type":"ping","id":5}"#,
            "[]",
            "nope",
            r#"["ping"]"#,
            r#"["subscribe",["token.BTC"],"7"]"#,
        ] {
            assert!(ClientMessage::parse(bad).is_err(), "{bad}");
        }
        assert!(ClientMessage::parse(r#" {"type":"ping"}"#).is_ok());
        let refresh = ClientMessage::parse(r#"{"type":"refresh","token":"a.b.c","id":"r"}"#);
        assert_eq!(refresh.unwrap().id(), Some("r"));
        assert!(ClientMessage::parse(r#"{"type":"refresh"}"#).is_err());
        assert!(ClientMessage::parse(r#"{"type":"refresh","token":5}"#).is_err());
    }

    #[test]
    fn events_refuse_bad_token_ids_and_nonces() {
        let bad_token =
            r#"{"type":"volume_update","tokenId":"a.b","volume24h":1,"timestamp":1,"nonce":"x"}"#;
        assert!(serde_json::from_str::<Event>(bad_token).is_err());
        let empty_nonce =
            r#"{"type":"volume_update","tokenId":"a","volume24h":1,"timestamp":1,"nonce":""}"#;
        assert!(serde_json::from_str::<Event>(empty_nonce).is_err());
    }
}
