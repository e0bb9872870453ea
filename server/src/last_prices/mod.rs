//! The last `price_update` of every token, kept in NATS JetStream so that a
//! gateway that starts or restarts has every snapshot from its first client
//! on, instead of only after each token's next price.
//!
//! The store is a stream over the price subjects (`<prefix>.token.*.price`)
//! that keeps one message per subject: JetStream captures every price
//! published on core NATS, so nobody writes a price twice. One module per
//! job:
//!
//! - `stream`: the stream's settings, and making sure it exists
//!   ([`ensure_stream`]).
//! - `load`: at start, reading the last message of every price subject
//!   with an ordered consumer around the live subscription, so the router
//!   has every stored price before the first client is accepted ([`Load`];
//!   its comment tells how the hand-over to live events leaves no gap).
//! - `catch_up`: after a NATS reconnect, reading back the prices missed
//!   while NATS was away ([`CatchUp`]).
//! - `stored`: what a read found (`StoredPrices`), each stored message
//!   judged like a live event ([`crate::event::judge`]).
//! - `retry`: the one retry loop of every request to JetStream
//!   (`retry_until`).
//!
//! Memory stays bounded by the number of tokens: a read keeps one message
//! per token.

mod catch_up;
mod load;
mod retry;
mod stored;
mod stream;

use std::time::Duration;

pub(crate) use catch_up::CatchUp;
pub(crate) use load::Load;
pub use stream::{DUPLICATE_WINDOW, differences, ensure_stream, stream_config};

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
enum Reading {
    /// At start, before the first client.
    Start,
    /// After a NATS reconnect (or a start whose load did not finish).
    CatchUp,
}

impl Reading {
    /// What the gateway does without the prices, for the error line.
    fn without(self) -> &'static str {
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
