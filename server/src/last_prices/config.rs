//! Where the last prices are kept ([`LastPricesConfig`], from the flags)
//! and why the store is read ([`Reading`]), which every job of
//! `last_prices` shares.

use std::time::Duration;

/// Where and how the last prices are kept; `None` in
/// [`crate::ServerConfig::last_prices`] turns the store off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPricesConfig {
    /// The JetStream stream's name (`--last-prices-stream`).
    pub stream: String,
    /// Copies of the stream kept by a NATS cluster (`--last-prices-replicas`);
    /// used only when the gateway creates the stream.
    pub replicas: usize,
    /// How long a starting gateway waits for JetStream before it serves
    /// without the stored prices (`--last-prices-timeout`).
    pub load_timeout: Duration,
}

impl LastPricesConfig {
    /// A store in `stream`, one replica, the default 10 s wait.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            replicas: 1,
            load_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the store is read, which decides what a failed read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    /// At start, before the first client.
    Start,
    /// After a NATS reconnect (or a start whose load did not finish).
    CatchUp,
}

impl Reading {
    /// What the gateway does without the prices, for the error line.
    pub(super) fn without(self) -> &'static str {
        match self {
            Reading::Start => {
                "serving without them: each token's snapshot starts with its next price"
            }
            Reading::CatchUp => {
                "a token whose prices were missed while NATS was away keeps its earlier \
                 price until its next one"
            }
        }
    }
}
