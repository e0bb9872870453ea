//! The JSON body of `GET /stats` (`PROTOCOL.md` §6), shared by the server that
//! writes it and the harness and load tests that read it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `GET /stats`: counters since the server started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    /// The server instance.
    pub server_id: String,
    /// Seconds since the server started.
    pub uptime_seconds: f64,
    /// Open WebSocket connections.
    pub connection_count: u64,
    /// Events received from NATS (duplicates and invalid ones included).
    pub messages_received: u64,
    /// Frames sent to clients.
    pub messages_delivered: u64,
    /// Events dropped at ingest because their nonce was seen before.
    pub duplicates_dropped: u64,
    /// Events dropped at ingest because they broke the contract.
    pub invalid_events: u64,
    /// Pending price/volume updates replaced by a newer one of the same token.
    pub conflated: u64,
    /// Connections that negotiated permessage-deflate (`--compression`).
    #[serde(default)]
    pub compressed_connections: u64,
    /// Events compressed: once each, however many clients get them
    /// compressed.
    #[serde(default)]
    pub events_compressed: u64,
    /// Frames sent compressed (counted in `messages_delivered` too).
    #[serde(default)]
    pub messages_compressed: u64,
    /// Connections closed with `4008`.
    pub slow_consumer_disconnects: u64,
    /// Upgrade requests refused with `401`.
    pub auth_failures: u64,
    /// WebSocket connections refused by a per-address budget: open
    /// connections, connect rate, or failed authentications (`PROTOCOL.md`
    /// §8). Absent from servers older than the budgets.
    #[serde(default)]
    pub address_limited: u64,
    /// Tokens whose last price the gateway holds now (for snapshots).
    #[serde(default)]
    pub tokens_held: u64,
    /// Tokens nobody was subscribed to whose last price was dropped to stay
    /// within `--max-tokens` / `--max-price-bytes`.
    #[serde(default)]
    pub tokens_evicted: u64,
    /// Prices of tokens new to the gateway not kept for want of room (every
    /// held token had subscribers).
    #[serde(default)]
    pub tokens_refused: u64,
    /// Certificates loaded again on SIGHUP or a change of their files
    /// (TLS only).
    #[serde(default)]
    pub tls_reloads: u64,
    /// Reloads refused (unreadable files, bad PEM, a key not the
    /// certificate's); the previous certificate stayed (TLS only).
    #[serde(default)]
    pub tls_reload_failures: u64,
    /// TLS handshakes on the WebSocket port that failed (TLS only).
    #[serde(default)]
    pub tls_handshake_failures: u64,
    /// Mean milliseconds from an event's `timestamp` to its ingest; `0` before
    /// any event.
    pub average_latency: f64,
    /// Largest such latency since start; `0` before any event.
    pub peak_latency: f64,
    /// Whether the server is connected to NATS now.
    pub nats_connected: bool,
}
