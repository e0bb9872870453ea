//! Reading every stored price with an ordered consumer: at start, before
//! the first client is accepted ([`Load`]), and after a reconnect when
//! direct gets are not answered (`catch_up`). The consumer is opened
//! ([`open`]), then read until it is past the cut ([`Opened::read`]), each
//! message passed through the same judge as a live event and, at start,
//! de-duplicated in ingest's window.
//!
//! **The hand-over to live events** has neither a gap nor a step back. The
//! consumer is created *before* the live subscription and read until it is
//! past the last price the stream held once that subscription was in place
//! (the *cut*). A consumer delivers everything stored after its creation, in
//! order, so every price published before the subscription reaches the
//! gateway through the consumer, and every price published after it arrives
//! live as well: the ones the load already read are then duplicates (their
//! keys are in the ingest de-duplication window) and are dropped; the later
//! ones are applied after the load. Each price is applied once, in publish
//! order, so a stored price never replaces a newer live one and the snapshot
//! keeps meaning "the last price received".
//!
//! One narrow race is left: a price published by another connection in the
//! instant before the live subscription is in place, and not yet stored
//! when the cut is read, is missed by both. That token's snapshot is then
//! the one before it until its next price.

use std::time::Instant;

use anyhow::Context as _;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use futures_util::StreamExt;
use odin_protocol::{DedupWindow, Subjects};

use super::config::{LastPricesConfig, Reading};
use super::retry::{Pace, retry_until};
use super::stored::StoredPrices;
use super::stream::{ensure_stream, jetstream, stream_config};

/// The load at start, in its two steps around the live subscription (the
/// hand-over of the module comment): [`Load::open`] before the subscription
/// is made, [`Load::read`] after it. Without a store both do nothing.
pub(crate) struct Load<'a> {
    /// The store's settings and the deadline of the whole load.
    config: Option<(&'a LastPricesConfig, tokio::time::Instant)>,
    subjects: &'a Subjects,
    opened: Option<Opened>,
}

impl<'a> Load<'a> {
    /// Opens the store's consumer, waiting for JetStream at most the
    /// configured time (`load_timeout`, which the read shares).
    pub(crate) async fn open(
        nats: &async_nats::Client,
        config: Option<&'a LastPricesConfig>,
        subjects: &'a Subjects,
    ) -> Load<'a> {
        let config = config.map(|c| (c, tokio::time::Instant::now() + c.load_timeout));
        let opened = match config {
            Some((config, deadline)) => {
                open(nats, config, subjects, deadline, Reading::Start).await
            }
            None => None,
        };
        Load {
            config,
            subjects,
            opened,
        }
    }

    /// Reads the consumer opened (call this once the live subscription is
    /// in place), de-duplicating in ingest's `window`. A store that could
    /// not be read in time is logged and leaves the prices empty or partial.
    pub(crate) async fn read(self, window: &mut DedupWindow) -> StoredPrices {
        match (self.config, self.opened) {
            (Some((config, deadline)), Some(opened)) => {
                opened
                    .read(
                        config,
                        self.subjects,
                        Some(window),
                        deadline,
                        Reading::Start,
                    )
                    .await
            }
            _ => StoredPrices::default(),
        }
    }
}

/// The store, opened: the stream and an ordered consumer positioned on the
/// last price of every token (read with [`Opened::read`] once the live
/// subscription is in place).
pub(super) struct Opened {
    stream: stream::Stream,
    messages: Ordered,
    started: Instant,
}

/// Ensures the stream and creates the consumer, retrying until `deadline`
/// (JetStream may still be electing leaders, NATS may still be connecting).
/// `None`, after an error in the log, when that did not work in time.
pub(super) async fn open(
    nats: &async_nats::Client,
    config: &LastPricesConfig,
    subjects: &Subjects,
    deadline: tokio::time::Instant,
    reading: Reading,
) -> Option<Opened> {
    let started = Instant::now();
    let want = stream_config(config, subjects);
    let js = jetstream(nats);
    let attempt = || async {
        let stream = ensure_stream(&js, &want).await?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: subjects.all_prices(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..OrderedConfig::default()
            })
            .await
            .context("cannot create a consumer on the last-prices stream")?;
        let messages = consumer
            .messages()
            .await
            .context("cannot read the last-prices stream")?;
        anyhow::Ok(Opened {
            stream,
            messages,
            started,
        })
    };
    let opened = retry_until(
        deadline,
        Pace::BACKOFF,
        || async {
            match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(e)) => Err(format!("{e:#}")),
                Err(_) => Err("no answer".to_owned()),
            }
        },
        |failures, error| {
            if failures == 1 {
                tracing::warn!(stream = %config.stream, "last-prices stream not ready, retrying: {error}");
            } else {
                tracing::debug!(stream = %config.stream, "last-prices stream not ready, retrying: {error}");
            }
        },
    )
    .await;
    match opened {
        Ok(opened) => Some(opened),
        Err(error) => {
            tracing::error!(
                stream = %config.stream,
                "cannot load the last prices from JetStream within {:?} ({error}); {}",
                config.load_timeout,
                reading.without()
            );
            None
        }
    }
}

impl Opened {
    /// Reads the consumer until it is past the cut (the last price stored
    /// now; call this once the live subscription is in place), each message
    /// judged like a live event and, given a `window`, de-duplicated in it.
    /// Stops at `deadline` with what it has, after an error in the log.
    pub(super) async fn read(
        mut self,
        config: &LastPricesConfig,
        subjects: &Subjects,
        mut window: Option<&mut DedupWindow>,
        deadline: tokio::time::Instant,
        reading: Reading,
    ) -> StoredPrices {
        let mut stored = StoredPrices::default();
        let mut cut_error = None;
        let read = tokio::time::timeout_at(deadline, async {
            // A leader change can cost this request an answer; ask again
            // (within the deadline) rather than lose the whole load.
            let cut = retry_until(
                deadline,
                Pace::STEADY,
                || cut(&self.stream, subjects),
                |_, e| {
                    tracing::debug!(error = %format!("{e:#}"), "last-prices cut, retrying");
                    cut_error = Some(format!("{e:#}"));
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("no cut within {:?}: {e:#}", config.load_timeout))?;
            cut_error = None;
            if cut == 0 {
                return anyhow::Ok(());
            }
            let window = &mut window;
            while let Some(next) = self.messages.next().await {
                let message = match next {
                    Ok(m) => m,
                    // The ordered consumer recreates itself after a gap or
                    // a lost heartbeat; what it reports is worth a line only.
                    Err(e) => {
                        tracing::debug!(error = %e, "last-prices consumer");
                        continue;
                    }
                };
                let (sequence, pending) = match message.info() {
                    Ok(info) => (info.stream_sequence, info.pending),
                    Err(e) => anyhow::bail!("a stored price without its stream position: {e}"),
                };
                stored.take(
                    subjects,
                    window.as_deref_mut(),
                    message.subject.as_str(),
                    message.headers.as_ref(),
                    message.payload.clone(),
                );
                if sequence >= cut && pending == 0 {
                    return Ok(());
                }
            }
            anyhow::bail!("the last-prices consumer ended")
        })
        .await;
        let outcome = match read {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(match cut_error {
                Some(e) => format!("no cut within {:?}: {e}", config.load_timeout),
                None => format!("not finished within {:?}", config.load_timeout),
            }),
        };
        stored.complete = outcome.is_none();
        match outcome {
            None if reading == Reading::Start => tracing::info!(
                stream = %config.stream,
                tokens = stored.len(),
                invalid = stored.invalid,
                millis = self.started.elapsed().as_millis() as u64,
                "loaded the last prices"
            ),
            None => {}
            Some(error) => tracing::error!(
                stream = %config.stream,
                tokens = stored.len(),
                "reading the last prices failed ({error}); using the prices of the tokens \
                 read so far; {}",
                reading.without()
            ),
        }
        stored
    }
}

/// The stream sequence of the last price stored now; 0 when there is none.
async fn cut(stream: &stream::Stream, subjects: &Subjects) -> anyhow::Result<u64> {
    match stream
        .get_last_raw_message_by_subject(&subjects.all_prices())
        .await
    {
        Ok(m) => Ok(m.sequence),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(0),
        Err(e) => Err(anyhow::Error::new(e).context("cannot read the last stored price")),
    }
}
