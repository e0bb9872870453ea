//! The reference client: what a browser does, in Rust.
//!
//! Connects with a JWT (`?token=`), waits for `connection_established`,
//! subscribes, and from then on hands every event to the application once:
//! de-duplicated by nonce across reconnects, with its latency. When the
//! connection ends — server shutdown (`1001`), token expiry (`4001`, a fresh
//! token is used next), no pong (`4002`), slow consumer (`4008`), a network
//! failure — it reconnects with capped exponential back-off and full jitter,
//! reset once a connection proved stable, and re-subscribes.
//!
//! - [`machine`] is that loop as a pure state machine (property-tested);
//! - [`Client`] runs it on a socket and reports to an [`Observer`] — a
//!   closure for load users, who need ≈ µs per message;
//! - [`TestClient`] runs it on a task and reports [`ClientEvent`]s that tests
//!   await with timeouts;
//! - [`RawClient`] is a bare socket for protocol tests (arbitrary frames,
//!   close codes, refused upgrades).

mod config;
mod driver;
pub mod machine;
mod observer;
mod raw;
mod stats;
mod test_client;
mod view;

pub use config::{ClientConfig, TokenSource};
pub use driver::Client;
pub use observer::{ClientEvent, Notice, Observer};
pub use raw::{CloseInfo, RawAuth, RawClient, RawConnectError, connect_raw};
pub use stats::{ClientCounters, ClientStats};
pub use test_client::TestClient;
pub use view::{MessageKind, MessageView, ViewError};
