//! What the ingest, the listener and every connection of one forwarder
//! share: settings, the channel index, the shutdown signal, a few counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use odin_protocol::ids::NonceSource;
use odin_protocol::time::now_millis;
use odin_protocol::{Nonce, ServerMessage};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::frame;
use super::router::Router;

/// Shared by everything of one running forwarder.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This instance's id (`serverId` of the messages it writes).
    pub(crate) server_id: String,
    pub(crate) heartbeat: Duration,
    pub(crate) max_queue_bytes: usize,
    pub(crate) max_channels: usize,
    pub(crate) router: Router,
    /// Cancelled when the forwarder starts shutting down.
    pub(crate) shutdown: CancellationToken,
    nonces: NonceSource,
    next_conn: AtomicU64,
    /// Events received from NATS.
    pub(crate) events: AtomicU64,
    /// Frames queued for clients by the fan-out.
    pub(crate) deliveries: AtomicU64,
    /// Connections dropped because their queue overflowed.
    pub(crate) overflows: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            server_id: format!("forwarder-{:08x}", rand::random::<u32>()),
            heartbeat: config.heartbeat_interval(),
            max_queue_bytes: usize::try_from(config.max_queue_bytes).unwrap_or(usize::MAX),
            max_channels: config.max_channels,
            router: Router::default(),
            shutdown: CancellationToken::new(),
            nonces: NonceSource::random(),
            next_conn: AtomicU64::new(1),
            events: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
        }
    }

    /// A fresh connection number.
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A message the forwarder writes itself, as a text frame; `build` gets
    /// the timestamp and nonce every server message carries.
    pub(crate) fn message(&self, build: impl FnOnce(f64, Nonce) -> ServerMessage) -> Bytes {
        frame::text(build(now_millis(), self.nonces.next()).to_json().as_bytes())
    }
}
