//! What a reference client connects to and how patiently.

use std::sync::Arc;
use std::time::Duration;

use odin_protocol::{Backoff, ProtocolVersion};

use super::machine::Policy;

/// The `exp` of a JWT, read without checking it (the server checks; the
/// client only needs to know when to refresh).
pub(crate) fn token_exp(token: &str) -> Option<std::time::SystemTime> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: f64,
    }
    let claims: Exp = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    let secs = claims.exp.clamp(0.0, 253_402_300_799.0) as u64;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Hands out a JWT for each connection attempt. Called before every attempt,
/// so a source that mints tokens gives a reconnect after `4001 token expired`
/// a valid one; a load user that shares one long-lived token just clones it.
pub type TokenSource = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of one reference client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The WebSocket endpoint, `ws://host:port/ws`; `?token=<jwt>` is appended.
    pub url: String,
    /// Channels to subscribe to after every (re)connect, e.g. `token.BTC`.
    pub channels: Vec<String>,
    /// Back-off, stability and de-duplication bounds.
    pub policy: Policy,
    /// Limit for TCP connect plus WebSocket upgrade.
    pub connect_timeout: Duration,
    /// Limit from the upgrade to `subscribed` (`connection_established`
    /// included); a server that stalls there counts as a failed attempt.
    pub handshake_timeout: Duration,
    /// How long a closing handshake may take before the socket is dropped.
    pub close_timeout: Duration,
    /// A live connection that receives nothing (not even a heartbeat) for
    /// this many heartbeat intervals (`heartbeatIntervalMs`) is given up and
    /// replaced: a stalled server or a dead network path that TCP has not
    /// noticed yet. Browsers watch the heartbeat message the same way.
    pub silence_heartbeats: f64,
    /// The local address to connect from (port chosen by the kernel). Load
    /// runs spread their processes over 127.0.0.x so that no source address
    /// runs out of ephemeral ports; `None` lets the kernel choose.
    pub source_ip: Option<std::net::IpAddr>,
    /// What a `wss://` URL's certificate is checked against; `None` with
    /// `wss://` is an error (the harness trusts no system roots).
    pub tls: Option<crate::tls::ClientTls>,
    /// Offer permessage-deflate (RFC 7692), as browsers do: a server with
    /// `--compression` then sends events compressed, which the client
    /// inflates.
    pub compression: bool,
    /// The protocol version asked for (`?protocol=2` for version 2, which
    /// brings the `reconnect` advisory the client then honours); version 1
    /// asks for nothing, so the client also works against servers that
    /// predate versions.
    pub protocol: ProtocolVersion,
    /// When set, a live connection sends `refresh` (version 2) with a fresh
    /// token from the token source this long before its token's `exp`, so
    /// a short-lived token does not end it with `4001`.
    pub refresh_ahead: Option<Duration>,
}

impl ClientConfig {
    /// A client of `url` subscribing to `channels`, with browser-like
    /// defaults: back-off 250 ms–30 s, stable after 10 s, 10 s connect and
    /// handshake limits, 1 s to close, silent for 2.5 heartbeats is dead.
    pub fn new<S: Into<String>>(
        url: impl Into<String>,
        channels: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            url: url.into(),
            channels: channels.into_iter().map(Into::into).collect(),
            policy: Policy::default(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            silence_heartbeats: 2.5,
            source_ip: None,
            tls: None,
            compression: false,
            protocol: ProtocolVersion::V1,
            refresh_ahead: None,
        }
    }

    /// The same, refreshing its token `ahead` of its expiry.
    pub fn with_refresh_ahead(mut self, ahead: Duration) -> Self {
        self.refresh_ahead = Some(ahead);
        self
    }

    /// The same, speaking protocol `version` (see [`ClientConfig::protocol`]).
    pub fn with_protocol(mut self, version: ProtocolVersion) -> Self {
        self.protocol = version;
        self
    }

    /// The URL of a connection attempt with `token`: the configured one,
    /// asking for the configured version, then the token.
    pub(crate) fn url_with(&self, token: &str) -> String {
        let url = match self.protocol {
            ProtocolVersion::V1 => self.url.clone(),
            version => {
                let separator = if self.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}protocol={}", self.url, version.number())
            }
        };
        url_with_token(&url, token)
    }

    /// The same, offering permessage-deflate (see
    /// [`ClientConfig::compression`]).
    pub fn with_compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// The same, connecting from `ip` (see [`ClientConfig::source_ip`]).
    pub fn with_source_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.source_ip = Some(ip);
        self
    }

    /// The same, trusting `tls` for a `wss://` URL.
    pub fn with_tls(mut self, tls: crate::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same, with back-off between `base` and `cap` (tests use a few
    /// milliseconds so reconnects are quick).
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.policy.backoff = Backoff::new(base, cap);
        self
    }

    /// The same, counting a connection stable after `stable_after`.
    pub fn with_stable_after(mut self, stable_after: Duration) -> Self {
        self.policy.stable_after = stable_after;
        self
    }

    /// The same, giving up a connection after `heartbeats` heartbeat
    /// intervals without a frame.
    pub fn with_silence_heartbeats(mut self, heartbeats: f64) -> Self {
        self.silence_heartbeats = heartbeats;
        self
    }

    /// The same, remembering at most `capacity` nonces for `ttl` (see
    /// [`Policy::dedup_capacity`] for the memory this costs).
    pub fn with_dedup(mut self, ttl: Duration, capacity: usize) -> Self {
        self.policy.dedup_ttl = ttl;
        self.policy.dedup_capacity = capacity;
        self
    }

    /// The same, with both handshake limits set to `limit`.
    pub fn with_timeouts(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self.handshake_timeout = limit;
        self
    }
}

/// `url` with `token=<token>` added to its query, percent-encoded.
pub(crate) fn url_with_token(url: &str, token: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!("{url}{separator}token={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_version_2_before_the_token() {
        let v1 = ClientConfig::new("ws://h:1/ws", ["batch"]);
        assert_eq!(v1.url_with("t"), "ws://h:1/ws?token=t");
        let v2 = v1.with_protocol(ProtocolVersion::V2);
        assert_eq!(v2.url_with("t"), "ws://h:1/ws?protocol=2&token=t");
    }

    #[test]
    fn appends_the_token_to_the_query() {
        assert_eq!(
            url_with_token("ws://h:1/ws", "a.b-c_d"),
            "ws://h:1/ws?token=a.b-c_d"
        );
        assert_eq!(
            url_with_token("ws://h:1/ws?x=1", "a b&"),
            "ws://h:1/ws?x=1&token=a+b%26"
        );
    }
}
