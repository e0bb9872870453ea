//! Odin's wire contract (`PROTOCOL.md`) as Rust types and pure logic.
//!
//! Every part of Odin — the server, the publisher, the harness and the load
//! tests — speaks through this crate, so no part re-declares a message. It does
//! no I/O: it turns strings into validated values and back, and holds the two
//! small policies both ends share (the nonce de-duplication window and the
//! reconnect back-off).

pub mod backoff;
pub mod channel;
pub mod close;
pub mod dedup;
pub mod deflate;
pub mod ids;
pub mod message;
mod ranges;
pub mod reconnect;
pub mod stats;
pub mod subject;
pub mod time;
pub mod version;

pub use backoff::Backoff;
pub use channel::Channel;
pub use dedup::DedupWindow;
pub use ids::{Nonce, TokenId};
pub use message::{ClientMessage, Event, ServerMessage};
pub use subject::{SubjectKind, Subjects};
pub use version::ProtocolVersion;

/// The newest protocol version, as announced in `connection_established`
/// to a client that asks for it (`?protocol=2`); see [`ProtocolVersion`].
///
/// A change to the wire contract is a versioned change: bump this and the
/// schema snapshot together.
pub const PROTOCOL_VERSION: u32 = 2;
