//! The `reconnect` advisory of version 2 (`PROTOCOL.md` §3, §4.6): the
//! server's word, just before it closes a connection on shutdown or at the
//! end of its lifetime, on how long the client should wait before it
//! connects again.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::Nonce;

/// Why the server asks a client to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReconnectReason {
    /// The server is shutting down (a deploy); the `1001` close follows.
    Shutdown,
    /// The connection reached its lifetime; the `4003` close follows.
    Lifetime,
}

/// `reconnect` (version 2): the server is about to close this connection
/// and suggests how long to wait before connecting again, each client its
/// own draw over a window, so a fleet closed at once does not return at
/// once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reconnect {
    /// Why.
    pub reason: ReconnectReason,
    /// Milliseconds to wait after the close before reconnecting.
    pub delay_ms: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
    /// Unique per message.
    pub nonce: Nonce,
}
