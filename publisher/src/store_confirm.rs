//! Making sure the last-prices store ends on every token's latest price
//! (`--confirm-stored-prices`).
//!
//! The gateways keep the last `price_update` of every token in a JetStream
//! stream that captures the price subjects (`odin-server
//! --last-prices-stream`). A cluster that loses the stream's leader stores
//! nothing until the other nodes have elected one, which takes seconds; a
//! price published then reaches the gateways but not the store, and a
//! gateway that starts later serves the price before it until the token's
//! next one.
//!
//! With this on, every `price_update` goes out as a JetStream publish: the
//! same message on the same subject (the gateways receive it as before,
//! with a reply subject they ignore), and the stream answers it. A task
//! waits for each answer; when one fails or does not come, and that price is
//! still its token's latest, the price is sent again (same bytes, same
//! `Nats-Msg-Id`) until the store takes it. The gateways drop the copy as a
//! duplicate by its nonce, or, if one missed the original, get its latest
//! price late; the stream drops it too if the original was stored after all
//! (its duplicate window). A newer price of the token ends the retries of
//! the older one. Sends are serialised under one lock, so a resent price can
//! never overtake a newer one of its token on the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use odin_protocol::Nonce;
use tokio::sync::{Mutex, mpsc, watch};

/// How long the store has to answer one publish: a cluster electing a
/// leader answers nothing, and the price is sent again after this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause before a price whose publish failed at once (no stream at all:
/// "no responders") is sent again.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What the confirmation did, for the publisher's totals and logs.
#[derive(Debug)]
pub struct StoreStats {
    confirmed: AtomicU64,
    failed: AtomicU64,
    resent: AtomicU64,
    /// Prices not yet known to be stored (or superseded); a watch, so the
    /// final flush can wait for 0.
    unconfirmed: watch::Sender<u64>,
}

impl StoreStats {
    /// Publishes the store confirmed (a resent price counts once more).
    pub fn confirmed(&self) -> u64 {
        self.confirmed.load(Ordering::Relaxed)
    }

    /// Publishes the store refused or did not answer in time.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Prices sent again because the store had not confirmed them.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Latest prices the store has not confirmed yet.
    pub fn unconfirmed(&self) -> u64 {
        *self.unconfirmed.borrow()
    }

    fn new() -> Self {
        Self {
            confirmed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            unconfirmed: watch::Sender::new(0),
        }
    }
}

/// A token's latest price, as it was sent.
#[derive(Debug)]
struct Latest {
    subject: Subject,
    nonce: Nonce,
    payload: Bytes,
}

/// One publish whose answer is awaited.
struct Awaited {
    token: u32,
    nonce: Nonce,
    ack: PublishAckFuture,
}

/// Publishes prices through JetStream and sees each token's latest one
/// stored (see the module docs).
#[derive(Debug, Clone)]
pub struct StoreConfirm {
    js: async_nats::jetstream::Context,
    latest: Arc<Mutex<HashMap<u32, Latest>>>,
    awaited: mpsc::UnboundedSender<Awaited>,
    stats: Arc<StoreStats>,
}

impl StoreConfirm {
    /// Starts the confirming task on the current runtime, publishing through
    /// `client`.
    pub fn start(client: Client) -> Self {
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(ANSWER_TIMEOUT)
            // The confirming task frees a slot only when it is not waiting
            // for the sends' lock: no bound below what a run can have in
            // flight, or the two could wait on each other.
            .max_ack_inflight(1 << 20)
            .build(client);
        let latest = Arc::new(Mutex::new(HashMap::new()));
        let (awaited, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(StoreStats::new());
        tokio::spawn(confirm(js.clone(), latest.clone(), rx, stats.clone()));
        Self {
            js,
            latest,
            awaited,
            stats,
        }
    }

    /// Sends `payload` (the `price_update` of the token numbered `token`)
    /// as a JetStream publish and has its answer awaited.
    pub async fn publish(
        &self,
        token: u32,
        subject: Subject,
        nonce: Nonce,
        payload: Bytes,
    ) -> Result<(), PublishError> {
        let mut latest = self.latest.lock().await;
        // A send times out only when the client's buffer is full (NATS
        // away): wait as a core publish would, rather than drop the price.
        let ack = loop {
            match send(&self.js, subject.clone(), &nonce, payload.clone()).await {
                Err(e) if e.kind() == PublishErrorKind::TimedOut => continue,
                sent => break sent?,
            }
        };
        latest.insert(
            token,
            Latest {
                subject,
                nonce: nonce.clone(),
                payload,
            },
        );
        drop(latest);
        self.stats.unconfirmed.send_modify(|n| *n += 1);
        let _ = self.awaited.send(Awaited { token, nonce, ack });
        Ok(())
    }

    /// Waits until the store has every token's latest price (the caller
    /// bounds the wait).
    pub async fn wait_stored(&self) {
        let mut rx = self.stats.unconfirmed.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// What the confirmation has done so far.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }
}

/// One JetStream publish of a price, with its nonce as `Nats-Msg-Id`.
async fn send(
    js: &async_nats::jetstream::Context,
    subject: Subject,
    nonce: &Nonce,
    payload: Bytes,
) -> Result<PublishAckFuture, PublishError> {
    let message = PublishMessage::build()
        .payload(payload)
        .message_id(nonce.as_str());
    js.send_publish(subject, message).await
}

/// What became of one awaited publish.
enum Outcome {
    Answered(u32, Nonce, Result<(), PublishError>),
    RetryDue(u32, Nonce),
}

/// The confirming task: awaits every answer, and sends again a price the
/// store did not take while it is still its token's latest.
async fn confirm(
    js: async_nats::jetstream::Context,
    latest: Arc<Mutex<HashMap<u32, Latest>>>,
    mut rx: mpsc::UnboundedReceiver<Awaited>,
    stats: Arc<StoreStats>,
) {
    let mut pending: FuturesUnordered<BoxFuture<'static, Outcome>> = FuturesUnordered::new();
    let answer = |a: Awaited| -> BoxFuture<'static, Outcome> {
        Box::pin(async move {
            let result = a.ack.await.map(|_| ());
            Outcome::Answered(a.token, a.nonce, result)
        })
    };
    let mut open = true;
    loop {
        let outcome = tokio::select! {
            a = rx.recv(), if open => match a {
                Some(a) => {
                    pending.push(answer(a));
                    continue;
                }
                None => {
                    open = false;
                    continue;
                }
            },
            Some(outcome) = pending.next() => outcome,
            else => break,
        };
        match outcome {
            Outcome::Answered(_, _, Ok(())) => {
                stats.confirmed.fetch_add(1, Ordering::Relaxed);
                stats.unconfirmed.send_modify(|n| *n -= 1);
            }
            Outcome::Answered(token, nonce, Err(e)) => {
                let failed = stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if failed <= 3 || failed.is_power_of_two() {
                    tracing::warn!(
                        error = %e,
                        failed,
                        "the last-prices store did not confirm a price; it is sent again while \
                         it is its token's latest"
                    );
                }
                pending.push(Box::pin(async move {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    Outcome::RetryDue(token, nonce)
                }));
            }
            Outcome::RetryDue(token, nonce) => {
                let guard = latest.lock().await;
                let Some(l) = guard.get(&token).filter(|l| l.nonce == nonce) else {
                    // A newer price of the token is on its way to the store.
                    stats.unconfirmed.send_modify(|n| *n -= 1);
                    continue;
                };
                let sent = send(&js, l.subject.clone(), &nonce, l.payload.clone()).await;
                drop(guard);
                match sent {
                    Ok(ack) => {
                        stats.resent.fetch_add(1, Ordering::Relaxed);
                        pending.push(answer(Awaited { token, nonce, ack }));
                    }
                    Err(e) => pending.push(Box::pin(async move {
                        tracing::debug!(error = %e, "could not send a price again");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        Outcome::RetryDue(token, nonce)
                    })),
                }
            }
        }
    }
}
