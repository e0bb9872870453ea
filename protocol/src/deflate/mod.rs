//! permessage-deflate (RFC 7692) as Odin uses it: the server compresses an
//! event once, with no context carried from one message to the next
//! (`server_no_context_takeover`), so every compressing recipient gets the
//! same bytes. This module holds what both ends share and is pure: the
//! negotiation ([`offer`]), the compression of one message ([`deflate`]),
//! and the read side ([`inflate`]), which rewrites compressed frames in a
//! byte stream into the plain frames a WebSocket library without the
//! extension (tungstenite, tokio-websockets) understands.

mod compress;
pub mod inflate;
pub mod offer;

pub use compress::{RSV1, SYNC_TAIL, deflate, deflate_with};
pub use inflate::FrameInflater;
pub use offer::{Accepted, negotiate};
