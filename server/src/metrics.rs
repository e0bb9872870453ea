//! The server's counters, read two ways: `/stats` (JSON, for people and the
//! load tests) and `/metrics` (Prometheus text, for scrapers).
//!
//! One set of atomics backs both, so the two views can never disagree.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use odin_protocol::stats::StatsSnapshot;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the ingest latency histogram, in seconds (0.25 ms – 10 s).
const LATENCY_BUCKETS: [f64; 15] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Every figure of `PROTOCOL.md` §6.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Events received from NATS.
    pub messages_received: Counter,
    /// Frames written to clients.
    pub messages_delivered: Counter,
    /// Events dropped at ingest as duplicates.
    pub duplicates_dropped: Counter,
    /// Events dropped at ingest as invalid.
    pub invalid_events: Counter,
    /// Pending updates replaced by newer ones.
    pub conflated: Counter,
    /// Connections that negotiated permessage-deflate.
    pub compressed_connections: Counter,
    /// Events compressed (once each, however many clients get them so).
    pub events_compressed: Counter,
    /// Frames sent compressed (part of `messages_delivered`).
    pub messages_compressed: Counter,
    /// Connections closed with `4008`.
    pub slow_consumer_disconnects: Counter,
    /// Stored prices applied after a NATS reconnect because they were newer
    /// than the gateway's (prices it missed while away).
    pub prices_restored: Counter,
    /// Live prices dropped because a newer stored one was already applied.
    pub prices_superseded: Counter,
    /// Upgrades refused with `401`.
    pub auth_failures: Counter,
    /// HTTP connections turned away with `503` at accept: over the HTTP
    /// connection cap or the per-address cap.
    pub http_refused: Counter,
    /// WebSocket connections dropped at accept because too many upgrades
    /// were already under way.
    pub upgrades_refused: Counter,
    /// WebSocket connections answered `503` at accept: their source address
    /// had its share of open connections.
    pub address_busy: Counter,
    /// WebSocket connections answered `429` at accept: their source address
    /// opened connections faster than its budget.
    pub connect_rate_limited: Counter,
    /// Upgrades answered `429` unchecked: their source address spent its
    /// budget of failed authentications.
    pub auth_rate_limited: Counter,
    /// Certificates loaded again (SIGHUP or changed files).
    pub tls_reloads: Counter,
    /// Reloads refused (unreadable files, bad PEM, a key not the
    /// certificate's): the previous certificate stayed.
    pub tls_reload_failures: Counter,
    /// TLS handshakes on the WebSocket port that failed (garbage, plain
    /// HTTP, a client refusing the certificate).
    pub tls_handshake_failures: Counter,
    /// Tokens whose last price is held.
    pub tokens_held: Gauge,
    /// Idle tokens evicted from the table to make room.
    pub tokens_evicted: Counter,
    /// New tokens' prices not kept for want of room.
    pub tokens_refused: Counter,
    ingest_latency: Histogram,
    /// Sum of ingest latencies in microseconds, for the mean in `/stats`.
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    latency_peak_us: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh counters, registered for `/metrics`.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let connections = Gauge::default();
        let messages_received = Counter::default();
        let messages_delivered = Counter::default();
        let duplicates_dropped = Counter::default();
        let invalid_events = Counter::default();
        let conflated = Counter::default();
        let compressed_connections = Counter::default();
        let events_compressed = Counter::default();
        let messages_compressed = Counter::default();
        let slow_consumer_disconnects = Counter::default();
        let auth_failures = Counter::default();
        let prices_restored = Counter::default();
        let prices_superseded = Counter::default();
        let http_refused = Counter::default();
        let upgrades_refused = Counter::default();
        let address_busy = Counter::default();
        let connect_rate_limited = Counter::default();
        let auth_rate_limited = Counter::default();
        let tls_reloads = Counter::default();
        let tls_reload_failures = Counter::default();
        let tls_handshake_failures = Counter::default();
        let tokens_held = Gauge::default();
        let tokens_evicted = Counter::default();
        let tokens_refused = Counter::default();
        let ingest_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "odin_connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "odin_messages_received",
            "Events received from NATS",
            messages_received.clone(),
        );
        registry.register(
            "odin_messages_delivered",
            "Frames sent to clients",
            messages_delivered.clone(),
        );
        registry.register(
            "odin_duplicates_dropped",
            "Events dropped at ingest because their nonce was seen before",
            duplicates_dropped.clone(),
        );
        registry.register(
            "odin_invalid_events",
            "Events dropped at ingest because they broke the protocol",
            invalid_events.clone(),
        );
        registry.register(
            "odin_conflated",
            "Pending price/volume updates replaced by a newer one of the same token",
            conflated.clone(),
        );
        registry.register(
            "odin_compressed_connections",
            "Connections that negotiated permessage-deflate",
            compressed_connections.clone(),
        );
        registry.register(
            "odin_events_compressed",
            "Events compressed, once each however many clients receive them compressed",
            events_compressed.clone(),
        );
        registry.register(
            "odin_messages_compressed",
            "Frames sent to clients compressed (counted in messages delivered too)",
            messages_compressed.clone(),
        );
        registry.register(
            "odin_slow_consumer_disconnects",
            "Connections closed with 4008 (slow consumer)",
            slow_consumer_disconnects.clone(),
        );
        registry.register(
            "odin_auth_failures",
            "Upgrade requests refused with 401",
            auth_failures.clone(),
        );
        registry.register(
            "odin_prices_restored",
            "Stored last prices applied after a NATS reconnect, newer than the gateway's",
            prices_restored.clone(),
        );
        registry.register(
            "odin_prices_superseded",
            "Live prices dropped because a newer stored price was already applied",
            prices_superseded.clone(),
        );
        registry.register(
            "odin_http_refused",
            "HTTP connections answered 503 at accept: over the HTTP connection cap or the per-address cap",
            http_refused.clone(),
        );
        registry.register(
            "odin_upgrades_refused",
            "WebSocket connections dropped at accept: too many upgrades under way",
            upgrades_refused.clone(),
        );
        registry.register(
            "odin_address_busy",
            "WebSocket connections answered 503 at accept: their address had its share of open connections",
            address_busy.clone(),
        );
        registry.register(
            "odin_connect_rate_limited",
            "WebSocket connections answered 429 at accept: their address connected faster than its budget",
            connect_rate_limited.clone(),
        );
        registry.register(
            "odin_auth_rate_limited",
            "Upgrades answered 429 without a token check: their address spent its budget of failed authentications",
            auth_rate_limited.clone(),
        );
        registry.register(
            "odin_tls_reloads",
            "TLS certificates loaded again (SIGHUP or changed files) and served to new connections",
            tls_reloads.clone(),
        );
        registry.register(
            "odin_tls_reload_failures",
            "TLS certificate reloads refused (unreadable files, bad PEM, key not matching); the previous certificate stayed",
            tls_reload_failures.clone(),
        );
        registry.register(
            "odin_tls_handshake_failures",
            "TLS handshakes on the WebSocket port that failed",
            tls_handshake_failures.clone(),
        );
        registry.register(
            "odin_tokens_held",
            "Tokens whose last price the gateway holds for snapshots",
            tokens_held.clone(),
        );
        registry.register(
            "odin_tokens_evicted",
            "Tokens nobody was subscribed to whose last price was dropped to stay within the token budget",
            tokens_evicted.clone(),
        );
        registry.register(
            "odin_tokens_refused",
            "Prices of tokens new to the gateway not kept for want of room in the token budget",
            tokens_refused.clone(),
        );
        registry.register(
            "odin_ingest_latency_seconds",
            "Seconds from an event's timestamp to the server receiving it from NATS",
            ingest_latency.clone(),
        );
        Self {
            registry,
            started: Instant::now(),
            connections,
            messages_received,
            messages_delivered,
            duplicates_dropped,
            invalid_events,
            conflated,
            compressed_connections,
            events_compressed,
            messages_compressed,
            slow_consumer_disconnects,
            auth_failures,
            prices_restored,
            prices_superseded,
            http_refused,
            upgrades_refused,
            address_busy,
            connect_rate_limited,
            auth_rate_limited,
            tls_reloads,
            tls_reload_failures,
            tls_handshake_failures,
            tokens_held,
            tokens_evicted,
            tokens_refused,
            ingest_latency,
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            latency_peak_us: AtomicU64::new(0),
        }
    }

    /// Records one event's ingest latency (clamped at zero when the
    /// publisher's clock runs ahead of ours).
    pub fn observe_ingest_latency(&self, millis: f64) {
        let millis = if millis.is_finite() {
            millis.max(0.0)
        } else {
            0.0
        };
        self.ingest_latency.observe(millis / 1000.0);
        let us = (millis * 1000.0) as u64;
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_peak_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The `/stats` body.
    pub fn snapshot(&self, server_id: &str, nats_connected: bool) -> StatsSnapshot {
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_us.load(Ordering::Relaxed);
        let average_latency = if count == 0 {
            0.0
        } else {
            sum as f64 / count as f64 / 1000.0
        };
        StatsSnapshot {
            server_id: server_id.to_owned(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            connection_count: self.connections.get().max(0) as u64,
            messages_received: self.messages_received.get(),
            messages_delivered: self.messages_delivered.get(),
            duplicates_dropped: self.duplicates_dropped.get(),
            invalid_events: self.invalid_events.get(),
            conflated: self.conflated.get(),
            compressed_connections: self.compressed_connections.get(),
            events_compressed: self.events_compressed.get(),
            messages_compressed: self.messages_compressed.get(),
            slow_consumer_disconnects: self.slow_consumer_disconnects.get(),
            auth_failures: self.auth_failures.get(),
            address_limited: self.address_busy.get()
                + self.connect_rate_limited.get()
                + self.auth_rate_limited.get(),
            tokens_held: self.tokens_held.get().max(0) as u64,
            tokens_evicted: self.tokens_evicted.get(),
            tokens_refused: self.tokens_refused.get(),
            tls_reloads: self.tls_reloads.get(),
            tls_reload_failures: self.tls_reload_failures.get(),
            tls_handshake_failures: self.tls_handshake_failures.get(),
            average_latency,
            peak_latency: self.latency_peak_us.load(Ordering::Relaxed) as f64 / 1000.0,
            nats_connected,
        }
    }

    /// The `/metrics` body in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Seconds since the server started.
    pub fn uptime_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_views_carry_the_protocol_names() {
        let m = Metrics::new();
        m.messages_received.inc();
        m.observe_ingest_latency(2.5);
        m.observe_ingest_latency(0.5);
        let text = m.encode();
        for name in [
            "odin_connections ",
            "odin_messages_received_total 1",
            "odin_messages_delivered_total",
            "odin_duplicates_dropped_total",
            "odin_invalid_events_total",
            "odin_conflated_total",
            "odin_messages_compressed_total",
            "odin_slow_consumer_disconnects_total",
            "odin_auth_failures_total",
            "odin_prices_restored_total",
            "odin_prices_superseded_total",
            "odin_ingest_latency_seconds_bucket",
            "odin_ingest_latency_seconds_count 2",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        let s = m.snapshot("s1", true);
        assert_eq!(s.average_latency, 1.5);
        assert_eq!(s.peak_latency, 2.5);
    }
}
