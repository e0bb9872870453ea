//! Reading the stored prices back after a NATS reconnect ([`CatchUp`]).
//!
//! After a reconnect the gateway has missed what was published while it
//! was away, and core NATS keeps nothing for it. Once the client is back
//! and its subscription is in place again (a flush answered after the
//! resubscribe), a task of its own reads the stored price of every token it
//! knows with a *direct get*, which any replica answers (a cluster that lost
//! the stream's leader needs seconds to elect another, and a consumer waits
//! for it; a stream made without `allow_direct` is read with the consumer
//! instead, `load`). Tokens first priced while it was away are not among
//! those it knows: it then lists the stream's price subjects (an answer of
//! the leader, so after the known tokens are restored) and reads those too.
//! Each price goes to [`Router::restore`], which applies it only if it is
//! newer than the token's last price and then drops the older live prices
//! still on their way, so a client never sees a token's price step back.
//! Live events keep flowing while it reads. A price published in the
//! instant interest is still spreading through a cluster can be missed by
//! both the catch-up and the live subscription.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::stream::{self, DirectGetErrorKind};
use futures_util::StreamExt as _;
use odin_protocol::Subjects;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{LastPricesConfig, Reading};
use super::load::open;
use super::retry::{Pace, Retry, retry_until};
use super::stored::StoredPrices;
use super::stream::jetstream;
use crate::metrics::Metrics;
use crate::router::Router;

/// What the catch-up needs: the store, the first NATS client, and the
/// router (and its metrics) the prices are restored into.
pub(crate) struct CatchUp {
    pub(crate) config: LastPricesConfig,
    pub(crate) nats: async_nats::Client,
    pub(crate) subjects: Subjects,
    pub(crate) router: Arc<Router>,
    pub(crate) metrics: Arc<Metrics>,
}

impl CatchUp {
    /// Reads the stored prices back after every NATS reconnect counted by
    /// `connections`, and once at once when the load at start did not
    /// finish (`loaded` false), applying each that is newer than the
    /// gateway's ([`Router::restore`]); ends at `shutdown`. Reconnects that
    /// come while it reads are served by one more read. So is each recovery
    /// of the store counted by `recoveries` (the gateway's NATS node was
    /// cut off from its cluster: [`super::StoreHealth`]), read from the
    /// stream's leader, since the node's own replica may still be behind.
    pub(crate) async fn after_reconnects(
        self,
        mut connections: watch::Receiver<u64>,
        mut recoveries: watch::Receiver<u64>,
        loaded: bool,
        shutdown: CancellationToken,
    ) {
        // Connections made before serving were covered by the load at start.
        connections.borrow_and_update();
        // Cleared once direct gets went unanswered: later catch-ups go
        // straight to the consumer.
        let mut direct = true;
        let work = async {
            if !loaded {
                self.once(&mut direct).await;
            }
            loop {
                tokio::select! {
                    changed = connections.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        connections.borrow_and_update();
                        self.once(&mut direct).await;
                    }
                    Ok(()) = recoveries.changed() => {
                        recoveries.borrow_and_update();
                        self.once(&mut false).await;
                    }
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = shutdown.cancelled() => {}
        }
    }

    /// One catch-up: waits until the live subscription is in place again,
    /// then reads and restores every stored price (within the configured
    /// wait), by direct gets while `direct` holds.
    async fn once(&self, direct: &mut bool) {
        let config = &self.config;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + config.load_timeout;
        // The client resubscribes before it takes any request, so the answer
        // to this flush means the server has the subscription back: every
        // price from here on arrives live, every earlier one is in the store.
        match tokio::time::timeout_at(deadline, self.nats.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no catch-up on the last prices: NATS flush failed");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    "no catch-up on the last prices: NATS did not answer a flush in time"
                );
                return;
            }
        }
        let known: Vec<String> = self
            .router
            .token_ids()
            .iter()
            .map(|id| self.subjects.price(id))
            .collect();
        let read = if *direct {
            self.read_direct(deadline, known.clone()).await
        } else {
            None
        };
        let by_direct_gets = read.is_some();
        let stored = match read {
            Some(stored) => stored,
            None => {
                *direct = false;
                let Some(opened) = open(
                    &self.nats,
                    config,
                    &self.subjects,
                    deadline,
                    Reading::CatchUp,
                )
                .await
                else {
                    return;
                };
                opened
                    .read(config, &self.subjects, None, deadline, Reading::CatchUp)
                    .await
            }
        };
        let read = stored.len();
        let restored = stored.restore(&self.router, &self.metrics);
        tracing::info!(
            stream = %config.stream,
            read,
            restored,
            millis = started.elapsed().as_millis() as u64,
            "caught up on the last prices after a NATS (re)connect"
        );
        if by_direct_gets {
            self.unknown_tokens(deadline, &known).await;
        }
    }

    /// The second step of a catch-up by direct gets: tokens the gateway had
    /// never seen before it lost NATS (first priced while it was away) are
    /// not among those it asked for, so it lists the stream's price subjects
    /// and reads the ones it did not ask for. Listing needs the stream's
    /// leader, which a cluster that lost it takes seconds to elect: this
    /// runs after the known tokens are restored, so they do not wait for it.
    async fn unknown_tokens(&self, deadline: tokio::time::Instant, known: &[String]) {
        let started = Instant::now();
        let Some(stored) = self.stored_price_subjects(deadline).await else {
            return;
        };
        let known: HashSet<&str> = known.iter().map(String::as_str).collect();
        let unknown: Vec<String> = stored
            .into_iter()
            .filter(|subject| !known.contains(subject.as_str()))
            .collect();
        if unknown.is_empty() {
            return;
        }
        let asked = unknown.len();
        let Some(stored) = self.read_direct(deadline, unknown).await else {
            return;
        };
        let restored = stored.restore(&self.router, &self.metrics);
        tracing::info!(
            stream = %self.config.stream,
            asked,
            restored,
            millis = started.elapsed().as_millis() as u64,
            "caught up on the last prices of tokens first priced while NATS was away"
        );
    }

    /// Every price subject the stream holds a message on, retried until
    /// `deadline` (the stream's leader answers, and may still be elected);
    /// `None`, after a warning, when no answer came in time.
    async fn stored_price_subjects(&self, deadline: tokio::time::Instant) -> Option<Vec<String>> {
        use futures_util::TryStreamExt as _;
        let js = jetstream(&self.nats);
        let filter = self.subjects.all_prices();
        let list = || async {
            let stream = js.get_stream_no_info(&self.config.stream).await?;
            let subjects: Vec<(String, usize)> = stream
                .info_with_subjects(&filter)
                .await?
                .try_collect()
                .await?;
            anyhow::Ok(subjects.into_iter().map(|(subject, _)| subject).collect())
        };
        match retry_until(deadline, Pace::STEADY, list, |_, _| {}).await {
            Ok(subjects) => Some(subjects),
            Err(e) => {
                tracing::warn!(
                    stream = %self.config.stream,
                    error = %e,
                    "cannot list the stored prices within {:?}: a token first \
                     priced while NATS was away keeps no snapshot until its next price",
                    self.config.load_timeout
                );
                None
            }
        }
    }

    /// Reads the stored price on each of `subjects` with direct gets
    /// (answered by any replica), retrying those that failed until
    /// `deadline`. `None` when not one direct get is answered at first (a
    /// stream without `allow_direct` lets them time out): the caller then
    /// reads the stream with a consumer.
    async fn read_direct(
        &self,
        deadline: tokio::time::Instant,
        mut pending: Vec<String>,
    ) -> Option<StoredPrices> {
        let config = &self.config;
        let js = jetstream(&self.nats);
        let stream = js.get_stream_no_info(&config.stream).await.ok()?;
        let mut stored = StoredPrices::default();
        let mut retry = Retry::until(deadline, Pace::STEADY);
        loop {
            let asked = pending.len();
            let Some(error) = self.direct_gets(&stream, &mut pending, &mut stored).await else {
                break;
            };
            if retry.failures() == 0 && pending.len() == asked {
                tracing::info!(
                    stream = %config.stream,
                    error,
                    "no direct get of a last price was answered (a stream without \
                     allow_direct?); reading the last prices with a consumer"
                );
                return None;
            }
            if !retry.may_retry() {
                tracing::error!(
                    stream = %config.stream,
                    missing = pending.len(),
                    "cannot read every stored price back within {:?} ({error}); {}",
                    config.load_timeout,
                    Reading::CatchUp.without()
                );
                break;
            }
            retry.wait().await;
        }
        stored.complete = pending.is_empty();
        Some(stored)
    }

    /// One round of direct gets, of every subject in `pending`, at most
    /// [`Self::IN_FLIGHT`] at once: the prices found go into `stored`, the
    /// subjects whose get failed back into `pending`. Returns the last
    /// error, if any failed.
    async fn direct_gets(
        &self,
        stream: &stream::Stream<()>,
        pending: &mut Vec<String>,
        stored: &mut StoredPrices,
    ) -> Option<String> {
        let results: Vec<_> = futures_util::stream::iter(pending.drain(..))
            .map(|subject| async move {
                let got = stream.direct_get_last_for_subject(&subject).await;
                (subject, got)
            })
            .buffer_unordered(Self::IN_FLIGHT)
            .collect()
            .await;
        let mut last_error = None;
        for (subject, got) in results {
            match got {
                Ok(m) => stored.take(
                    &self.subjects,
                    None,
                    m.subject.as_str(),
                    Some(&m.headers),
                    m.payload,
                ),
                Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {}
                Err(e) => {
                    last_error = Some(e.to_string());
                    pending.push(subject);
                }
            }
        }
        last_error
    }

    /// Direct gets in flight at once.
    const IN_FLIGHT: usize = 64;
}
