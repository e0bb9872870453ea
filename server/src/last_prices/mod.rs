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
//! - `config`: where the store is ([`LastPricesConfig`]) and why it is read
//!   (`Reading`).
//! - `stored`: what a read found (`StoredPrices`), each stored message
//!   judged like a live event ([`crate::event::judge`]).
//! - `health`: whether the store answers now, for `/health`
//!   ([`StoreHealth`]).
//! - `retry`: the one retry loop of every request to JetStream
//!   (`retry_until`).
//!
//! Memory stays bounded by the number of tokens: a read keeps one message
//! per token.

mod catch_up;
mod config;
mod health;
mod load;
mod retry;
mod stored;
mod stream;

pub(crate) use catch_up::CatchUp;
pub use config::LastPricesConfig;
pub(crate) use health::StoreHealth;
pub(crate) use load::Load;
pub use stream::{DUPLICATE_WINDOW, differences, ensure_stream, stream_config};
