//! The last `price_update` of every token, kept in NATS JetStream so that a
//! gateway that starts or restarts has every snapshot from its first client
//! on, instead of only after each token's next price.
//!
//! The store is a stream over the price subjects (`<prefix>.token.*.price`)
//! that keeps one message per subject: JetStream captures every price
//! published on core NATS, so nobody writes a price twice. At start the
//! gateway makes sure the stream exists ([`ensure_stream`]), reads the last
//! message of every price subject with an ordered consumer, passes each
//! through the same validation and de-duplication as a live event, and seeds
//! the router with them before it accepts a WebSocket client.
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
//!
//! **After a NATS reconnect** the gateway has missed what was published
//! while it was away, and core NATS keeps nothing for it. Once the client is
//! back and its subscription is in place again (a flush answered after the
//! resubscribe), a task of its own ([`catch_up_after_reconnects`]) reads the
//! stored price of every token it knows with a *direct get*, which any
//! replica answers (a cluster that lost the stream's leader needs seconds to
//! elect another, and the consumer above waits for it; a stream made
//! without `allow_direct` is read with the consumer instead). Tokens first
//! priced while it was away are not among those it knows: it then lists the
//! stream's price subjects (an answer of the leader, so after the known
//! tokens are restored) and reads those too. Each price goes to
//! [`Router::restore`], which applies it only if it is newer than
//! the token's last price and then drops the older live prices still on
//! their way, so a client never sees a token's price step back. Live events
//! keep flowing while it reads. A price published in the instant interest
//! is still spreading through a cluster can be missed by both, as above.
//!
//! Memory stays bounded by the number of tokens: the load keeps one message
//! per token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{
    self, DirectGetErrorKind, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, ErrorCode};
use futures_util::StreamExt;
use odin_protocol::dedup::Seen;
use odin_protocol::{DedupWindow, Event, Subjects, TokenId};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::ingest::validate;
use crate::router::{Route, Router, TokenEventKind};
use crate::shared::Shared;

/// How long JetStream itself remembers a `Nats-Msg-Id` to drop a repeated
/// price. Short on purpose: the gateway de-duplicates at ingest anyway, a
/// repeated price carries the same bytes, and a long window would make the
/// NATS server hold every nonce published for that long.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2);

/// How long one JetStream request may take before it is retried: a cluster
/// that is electing a leader does not answer at all, and the next attempt
/// may reach a node that does.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how the last prices are kept; `None` in
/// [`crate::ServerConfig::last_prices`] turns the store off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPricesConfig {
    /// The JetStream stream's name (`--last-prices-stream`).
    pub stream: String,
    /// Copies of the stream kept by a NATS cluster (`--last-prices-replicas`);
    /// used only when the gateway creates the stream.
    pub replicas: usize,
    /// How long a starting gateway waits for JetStream before it serves
    /// without the stored prices (`--last-prices-timeout`).
    pub load_timeout: Duration,
}

impl LastPricesConfig {
    /// A store in `stream`, one replica, the default 10 s wait.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            replicas: 1,
            load_timeout: Duration::from_secs(10),
        }
    }
}

/// The stream Odin keeps its last prices in: every price subject, one
/// message per subject, on disk, `config.replicas` copies.
pub fn stream_config(config: &LastPricesConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some(
            "Odin: the last price_update of every token (odin-server --last-prices-stream)".into(),
        ),
        subjects: vec![subjects.all_prices()],
        max_messages_per_subject: 1,
        discard: DiscardPolicy::Old,
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        // Any replica answers a direct get, so a catch-up after a reconnect
        // does not wait for a cluster that lost the stream's leader.
        allow_direct: true,
        ..stream::Config::default()
    }
}

/// What an existing stream does differently from `want` in the settings the
/// store relies on, one line each; empty when it matches.
pub fn differences(want: &stream::Config, have: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if have.subjects != want.subjects {
        out.push(format!(
            "subjects {:?} (want {:?})",
            have.subjects, want.subjects
        ));
    }
    if have.max_messages_per_subject != want.max_messages_per_subject {
        out.push(format!(
            "max messages per subject {} (want {})",
            have.max_messages_per_subject, want.max_messages_per_subject
        ));
    }
    if have.num_replicas.max(1) != want.num_replicas.max(1) {
        out.push(format!(
            "{} replicas (want {})",
            have.num_replicas, want.num_replicas
        ));
    }
    if have.allow_direct != want.allow_direct {
        out.push(format!(
            "allow direct {} (want {})",
            have.allow_direct, want.allow_direct
        ));
    }
    if have.retention != want.retention {
        out.push(format!(
            "retention {:?} (want {:?})",
            have.retention, want.retention
        ));
    }
    out
}

/// Returns the stream `want` names, creating it when it is missing. A stream
/// that exists with other settings is used as it is (it may be an
/// operator's) and the differences are logged as a warning.
pub async fn ensure_stream(
    js: &jetstream::Context,
    want: &stream::Config,
) -> anyhow::Result<stream::Stream> {
    match js.get_stream(&want.name).await {
        Ok(stream) => {
            let diff = differences(want, &stream.cached_info().config);
            if !diff.is_empty() {
                tracing::warn!(
                    stream = %want.name,
                    "the last-prices stream exists with other settings than odin-server \
                     would create: {}; using it as it is (delete it, or fix it with \
                     `nats stream edit`, to get the expected behaviour)",
                    diff.join("; ")
                );
            }
            Ok(stream)
        }
        Err(e) if is_not_found(&e) => {
            let stream = js
                .create_stream(want.clone())
                .await
                .with_context(|| format!("cannot create the last-prices stream {:?}", want.name))?;
            tracing::info!(
                stream = %want.name,
                subjects = ?want.subjects,
                replicas = want.num_replicas,
                "created the last-prices stream"
            );
            Ok(stream)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot look up the last-prices stream {:?}",
            want.name
        ))),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(err) if err.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Subscribes to every Odin subject and, when the store is on, loads the
/// stored prices around that: the consumer is opened before the
/// subscription and read after it (the hand-over of the module comment).
/// Only a failed subscription is an error; a store that cannot be read in
/// time is logged and leaves the preload empty or partial.
pub(crate) async fn subscribe_and_load(
    nats: &async_nats::Client,
    config: Option<&LastPricesConfig>,
    subjects: &Subjects,
    window: &mut DedupWindow,
) -> anyhow::Result<(async_nats::Subscriber, Preload)> {
    let subscribe = || async {
        nats.subscribe(subjects.all())
            .await
            .context("cannot subscribe to NATS")
    };
    let Some(config) = config else {
        return Ok((subscribe().await?, Preload::default()));
    };
    let deadline = tokio::time::Instant::now() + config.load_timeout;
    let store = open(nats, config, subjects, deadline, Reading::Start).await;
    let subscription = subscribe().await?;
    let preload = match store {
        Some(store) => {
            store
                .load(config, subjects, Some(window), deadline, Reading::Start)
                .await
        }
        None => Preload::default(),
    };
    Ok((subscription, preload))
}

/// Why the store is read, which decides what a failed read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// At start, before the first client.
    Start,
    /// After a NATS reconnect (or a start whose load did not finish).
    CatchUp,
}

impl Reading {
    /// What the gateway does without the prices, for the error line.
    fn without(self) -> &'static str {
        match self {
            Reading::Start => {
                "serving without them: each token's snapshot starts with its next price"
            }
            Reading::CatchUp => {
                "a token whose prices were missed while NATS was away keeps its earlier \
                 price until its next one"
            }
        }
    }
}

/// Reads the stored prices back after every NATS reconnect, and once at
/// once when the load at start did not finish (`loaded` false), applying
/// each that is newer than the gateway's ([`Router::restore`]); ends at
/// shutdown. Reconnects that come while it reads are served by one more
/// read.
pub(crate) async fn catch_up_after_reconnects(
    shared: Arc<Shared>,
    config: LastPricesConfig,
    mut connections: watch::Receiver<u64>,
    loaded: bool,
) {
    // Connections made before serving were covered by the load at start.
    connections.borrow_and_update();
    let shutdown = shared.shutdown.clone();
    // Cleared once direct gets went unanswered: later catch-ups go straight
    // to the consumer.
    let mut direct = true;
    let work = async {
        if !loaded {
            catch_up(&shared, &config, &mut direct).await;
        }
        while connections.changed().await.is_ok() {
            connections.borrow_and_update();
            catch_up(&shared, &config, &mut direct).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown.cancelled() => {}
    }
}

/// One catch-up: waits until the live subscription is in place again, then
/// reads and restores every stored price (within the configured wait), by
/// direct gets while `direct` holds.
async fn catch_up(shared: &Shared, config: &LastPricesConfig, direct: &mut bool) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.load_timeout;
    // The client resubscribes before it takes any request, so the answer to
    // this flush means the server has the subscription back: every price
    // from here on arrives live, every earlier one is in the store.
    match tokio::time::timeout_at(deadline, shared.nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no catch-up on the last prices: NATS flush failed");
            return;
        }
        Err(_) => {
            tracing::warn!("no catch-up on the last prices: NATS did not answer a flush in time");
            return;
        }
    }
    let subjects = &shared.config.subjects;
    let known: Vec<String> = shared
        .router
        .token_ids()
        .iter()
        .map(|id| subjects.price(id))
        .collect();
    let read = if *direct {
        read_direct(shared, config, deadline, known.clone()).await
    } else {
        None
    };
    let by_direct_gets = read.is_some();
    let preload = match read {
        Some(preload) => preload,
        None => {
            *direct = false;
            let Some(store) =
                open(&shared.nats, config, subjects, deadline, Reading::CatchUp).await
            else {
                return;
            };
            store
                .load(config, subjects, None, deadline, Reading::CatchUp)
                .await
        }
    };
    let read = preload.prices.len();
    let restored = preload.restore(shared);
    tracing::info!(
        stream = %config.stream,
        read,
        restored,
        millis = started.elapsed().as_millis() as u64,
        "caught up on the last prices after a NATS (re)connect"
    );
    if by_direct_gets {
        catch_up_on_unknown_tokens(shared, config, deadline, &known).await;
    }
}

/// The second step of a catch-up by direct gets: tokens the gateway had
/// never seen before it lost NATS (first priced while it was away) are not
/// among those it asked for, so it lists the stream's price subjects and
/// reads the ones it did not ask for. Listing needs the stream's leader,
/// which a cluster that lost it takes seconds to elect: this runs after the
/// known tokens are restored, so they do not wait for it.
async fn catch_up_on_unknown_tokens(
    shared: &Shared,
    config: &LastPricesConfig,
    deadline: tokio::time::Instant,
    known: &[String],
) {
    let started = Instant::now();
    let Some(stored) = stored_price_subjects(shared, config, deadline).await else {
        return;
    };
    let known: std::collections::HashSet<&str> = known.iter().map(String::as_str).collect();
    let unknown: Vec<String> = stored
        .into_iter()
        .filter(|subject| !known.contains(subject.as_str()))
        .collect();
    if unknown.is_empty() {
        return;
    }
    let asked = unknown.len();
    let Some(preload) = read_direct(shared, config, deadline, unknown).await else {
        return;
    };
    let restored = preload.restore(shared);
    tracing::info!(
        stream = %config.stream,
        asked,
        restored,
        millis = started.elapsed().as_millis() as u64,
        "caught up on the last prices of tokens first priced while NATS was away"
    );
}

/// Every price subject the stream holds a message on, retried until
/// `deadline` (the stream's leader answers, and may still be elected);
/// `None`, after a warning, when no answer came in time.
async fn stored_price_subjects(
    shared: &Shared,
    config: &LastPricesConfig,
    deadline: tokio::time::Instant,
) -> Option<Vec<String>> {
    use futures_util::TryStreamExt as _;
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(shared.nats.clone());
    let filter = shared.config.subjects.all_prices();
    let list = || async {
        let stream = js.get_stream_no_info(&config.stream).await?;
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(&filter)
            .await?
            .try_collect()
            .await?;
        anyhow::Ok(subjects.into_iter().map(|(subject, _)| subject).collect())
    };
    loop {
        match list().await {
            Ok(subjects) => return Some(subjects),
            Err(e) => {
                if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                    tracing::warn!(
                        stream = %config.stream,
                        error = %e,
                        "cannot list the stored prices within {:?}: a token first \
                         priced while NATS was away keeps no snapshot until its next price",
                        config.load_timeout
                    );
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The store, opened: the stream and an ordered consumer positioned on the
/// last price of every token (read with [`Opened::load`] once the live
/// subscription is in place).
struct Opened {
    stream: stream::Stream,
    messages: Ordered,
    started: Instant,
}

/// Reads the stored price on each of `subjects` with direct gets (answered
/// by any replica), retrying those that failed until `deadline`.
/// `None` when not one direct get is answered at first (a stream without
/// `allow_direct` lets them time out): the caller then reads the stream with
/// a consumer.
async fn read_direct(
    shared: &Shared,
    config: &LastPricesConfig,
    deadline: tokio::time::Instant,
    mut pending: Vec<String>,
) -> Option<Preload> {
    use futures_util::stream::{self as futures_stream, StreamExt as _};
    /// Direct gets in flight at once.
    const IN_FLIGHT: usize = 64;
    let subjects = &shared.config.subjects;
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(shared.nats.clone());
    let stream = js.get_stream_no_info(&config.stream).await.ok()?;
    let mut preload = Preload::default();
    let mut first = true;
    while !pending.is_empty() {
        let stream = &stream;
        let results: Vec<_> = futures_stream::iter(pending.drain(..))
            .map(|subject| async move {
                let got = stream.direct_get_last_for_subject(&subject).await;
                (subject, got)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let asked = results.len();
        let mut last_error = None;
        for (subject, got) in results {
            match got {
                Ok(m) => preload.take(
                    subjects,
                    None,
                    &async_nats::Message {
                        subject: m.subject,
                        reply: None,
                        length: m.payload.len(),
                        payload: m.payload,
                        headers: Some(m.headers),
                        status: None,
                        description: None,
                    },
                ),
                Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {}
                Err(e) => {
                    last_error = Some(e.to_string());
                    pending.push(subject);
                }
            }
        }
        if first && pending.len() == asked && asked > 0 {
            tracing::info!(
                stream = %config.stream,
                error = last_error.as_deref().unwrap_or_default(),
                "no direct get of a last price was answered (a stream without \
                 allow_direct?); reading the last prices with a consumer"
            );
            return None;
        }
        first = false;
        if !pending.is_empty() {
            if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                tracing::error!(
                    stream = %config.stream,
                    missing = pending.len(),
                    "cannot read every stored price back within {:?} ({}); {}",
                    config.load_timeout,
                    last_error.unwrap_or_default(),
                    Reading::CatchUp.without()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    preload.complete = pending.is_empty();
    Some(preload)
}

/// Ensures the stream and creates the consumer, retrying until `deadline`
/// (JetStream may still be electing leaders, NATS may still be connecting).
/// `None`, after an error in the log, when that did not work in time.
async fn open(
    nats: &async_nats::Client,
    config: &LastPricesConfig,
    subjects: &Subjects,
    deadline: tokio::time::Instant,
    reading: Reading,
) -> Option<Opened> {
    let started = Instant::now();
    let want = stream_config(config, subjects);
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(nats.clone());
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
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let error = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(opened)) => return Some(opened),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "no answer".to_owned(),
        };
        failures += 1;
        if tokio::time::Instant::now() + backoff >= deadline {
            tracing::error!(
                stream = %config.stream,
                "cannot load the last prices from JetStream within {:?} ({error}); {}",
                config.load_timeout,
                reading.without()
            );
            return None;
        }
        if failures == 1 {
            tracing::warn!(stream = %config.stream, "last-prices stream not ready, retrying: {error}");
        } else {
            tracing::debug!(stream = %config.stream, "last-prices stream not ready, retrying: {error}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

impl Opened {
    /// Reads the consumer until it is past the cut (the last price stored
    /// now; call this once the live subscription is in place), each message
    /// judged like a live event and, given a `window`, de-duplicated in it.
    /// Stops at `deadline` with what it has, after an error in the log.
    async fn load(
        mut self,
        config: &LastPricesConfig,
        subjects: &Subjects,
        mut window: Option<&mut DedupWindow>,
        deadline: tokio::time::Instant,
        reading: Reading,
    ) -> Preload {
        let mut preload = Preload::default();
        let mut cut_error = None;
        let read = tokio::time::timeout_at(deadline, async {
            // A leader change can cost this request an answer; ask again
            // (within the deadline) rather than lose the whole load.
            let cut = loop {
                match cut(&self.stream, subjects).await {
                    Ok(cut) => {
                        cut_error = None;
                        break cut;
                    }
                    Err(e) => {
                        tracing::debug!(error = %format!("{e:#}"), "last-prices cut, retrying");
                        cut_error = Some(format!("{e:#}"));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            };
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
                preload.take(subjects, window.as_deref_mut(), &message.message);
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
        preload.complete = outcome.is_none();
        match outcome {
            None if reading == Reading::Start => tracing::info!(
                stream = %config.stream,
                tokens = preload.prices.len(),
                invalid = preload.invalid,
                millis = self.started.elapsed().as_millis() as u64,
                "loaded the last prices"
            ),
            None => {}
            Some(error) => tracing::error!(
                stream = %config.stream,
                tokens = preload.prices.len(),
                "reading the last prices failed ({error}); using the prices of the tokens \
                 read so far; {}",
                reading.without()
            ),
        }
        preload
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

/// What the load found: the last valid price of each token, and counts for
/// `/stats`. Applied to the router before the first client is accepted, or
/// restored into it after a reconnect.
#[derive(Debug, Default)]
pub(crate) struct Preload {
    /// One frame per token with its `timestamp`, exactly as stored (and as
    /// first published).
    prices: HashMap<TokenId, (f64, Utf8Bytes)>,
    /// The whole store was read.
    complete: bool,
    /// Stored messages read, invalid and duplicate ones included.
    received: u64,
    /// Stored messages dropped as invalid.
    invalid: u64,
    /// Stored messages dropped as duplicates.
    duplicates: u64,
}

impl Preload {
    /// Whether the whole store was read.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// Judges one stored message like a live one: validated, then (given a
    /// `window`) de-duplicated; a valid price replaces the token's earlier
    /// one.
    fn take(
        &mut self,
        subjects: &Subjects,
        window: Option<&mut DedupWindow>,
        msg: &async_nats::Message,
    ) {
        self.received += 1;
        let msg_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.as_str());
        let valid = match validate(subjects, msg.subject.as_str(), msg_id, msg.payload.clone()) {
            Ok(v) => v,
            Err(e) => {
                self.invalid += 1;
                tracing::debug!(subject = %msg.subject, error = %e, "dropped an invalid stored price");
                return;
            }
        };
        if let Some(window) = window
            && window.observe(&valid.dedup_key, std::time::Instant::now()) == Seen::Duplicate
        {
            self.duplicates += 1;
            return;
        }
        match valid.event {
            Event::PriceUpdate(p) => {
                self.prices.insert(p.token_id, (p.timestamp, valid.text));
            }
            // The consumer reads price subjects only, and validation ties the
            // type to the subject; anything else is not a price to keep.
            other => {
                self.invalid += 1;
                tracing::debug!(
                    kind = other.type_name(),
                    "dropped a stored event that is no price"
                );
            }
        }
    }

    /// Seeds the router's last prices and counts the stored messages in
    /// `/stats` (received, invalid, duplicates; not in the ingest latency,
    /// which measures live events).
    pub(crate) fn apply(self, shared: &Shared) {
        let metrics = &shared.metrics;
        metrics.messages_received.inc_by(self.received);
        metrics.invalid_events.inc_by(self.invalid);
        metrics.duplicates_dropped.inc_by(self.duplicates);
        let mut wakes = Vec::new();
        for (id, (timestamp, text)) in &self.prices {
            shared.router.deliver(
                Route::Token(
                    id,
                    TokenEventKind::Price {
                        timestamp: *timestamp,
                    },
                ),
                text,
                &mut wakes,
            );
        }
        // Nobody is subscribed yet, so nobody is woken; done for form.
        Router::wake_all(&mut wakes);
    }

    /// Restores the prices read after a reconnect into a serving router:
    /// each is applied, and sent to the token's subscribers, only if it is
    /// newer than the token's last price ([`Router::restore`]). Returns how
    /// many were. Stored messages are not counted as received again.
    pub(crate) fn restore(self, shared: &Shared) -> u64 {
        let mut wakes = Vec::new();
        let mut restored = 0;
        for (id, (timestamp, text)) in &self.prices {
            if shared.router.restore(id, *timestamp, text, &mut wakes) {
                restored += 1;
            }
        }
        Router::wake_all(&mut wakes);
        shared.metrics.prices_restored.inc_by(restored);
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_keeps_one_price_per_token_on_every_price_subject() {
        let mut config = LastPricesConfig::new("ODIN_LAST_PRICES");
        config.replicas = 3;
        let want = stream_config(&config, &Subjects::new("acme").unwrap());
        assert_eq!(want.subjects, ["acme.token.*.price"]);
        assert_eq!(want.max_messages_per_subject, 1);
        assert_eq!(want.num_replicas, 3);
        assert!(differences(&want, &want).is_empty());
        let other = stream::Config {
            max_messages_per_subject: 5,
            num_replicas: 1,
            ..want.clone()
        };
        let diff = differences(&want, &other);
        assert_eq!(diff.len(), 2, "{diff:?}");
    }

    #[test]
    fn stored_messages_are_judged_like_live_ones() {
        let subjects = Subjects::default();
        let mut window = DedupWindow::new(Duration::from_secs(60), 100);
        let mut preload = Preload::default();
        let msg = |subject: &str, payload: &'static str| async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: payload.into(),
            headers: None,
            status: None,
            description: None,
            length: payload.len(),
        };
        let p1 = r#"{"type":"price_update","tokenId":"BTC","price":1.0,"source":"trade","timestamp":1.5,"nonce":"n1"}"#;
        let p2 = r#"{"type":"price_update","tokenId":"BTC","price":2.0,"source":"trade","timestamp":2.5,"nonce":"n2"}"#;
        preload.take(
            &subjects,
            Some(&mut window),
            &msg("odin.token.BTC.price", p1),
        );
        preload.take(
            &subjects,
            Some(&mut window),
            &msg("odin.token.BTC.price", p2),
        );
        preload.take(
            &subjects,
            Some(&mut window),
            &msg("odin.token.BTC.price", p1),
        );
        preload.take(
            &subjects,
            Some(&mut window),
            &msg("odin.token.ETH.price", "{not json"),
        );
        assert_eq!(preload.prices.len(), 1);
        assert_eq!(
            preload.prices[&TokenId::parse("BTC").unwrap()].1.as_str(),
            p2
        );
        assert_eq!(
            (preload.received, preload.invalid, preload.duplicates),
            (4, 1, 1)
        );
        assert!(window.contains("n1", std::time::Instant::now()));
    }
}
