//! A NATS sink that publishes on a thread of its own.
//!
//! Building and serialising events and pushing them through the NATS client
//! cost about the same CPU per message; on one thread they add up, so the
//! binary splits them: the runner's thread simulates, stamps, serialises,
//! records and counts, then hands messages over in batches; this sink's
//! thread owns the NATS client (and its connection task) on a current-thread
//! runtime and publishes them in order. Batches go out when full or when the
//! runner is about to wait ([`Sink::idle`]), so batching adds no latency at
//! low rates. The hand-over queue is bounded: when NATS stalls, the runner
//! waits, falls behind and skips, exactly as with an inline client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::outgoing::Outgoing;
use crate::sink::{ConnectionStats, NatsSink, Sink, SinkError};
use crate::store_confirm::StoreStats;

/// Messages per hand-over batch.
const BATCH: usize = 256;
/// Batches queued between the threads (with the client's own buffer, this
/// bounds what waits in memory during an outage).
const QUEUE: usize = 64;

enum Command {
    Publish(Vec<Outgoing>),
    Flush(oneshot::Sender<Result<(), SinkError>>),
}

/// Publishes to NATS from a dedicated thread.
#[derive(Debug)]
pub struct PipelinedNats {
    tx: mpsc::Sender<Command>,
    batch: Vec<Outgoing>,
    stats: Arc<ConnectionStats>,
    store: Option<Arc<StoreStats>>,
    refused: Arc<AtomicU64>,
}

impl PipelinedNats {
    /// Starts the publishing thread and connects it to `url` (see
    /// [`NatsSink::connect`] for the retry and buffer settings).
    pub async fn connect(
        url: &str,
        timeout: Duration,
        buffer: usize,
        confirm_stored_prices: bool,
    ) -> Result<Self, Error> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let refused = Arc::new(AtomicU64::new(0));
        let thread_refused = refused.clone();
        let url = url.to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Connect {
                url: url.clone(),
                timeout,
                reason: format!("cannot start the publishing runtime: {e}"),
            })?;
        let thread_url = url.clone();
        std::thread::Builder::new()
            .name("odin-nats".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match NatsSink::connect(&thread_url, timeout, buffer).await {
                        Ok(mut sink) => {
                            if confirm_stored_prices {
                                sink.confirm_stored_prices();
                            }
                            let stats = sink.stats().unwrap_or_default();
                            let ready = (stats, sink.store_stats());
                            if ready_tx.send(Ok(ready)).is_ok() {
                                serve(sink, rx, thread_refused).await;
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| Error::Connect {
                url: url.clone(),
                timeout,
                reason: format!("cannot start the publishing thread: {e}"),
            })?;
        let (stats, store) = ready_rx.await.map_err(|_| Error::Connect {
            url,
            timeout,
            reason: "the publishing thread died".to_owned(),
        })??;
        Ok(Self {
            tx,
            batch: Vec::with_capacity(BATCH),
            stats,
            store,
            refused,
        })
    }

    async fn send_batch(&mut self) -> Result<(), SinkError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.tx
            .send(Command::Publish(batch))
            .await
            .map_err(|_| SinkError::Closed("the publishing thread stopped".to_owned()))
    }
}

/// The publishing thread: publishes batches in order until the runner drops
/// its end (after its final flush).
async fn serve(mut sink: NatsSink, mut rx: mpsc::Receiver<Command>, refused: Arc<AtomicU64>) {
    while let Some(command) = rx.recv().await {
        match command {
            Command::Publish(batch) => {
                for message in batch {
                    let subject = message.subject.clone();
                    match sink.publish(message).await {
                        Ok(()) => {}
                        Err(SinkError::Refused(reason)) => {
                            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
                            if n <= 10 || n.is_power_of_two() {
                                tracing::warn!(%subject, refused = n, %reason, "NATS refused a message");
                            }
                        }
                        Err(SinkError::Closed(reason)) => {
                            tracing::error!(%reason, "NATS client closed; publishing stops");
                            return;
                        }
                    }
                }
            }
            Command::Flush(reply) => {
                let _ = reply.send(sink.flush().await);
            }
        }
    }
}

impl Sink for PipelinedNats {
    async fn publish(&mut self, message: Outgoing) -> Result<(), SinkError> {
        self.batch.push(message);
        if self.batch.len() >= BATCH {
            self.send_batch().await?;
        }
        Ok(())
    }

    async fn idle(&mut self) -> Result<(), SinkError> {
        self.send_batch().await
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.send_batch().await?;
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Command::Flush(reply))
            .await
            .map_err(|_| SinkError::Closed("the publishing thread stopped".to_owned()))?;
        done.await
            .map_err(|_| SinkError::Closed("the publishing thread stopped".to_owned()))?
    }

    fn connection_stats(&self) -> Option<&ConnectionStats> {
        Some(&self.stats)
    }

    fn store_stats(&self) -> Option<Arc<StoreStats>> {
        self.store.clone()
    }

    fn refused_later(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}
