//! Where messages go: NATS, with the `Nats-Msg-Id` header, or memory (tests).
//!
//! NATS outages: async-nats reconnects by itself, forever, with back-off.
//! While it is disconnected its connection task stops taking commands, so
//! publishes queue in the client's command buffer (`--nats-buffer`
//! messages) and are sent, in order, once it is back; when the buffer is
//! full, publishing waits and the runner falls behind its schedule, then
//! skips the slots it missed (`--max-lag`) rather than bursting them. What
//! can be lost is only what the dead connection had already taken: messages
//! in its write buffer or in flight on the socket when it broke. The
//! connection events are logged and counted in [`ConnectionStats`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{Client, ConnectOptions, HeaderMap};

use crate::error::Error;
use crate::outgoing::{EventKind, Outgoing};
use crate::store_confirm::{StoreConfirm, StoreStats};

/// Why one publish failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The message was refused (e.g. larger than the server's payload limit);
    /// publishing can go on.
    #[error("message refused: {0}")]
    Refused(String),
    /// The sink is closed; nothing more can be published.
    #[error("sink closed: {0}")]
    Closed(String),
}

/// A destination for messages.
pub trait Sink {
    /// Sends one message (waiting only when the sink's buffer is full).
    fn publish(&mut self, message: Outgoing) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Called when the runner is about to wait for the next due event: a
    /// sink that batches sends what it holds now, so a message never waits
    /// for the next one.
    fn idle(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Waits until everything published so far has been handed to the
    /// server.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Connection events seen so far, when the sink tracks them.
    fn connection_stats(&self) -> Option<&ConnectionStats> {
        None
    }

    /// Messages refused after [`Sink::publish`] accepted them (a sink that
    /// publishes on another thread learns of refusals late).
    fn refused_later(&self) -> u64 {
        0
    }

    /// What the last-prices store confirmation did, when it is on
    /// (`--confirm-stored-prices`).
    fn store_stats(&self) -> Option<Arc<StoreStats>> {
        None
    }
}

/// NATS connection events, counted by the client's event callback.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    disconnects: AtomicU64,
    reconnects: AtomicU64,
}

impl ConnectionStats {
    /// Times the connection was lost.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Times it came back after being lost.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// Publishes to NATS.
#[derive(Debug, Clone)]
pub struct NatsSink {
    client: Client,
    stats: Option<Arc<ConnectionStats>>,
    store: Option<StoreConfirm>,
}

impl NatsSink {
    /// Publishes through an existing client (connection events then are not
    /// counted: the client's owner set its callback).
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            stats: None,
            store: None,
        }
    }

    /// Connects to `url`, retrying until `timeout` has passed; the client
    /// buffers up to `buffer` messages while disconnected and logs and
    /// counts connection events.
    pub async fn connect(url: &str, timeout: Duration, buffer: usize) -> Result<Self, Error> {
        let stats = Arc::new(ConnectionStats::default());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff =
            odin_protocol::Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        let mut rng = rand::rng();
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = options(
                stats.clone(),
                buffer,
                remaining.max(Duration::from_millis(100)),
            )
            .connect(url)
            .await;
            match attempt {
                Ok(client) => {
                    tracing::info!(url, "connected to NATS");
                    return Ok(Self {
                        client,
                        stats: Some(stats),
                        store: None,
                    });
                }
                Err(e) => {
                    let wait = backoff.next_delay(&mut rng);
                    if tokio::time::Instant::now() + wait >= deadline {
                        return Err(Error::Connect {
                            url: url.to_owned(),
                            timeout,
                            reason: e.to_string(),
                        });
                    }
                    tracing::debug!(url, error = %e, "NATS not reachable yet, retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Publishes every `price_update` from now on through JetStream and sees
    /// each token's latest one stored ([`StoreConfirm`]); starts a task on
    /// the current runtime.
    pub fn confirm_stored_prices(&mut self) {
        self.store = Some(StoreConfirm::start(self.client.clone()));
    }

    /// The client, e.g. to subscribe on the same connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The shared connection counters (when this sink made the connection).
    pub fn stats(&self) -> Option<Arc<ConnectionStats>> {
        self.stats.clone()
    }
}

fn options(stats: Arc<ConnectionStats>, buffer: usize, timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .name("odin-publisher")
        .connection_timeout(timeout)
        .client_capacity(buffer)
        // Subjects are built from validated token ids and prefixes only, so
        // the client's per-publish check would re-check what cannot be wrong.
        .skip_subject_validation(true)
        .event_callback(move |event| {
            let stats = stats.clone();
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        stats.disconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "lost the NATS connection; reconnecting. New messages wait in the \
                             client buffer and go out on reconnect; messages the broken \
                             connection had already taken may be lost"
                        );
                    }
                    async_nats::Event::Connected => {
                        if stats.disconnects() > stats.reconnects() {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::info!("reconnected to NATS; sending buffered messages");
                        }
                    }
                    async_nats::Event::Closed => tracing::info!("NATS connection closed"),
                    other => tracing::warn!(event = %other, "NATS client event"),
                }
            }
        })
}

impl Sink for NatsSink {
    async fn publish(&mut self, message: Outgoing) -> Result<(), SinkError> {
        if let (Some(store), EventKind::PriceUpdate, Some(token)) =
            (&self.store, message.kind, message.token)
        {
            return store
                .publish(token, message.subject, message.nonce, message.payload)
                .await
                .map_err(|e| match e.kind() {
                    PublishErrorKind::BrokenPipe => SinkError::Closed(e.to_string()),
                    _ => SinkError::Refused(e.to_string()),
                });
        }
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, message.nonce.as_str());
        self.client
            .publish_with_headers(message.subject, headers, message.payload)
            .await
            .map_err(|e| match e.kind() {
                async_nats::client::PublishErrorKind::Send => SinkError::Closed(e.to_string()),
                _ => SinkError::Refused(e.to_string()),
            })
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.client
            .flush()
            .await
            .map_err(|e| SinkError::Closed(e.to_string()))?;
        if let Some(store) = &self.store {
            // The caller bounds the wait (`--flush-timeout`).
            store.wait_stored().await;
        }
        Ok(())
    }

    fn store_stats(&self) -> Option<Arc<StoreStats>> {
        self.store.as_ref().map(StoreConfirm::stats)
    }

    fn connection_stats(&self) -> Option<&ConnectionStats> {
        self.stats.as_deref()
    }
}

/// Keeps every message in memory, for tests of the runner without NATS.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    /// The messages, in publish order.
    pub messages: Vec<Outgoing>,
}

impl Sink for MemorySink {
    async fn publish(&mut self, message: Outgoing) -> Result<(), SinkError> {
        self.messages.push(message);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
