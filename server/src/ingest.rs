//! Events from NATS into the router: each is judged ([`crate::event`]:
//! validated against the contract, a repeat dropped once by `Nats-Msg-Id`,
//! else the body's `nonce`), its ingest latency recorded, and its original
//! bytes routed.
//!
//! Ingest runs on a thread of its own ([`IngestThread`]), a current-thread
//! runtime that also runs the NATS clients' connection tasks: the start-up
//! makes the clients there ([`IngestThread::run_on`]), and once the stored
//! prices are in the router it hands the thread the loop with everything the
//! loop needs ([`IngestThread::ingest`], [`Ingest`]).

use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use odin_protocol::time::now_millis;
use odin_protocol::{DedupWindow, Event, Subjects};
use tokio_util::sync::CancellationToken;

use crate::event::{EventLimits, Judged, judge};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::router::{Route, Router, TokenEventKind};

/// The thread ingest runs on: a current-thread runtime of its own, so that
/// a burst of events is read and routed without queueing behind the
/// connection tasks it wakes (the writers run on the main runtime, the
/// operating system shares the cores). The NATS clients are made on it too
/// ([`IngestThread::run_on`]), so their connection tasks run beside ingest.
/// Dropping it stops the thread.
pub(crate) struct IngestThread {
    runtime: tokio::runtime::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: CancellationToken,
}

impl IngestThread {
    /// Starts the thread, idle until it is given work.
    pub(crate) fn spawn() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("odin-ingest".into())
            .spawn(move || runtime.block_on(stopped.cancelled()))?;
        Ok(Self {
            runtime: handle,
            thread: Some(thread),
            stop,
        })
    }

    /// Runs `work` on the thread and returns its output.
    pub(crate) async fn run_on<F>(&self, work: F) -> anyhow::Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .spawn(work)
            .await
            .map_err(|_| anyhow::anyhow!("the ingest thread died while connecting"))
    }

    /// Starts the ingest loop on the thread; it runs until [`Self::stop`].
    pub(crate) fn ingest(&self, ingest: Ingest) {
        self.runtime.spawn(ingest.run());
    }

    /// Stops the loop and waits (at most a second) for the thread.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), joined).await;
        }
    }
}

impl Drop for IngestThread {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Everything the ingest loop needs: the live subscriptions, the event
/// rules, the de-duplication window (which already holds the keys of any
/// stored prices loaded at start, so their live copies are not delivered
/// again), and where to count and route.
pub(crate) struct Ingest {
    /// The subscription to every Odin subject on the first connection.
    pub(crate) subscription: async_nats::Subscriber,
    /// The same on the second connection (`--nats-second-url`), if any.
    pub(crate) second: Option<async_nats::Subscriber>,
    pub(crate) subjects: Subjects,
    pub(crate) limits: EventLimits,
    pub(crate) window: DedupWindow,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) router: Arc<Router>,
}

impl Ingest {
    /// Consumes the subscriptions until they end (at shutdown). Both
    /// connections' events go through one loop and one window: per
    /// publisher, the first copy of each event comes in publish order
    /// whichever connection brings it.
    async fn run(self) {
        let Ingest {
            subscription,
            second,
            subjects,
            limits,
            window,
            metrics,
            router,
        } = self;
        let (subjects, limits, metrics, router) = (&subjects, &limits, &*metrics, &*router);
        match second {
            Some(second) => {
                let both = futures_util::stream::select(subscription, second);
                run(both, subjects, limits, metrics, router, window).await;
            }
            None => run(subscription, subjects, limits, metrics, router, window).await,
        }
    }
}

/// Most events handled before the writers they fed are woken.
const BURST: usize = 256;

/// Consumes `subscription` until it ends, de-duplicating in `window`.
///
/// Events that have already arrived are handled as one burst (up to
/// [`BURST`]) before any writer is woken, so each client gets a burst in one
/// write; a lone event is woken at once, as before.
async fn run(
    mut subscription: impl futures_util::Stream<Item = async_nats::Message> + Unpin,
    subjects: &Subjects,
    limits: &EventLimits,
    metrics: &Metrics,
    router: &Router,
    mut window: DedupWindow,
) {
    let mut wakes = Vec::new();
    let mut ingest = |msg, wakes: &mut Vec<Arc<Outbox>>| {
        ingest_one(subjects, limits, metrics, router, &mut window, msg, wakes);
    };
    while let Some(msg) = subscription.next().await {
        ingest(msg, &mut wakes);
        for _ in 1..BURST {
            match subscription.next().now_or_never() {
                Some(Some(msg)) => ingest(msg, &mut wakes),
                _ => break,
            }
        }
        Router::wake_all(&mut wakes);
    }
    tracing::debug!("NATS subscription ended");
}

/// Judges (against `limits` too), measures and routes one NATS message: what [`run`] does per message. It
/// takes the parts of the server state it uses rather than all of it, so the
/// instruction-count benchmark (`server/benches/instructions.rs`) can drive
/// it without a NATS client.
pub fn ingest_one(
    subjects: &Subjects,
    limits: &EventLimits,
    metrics: &Metrics,
    router: &Router,
    window: &mut DedupWindow,
    msg: async_nats::Message,
    wakes: &mut Vec<Arc<Outbox>>,
) {
    metrics.messages_received.inc();
    let now_ms = now_millis();
    let judged = judge(
        subjects,
        Some((limits, now_ms)),
        Some(window),
        msg.subject.as_str(),
        msg.headers.as_ref(),
        msg.payload,
    );
    match judged {
        Judged::Fresh(valid) => {
            metrics.observe_ingest_latency(now_ms - valid.event.timestamp());
            router.deliver(route_of(&valid.event), &valid.text, wakes);
        }
        Judged::Duplicate => {
            metrics.duplicates_dropped.inc();
        }
        Judged::Invalid(e) => {
            metrics.invalid_events.inc();
            tracing::debug!(subject = %msg.subject, error = %e, "dropped invalid event");
        }
    }
}

/// Where a validated event is routed.
fn route_of(event: &Event) -> Route<'_> {
    match event {
        Event::PriceUpdate(e) => Route::Token(
            &e.token_id,
            TokenEventKind::Price {
                timestamp: e.timestamp,
            },
        ),
        Event::VolumeUpdate(e) => Route::Token(&e.token_id, TokenEventKind::Volume),
        Event::TradeExecuted(e) => Route::Token(&e.token_id, TokenEventKind::Trade),
        Event::BatchUpdate(_) => Route::Batch,
        Event::MarketStats(_) => Route::Market,
    }
}
