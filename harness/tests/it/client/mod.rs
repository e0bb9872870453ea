//! The reference client: its reconnect state machine under proptest, and the
//! real client (and the raw one) against a small in-test WebSocket server.

mod live;
mod machine;
mod peer;
mod raw;
