//! The JSON of one fixed instance of every message type (`PROTOCOL.md` §2,
//! §3): each server message, each client message and the body of a refused
//! upgrade, in its full form and, where the type has optional fields, in its
//! minimal form too (an optional field is left out, never `null`). Fixed
//! timestamps and nonces keep the snapshots stable.
//!
//! Coverage is checked against the schema generated from the types, so a
//! new variant without a fixture fails here.

use std::collections::BTreeSet;

use odin_protocol::message::{
    AuthErrorBody, AuthErrorCode, BatchEntry, BatchSource, BatchUpdate, ChannelRequest,
    ChannelsAck, ConnectionEstablished, ErrorCode, ErrorMessage, Heartbeat, MarketStats,
    PingRequest, Pong, PriceSource, PriceUpdate, Reconnect, ReconnectReason, RefreshRequest,
    Refreshed, Side, TradeExecuted, VolumeUpdate,
};
use odin_protocol::{ClientMessage, Nonce, PROTOCOL_VERSION, ServerMessage, TokenId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Every fixture's `timestamp`: 2025-11-28T00:00:00.123456Z, in the
/// protocol's milliseconds with a microsecond fraction.
const TIMESTAMP: f64 = 1_764_288_000_123.456;

/// Every fixture's server id.
const SERVER_ID: &str = "odin-5eed0dd1";

/// A fixed nonce of the form the publisher and server make.
fn nonce(n: u64) -> Nonce {
    Nonce::parse(&format!("5eed0dd15eed0dd1-{n:x}")).unwrap()
}

fn token(id: &str) -> TokenId {
    TokenId::parse(id).unwrap()
}

fn ack(channels: &[&str], id: Option<&str>, n: u64) -> ChannelsAck {
    ChannelsAck {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        id: id.map(str::to_owned),
        timestamp: TIMESTAMP,
        nonce: nonce(n),
    }
}

/// One instance of each server message, named for its snapshot.
fn server_messages() -> Vec<(&'static str, ServerMessage)> {
    use ServerMessage as M;
    vec![
        (
            "connection_established",
            M::ConnectionEstablished(ConnectionEstablished {
                client_id: "c-5eed0dd1-1".into(),
                server_id: SERVER_ID.into(),
                protocol_version: PROTOCOL_VERSION,
                heartbeat_interval_ms: 30_000,
                timestamp: TIMESTAMP,
                nonce: nonce(1),
            }),
        ),
        (
            "price_update",
            M::PriceUpdate(PriceUpdate {
                token_id: token("BTC"),
                price: 65_000.25,
                source: PriceSource::Trade,
                previous_price: Some(64_990.5),
                change_24h: Some(-1.25),
                timestamp: TIMESTAMP,
                nonce: nonce(2),
            }),
        ),
        (
            "price_update_minimal",
            M::PriceUpdate(PriceUpdate {
                token_id: token("ETH"),
                price: 3_200.0,
                source: PriceSource::Scheduler,
                previous_price: None,
                change_24h: None,
                timestamp: TIMESTAMP,
                nonce: nonce(3),
            }),
        ),
        (
            "volume_update",
            M::VolumeUpdate(VolumeUpdate {
                token_id: token("BTC"),
                volume_24h: 1_234_567.5,
                timestamp: TIMESTAMP,
                nonce: nonce(4),
            }),
        ),
        (
            "trade_executed",
            M::TradeExecuted(TradeExecuted {
                token_id: token("SOL"),
                trade_id: "5eed0dd15eed0dd1-t7".into(),
                side: Side::Sell,
                price: 150.125,
                amount: 12.5,
                timestamp: TIMESTAMP,
                nonce: nonce(5),
            }),
        ),
        (
            "batch_update",
            M::BatchUpdate(BatchUpdate {
                source: BatchSource::Scheduler,
                updates: vec![
                    BatchEntry {
                        token_id: token("BTC"),
                        price: 65_000.25,
                        volume_24h: Some(1_234_567.5),
                    },
                    BatchEntry {
                        token_id: token("ETH"),
                        price: 3_200.0,
                        volume_24h: None,
                    },
                ],
                timestamp: TIMESTAMP,
                nonce: nonce(6),
            }),
        ),
        (
            "market_stats",
            M::MarketStats(MarketStats {
                total_volume_24h: 98_765_432.25,
                total_trades_24h: 4_242,
                active_tokens: 30,
                timestamp: TIMESTAMP,
                nonce: nonce(7),
            }),
        ),
        (
            "heartbeat",
            M::Heartbeat(Heartbeat {
                server_id: SERVER_ID.into(),
                timestamp: TIMESTAMP,
                nonce: nonce(8),
            }),
        ),
        (
            "subscribed",
            M::Subscribed(ack(&["token.BTC", "batch", "market"], Some("req-1"), 9)),
        ),
        ("subscribed_minimal", M::Subscribed(ack(&[], None, 10))),
        (
            "unsubscribed",
            M::Unsubscribed(ack(&["token.BTC"], Some("req-2"), 11)),
        ),
        ("unsubscribed_minimal", M::Unsubscribed(ack(&[], None, 12))),
        (
            "pong",
            M::Pong(Pong {
                id: Some("req-3".into()),
                timestamp: TIMESTAMP,
                nonce: nonce(13),
            }),
        ),
        (
            "pong_minimal",
            M::Pong(Pong {
                id: None,
                timestamp: TIMESTAMP,
                nonce: nonce(14),
            }),
        ),
        (
            "refreshed",
            M::Refreshed(Refreshed {
                exp: 1_764_291_600,
                id: Some("req-5".into()),
                timestamp: TIMESTAMP,
                nonce: nonce(17),
            }),
        ),
        (
            "refreshed_minimal",
            M::Refreshed(Refreshed {
                exp: 1_764_291_600,
                id: None,
                timestamp: TIMESTAMP,
                nonce: nonce(18),
            }),
        ),
        (
            "error_auth",
            M::Error(ErrorMessage {
                code: ErrorCode::AuthExpired,
                message: "token expired".into(),
                id: Some("req-5".into()),
                channel: None,
                timestamp: TIMESTAMP,
                nonce: nonce(19),
            }),
        ),
        (
            "error",
            M::Error(ErrorMessage {
                code: ErrorCode::InvalidChannel,
                message: "invalid channel \"token.a.b\"".into(),
                id: Some("req-4".into()),
                channel: Some("token.a.b".into()),
                timestamp: TIMESTAMP,
                nonce: nonce(15),
            }),
        ),
        (
            "error_minimal",
            M::Error(ErrorMessage {
                code: ErrorCode::InvalidMessage,
                message: "not JSON".into(),
                id: None,
                channel: None,
                timestamp: TIMESTAMP,
                nonce: nonce(16),
            }),
        ),
        (
            "reconnect",
            M::Reconnect(Reconnect {
                reason: ReconnectReason::Shutdown,
                delay_ms: 2_750,
                timestamp: TIMESTAMP,
                nonce: nonce(17),
            }),
        ),
    ]
}

/// One instance of each client message, named for its snapshot.
fn client_messages() -> Vec<(&'static str, ClientMessage)> {
    let request = |channels: &[&str], id: Option<&str>| ChannelRequest {
        channels: channels.iter().map(|c| c.to_string()).collect(),
        id: id.map(str::to_owned),
    };
    vec![
        (
            "subscribe",
            ClientMessage::Subscribe(request(&["token.BTC", "batch", "market"], Some("req-1"))),
        ),
        (
            "subscribe_minimal",
            ClientMessage::Subscribe(request(&["token.BTC"], None)),
        ),
        (
            "unsubscribe",
            ClientMessage::Unsubscribe(request(&["token.BTC"], Some("req-2"))),
        ),
        (
            "unsubscribe_minimal",
            ClientMessage::Unsubscribe(request(&["market"], None)),
        ),
        (
            "ping",
            ClientMessage::Ping(PingRequest {
                id: Some("req-3".into()),
            }),
        ),
        (
            "ping_minimal",
            ClientMessage::Ping(PingRequest { id: None }),
        ),
        (
            "refresh",
            ClientMessage::Refresh(RefreshRequest {
                token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
                id: Some("req-5".into()),
            }),
        ),
        (
            "refresh_minimal",
            ClientMessage::Refresh(RefreshRequest {
                token: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
                id: None,
            }),
        ),
    ]
}

/// The body of a `401` for each of its codes.
fn auth_error_bodies() -> Vec<AuthErrorBody> {
    [
        (AuthErrorCode::AuthMissing, "no token given"),
        (
            AuthErrorCode::AuthInvalid,
            "invalid token: InvalidSignature",
        ),
        (AuthErrorCode::AuthExpired, "token expired"),
    ]
    .into_iter()
    .map(|(code, error)| AuthErrorBody {
        error: error.into(),
        code,
    })
    .collect()
}

/// Checks that a fixture reads back as itself, so it is one the other side
/// would accept.
fn assert_reads_back<T>(name: &str, message: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string(message).unwrap();
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("fixture {name} does not read back: {e}\n{json}"));
    assert_eq!(&back, message, "fixture {name}");
}

#[test]
fn every_server_message_has_its_snapshot() {
    for (name, message) in server_messages() {
        assert_reads_back(name, &message);
        insta::assert_json_snapshot!(format!("server_{name}"), message);
    }
}

#[test]
fn every_client_message_has_its_snapshot() {
    for (name, message) in client_messages() {
        assert_reads_back(name, &message);
        insta::assert_json_snapshot!(format!("client_{name}"), message);
    }
}

#[test]
fn the_refused_upgrade_body_has_its_snapshot() {
    let bodies = auth_error_bodies();
    for body in &bodies {
        assert_reads_back("auth_error_body", body);
    }
    insta::assert_json_snapshot!("auth_error_body", bodies);
}

/// The `type` values of the variants of a tagged enum, read off its
/// generated schema (`oneOf`, one entry per variant).
fn schema_types(schema: schemars::Schema) -> BTreeSet<String> {
    let schema: Value = serde_json::to_value(schema).unwrap();
    let variants = schema["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("a tagged enum's schema has a oneOf: {schema}"));
    variants
        .iter()
        .map(|v| {
            let tag = &v["properties"]["type"];
            tag["const"]
                .as_str()
                .or_else(|| tag["enum"][0].as_str())
                .unwrap_or_else(|| panic!("a variant without a constant type: {v}"))
                .to_owned()
        })
        .collect()
}

/// The values of a unit-variant enum, read off its generated schema: an
/// `enum` list, or a `oneOf` of constants when the variants have docs.
fn unit_enum_values(schema: schemars::Schema) -> BTreeSet<String> {
    let schema: Value = serde_json::to_value(schema).unwrap();
    let values: Vec<&Value> = match (schema["enum"].as_array(), schema["oneOf"].as_array()) {
        (Some(values), _) => values.iter().collect(),
        (None, Some(variants)) => variants.iter().map(|v| &v["const"]).collect(),
        (None, None) => panic!("not a unit-variant enum's schema: {schema}"),
    };
    values
        .into_iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{v} is no string"))
                .to_owned()
        })
        .collect()
}

/// The `type` values of a list of fixtures.
fn fixture_types<T: Serialize>(fixtures: &[(&str, T)]) -> BTreeSet<String> {
    fixtures
        .iter()
        .map(|(_, m)| {
            serde_json::to_value(m).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn the_fixtures_cover_every_message_type() {
    assert_eq!(
        fixture_types(&server_messages()),
        schema_types(schemars::schema_for!(ServerMessage)),
        "one server message fixture per type: add the new type's fixture above"
    );
    assert_eq!(
        fixture_types(&client_messages()),
        schema_types(schemars::schema_for!(ClientMessage)),
        "one client message fixture per type: add the new type's fixture above"
    );
    let codes: BTreeSet<String> = auth_error_bodies()
        .iter()
        .map(|b| {
            serde_json::to_value(b.code)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let all = unit_enum_values(schemars::schema_for!(AuthErrorCode));
    assert_eq!(codes, all, "one 401 body per code");
}
