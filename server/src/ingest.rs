//! Events from NATS into the router: validate each against the contract,
//! drop duplicates once (by `Nats-Msg-Id`, else the body's `nonce`), record
//! the ingest latency, and route the original bytes.

use std::sync::Arc;
use std::time::Instant;

use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use odin_protocol::dedup::Seen;
use odin_protocol::ids::validate_nonce;
use odin_protocol::time::now_millis;
use odin_protocol::{DedupWindow, Event, Subjects};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::EventLimits;
use crate::last_prices::Preload;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::router::{Route, Router, TokenEventKind};
use crate::shared::Shared;

/// An event that passed validation, with the bytes to forward unchanged.
#[derive(Debug)]
pub struct ValidEvent {
    /// The parsed event (for routing and latency).
    pub event: Event,
    /// The payload exactly as received, shared by every recipient.
    pub text: Utf8Bytes,
    /// The de-duplication key: the `Nats-Msg-Id` header when present and
    /// valid, else the body's `nonce`.
    pub dedup_key: String,
}

/// Why an event was dropped as invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidEvent {
    /// The subject is not one of the protocol's five forms.
    #[error("unknown subject {0:?}")]
    Subject(String),
    /// The payload is not UTF-8.
    #[error("payload is not UTF-8")]
    Utf8,
    /// The payload is not a valid event of a known type.
    #[error("payload is not a valid event: {0}")]
    Payload(String),
    /// The payload's type or token does not match its subject.
    #[error("payload {0} does not match subject {1:?}")]
    Mismatch(&'static str, String),
    /// A value outside the range `PROTOCOL.md` §1 allows (a price that is
    /// not positive, a negative volume, …).
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// A live event larger than `--max-event-bytes` (its size).
    #[error("{0} bytes is over the event size limit")]
    TooLarge(usize),
    /// A live event made longer ago than `--max-event-age`, or further in
    /// the future than `--max-clock-skew`: its latency would be a lie.
    #[error("timestamp {timestamp} is {off_by_ms:.0} ms outside the window around now")]
    Untimely {
        /// The event's `timestamp`.
        timestamp: f64,
        /// How far outside the window, in milliseconds.
        off_by_ms: f64,
    },
}

/// Checks one NATS message against `PROTOCOL.md` §1.
pub fn validate(
    subjects: &Subjects,
    subject: &str,
    msg_id: Option<&str>,
    payload: Bytes,
) -> Result<ValidEvent, InvalidEvent> {
    let kind = subjects
        .parse(subject)
        .ok_or_else(|| InvalidEvent::Subject(subject.to_owned()))?;
    let text = Utf8Bytes::try_from(payload).map_err(|_| InvalidEvent::Utf8)?;
    let event: Event =
        serde_json::from_str(text.as_str()).map_err(|e| InvalidEvent::Payload(e.to_string()))?;
    if event.type_name() != kind.event_type()
        || event.token_id().map(|t| t.as_str()) != kind.token_id()
    {
        return Err(InvalidEvent::Mismatch(
            event.type_name(),
            subject.to_owned(),
        ));
    }
    if let Some(field) = event.out_of_range() {
        return Err(InvalidEvent::OutOfRange(field));
    }
    let dedup_key = match msg_id.filter(|id| validate_nonce(id).is_ok()) {
        Some(id) => id.to_owned(),
        None => event.nonce().as_str().to_owned(),
    };
    Ok(ValidEvent {
        event,
        text,
        dedup_key,
    })
}

/// [`validate`], and what only a live event must respect: its size and its
/// timestamp window (`limits`, at `now_ms`).
pub fn validate_live(
    subjects: &Subjects,
    limits: &EventLimits,
    subject: &str,
    msg_id: Option<&str>,
    payload: Bytes,
    now_ms: f64,
) -> Result<ValidEvent, InvalidEvent> {
    if payload.len() > limits.max_bytes {
        return Err(InvalidEvent::TooLarge(payload.len()));
    }
    let valid = validate(subjects, subject, msg_id, payload)?;
    let timestamp = valid.event.timestamp();
    match limits.off_by_ms(timestamp, now_ms) {
        None => Ok(valid),
        Some(off_by_ms) => Err(InvalidEvent::Untimely {
            timestamp,
            off_by_ms,
        }),
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

/// The gateway's NATS clients: the first (`--nats-url`) and the second
/// (`--nats-second-url`), if any.
pub(crate) struct NatsClients {
    pub(crate) first: async_nats::Client,
    pub(crate) second: Option<async_nats::Client>,
}

/// What the ingest thread's set-up hands over: the client, the live
/// subscription, the de-duplication window it was given (holding the keys of
/// the stored prices loaded, if any) and those prices.
pub(crate) struct Connected {
    pub(crate) client: async_nats::Client,
    pub(crate) subscription: async_nats::Subscriber,
    /// The second connection (`--nats-second-url`) and its subscription to
    /// the same subjects, if any.
    pub(crate) second: Option<(async_nats::Client, async_nats::Subscriber)>,
    pub(crate) window: DedupWindow,
    pub(crate) preload: Preload,
}

/// The ingest loop and the NATS client's connection task on a thread of
/// their own (a current-thread runtime), so that a burst of events is read
/// and routed without queueing behind the connection tasks it wakes: the
/// writers run on the main runtime, the operating system shares the cores.
pub(crate) struct IngestThread {
    handle: std::thread::JoinHandle<()>,
    start: tokio::sync::oneshot::Sender<Arc<Shared>>,
    stop: tokio_util::sync::CancellationToken,
}

impl IngestThread {
    /// Starts the thread and runs `connect` there with the de-duplication
    /// window ingest will use; returns once it has the client, the
    /// subscription and the stored prices (the clients, handed back, are
    /// shared for `/health` and shutdown; the prices seed the router).
    pub(crate) async fn start<C, F>(
        window: DedupWindow,
        connect: C,
    ) -> anyhow::Result<(Self, NatsClients, Preload)>
    where
        C: FnOnce(DedupWindow) -> F + Send + 'static,
        F: std::future::Future<Output = anyhow::Result<Connected>>,
    {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (start, start_rx) = tokio::sync::oneshot::channel::<Arc<Shared>>();
        let stop = tokio_util::sync::CancellationToken::new();
        let thread_stop = stop.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = std::thread::Builder::new()
            .name("odin-ingest".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Connected {
                        client,
                        subscription,
                        second,
                        window,
                        preload,
                    } = match connect(window).await {
                        Ok(connected) => connected,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let clients = NatsClients {
                        first: client,
                        second: second.as_ref().map(|(client, _)| client.clone()),
                    };
                    let _ = ready_tx.send(Ok((clients, preload)));
                    let Ok(shared) = start_rx.await else { return };
                    // Both connections' events go through one loop and one
                    // window: per publisher, the first copy of each event
                    // comes in publish order whichever connection brings it.
                    let ingest = async {
                        match second {
                            Some((_second_client, second)) => {
                                let both = futures_util::stream::select(subscription, second);
                                run(both, shared, window).await;
                            }
                            None => run(subscription, shared, window).await,
                        }
                    };
                    tokio::select! {
                        () = ingest => {}
                        () = thread_stop.cancelled() => {}
                    }
                });
            })?;
        let (clients, preload) = ready_rx
            .await
            .map_err(|_| anyhow::anyhow!("the ingest thread died while connecting"))??;
        Ok((
            Self {
                handle,
                start,
                stop,
            },
            clients,
            preload,
        ))
    }

    /// Starts ingesting into `shared`.
    pub(crate) fn run(self, shared: Arc<Shared>) -> RunningIngest {
        let _ = self.start.send(shared);
        RunningIngest {
            handle: self.handle,
            stop: self.stop,
        }
    }
}

/// The ingest thread once started.
pub(crate) struct RunningIngest {
    handle: std::thread::JoinHandle<()>,
    stop: tokio_util::sync::CancellationToken,
}

impl RunningIngest {
    /// Stops the loop and waits (at most a second) for the thread.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let handle = self.handle;
        let joined = tokio::task::spawn_blocking(move || handle.join());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), joined).await;
    }
}

/// Most events handled before the writers they fed are woken.
const BURST: usize = 256;

/// Consumes the server's NATS subscription until it ends (at shutdown),
/// de-duplicating in `window` (which already holds the keys of any stored
/// prices loaded at start, so their live copies are not delivered again).
///
/// Events that have already arrived are handled as one burst (up to
/// [`BURST`]) before any writer is woken, so each client gets a burst in one
/// write; a lone event is woken at once, as before.
pub(crate) async fn run(
    mut subscription: impl futures_util::Stream<Item = async_nats::Message> + Unpin,
    shared: Arc<Shared>,
    mut window: DedupWindow,
) {
    let mut wakes = Vec::new();
    let mut ingest = |msg, wakes: &mut Vec<Arc<Outbox>>| {
        ingest_one(
            &shared.config.subjects,
            &shared.config.event_limits,
            &shared.metrics,
            &shared.router,
            &mut window,
            msg,
            wakes,
        );
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

/// Validates (against `limits` too), de-duplicates,
/// measures and routes one NATS message: what [`run`] does per message. It
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
    let msg_id = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(NATS_MESSAGE_ID))
        .map(|v| v.as_str());
    let now_ms = now_millis();
    let checked = validate_live(
        subjects,
        limits,
        msg.subject.as_str(),
        msg_id,
        msg.payload.clone(),
        now_ms,
    );
    let valid = match checked {
        Ok(v) => v,
        Err(e) => {
            metrics.invalid_events.inc();
            tracing::debug!(subject = %msg.subject, error = %e, "dropped invalid event");
            return;
        }
    };
    if window.observe(&valid.dedup_key, Instant::now()) == Seen::Duplicate {
        metrics.duplicates_dropped.inc();
        return;
    }
    metrics.observe_ingest_latency(now_ms - valid.event.timestamp());
    router.deliver(route_of(&valid.event), &valid.text, wakes);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: &str = r#"{"type":"price_update","tokenId":"BTC","price":1.0,"source":"trade","timestamp":1.5,"nonce":"body"}"#;

    #[test]
    fn live_events_respect_the_size_and_the_timestamp_window() {
        let s = Subjects::default();
        let limits = EventLimits {
            max_bytes: PRICE.len(),
            ..EventLimits::default()
        };
        let at = |now_ms: f64, payload: String| {
            validate_live(
                &s,
                &limits,
                "odin.token.BTC.price",
                None,
                Bytes::from(payload),
                now_ms,
            )
        };
        assert!(
            at(1.5, PRICE.to_owned()).is_ok(),
            "exactly the limit, and now"
        );
        assert_eq!(
            at(1.5, format!("{PRICE} ")).unwrap_err(),
            InvalidEvent::TooLarge(PRICE.len() + 1)
        );
        let an_hour_later = 1.5 + 3_600_000.0;
        assert!(at(an_hour_later, PRICE.to_owned()).is_ok(), "an hour old");
        assert!(matches!(
            at(an_hour_later + 1.0, PRICE.to_owned()),
            Err(InvalidEvent::Untimely { off_by_ms, .. }) if off_by_ms == 1.0
        ));
        assert!(
            matches!(
                at(1.5 - 60_001.0, PRICE.to_owned()),
                Err(InvalidEvent::Untimely { .. })
            ),
            "a minute and a millisecond ahead"
        );
    }

    #[test]
    fn refuses_values_out_of_range() {
        let s = Subjects::default();
        let bad = PRICE.replace(r#""price":1.0"#, r#""price":-5"#);
        assert_eq!(
            validate(&s, "odin.token.BTC.price", None, Bytes::from(bad)).unwrap_err(),
            InvalidEvent::OutOfRange("price")
        );
        let bad = PRICE.replace(r#""timestamp":1.5"#, r#""timestamp":-1e308"#);
        assert_eq!(
            validate(&s, "odin.token.BTC.price", None, Bytes::from(bad)).unwrap_err(),
            InvalidEvent::OutOfRange("timestamp")
        );
    }

    #[test]
    fn accepts_a_valid_event_and_keeps_its_bytes() {
        let s = Subjects::default();
        let v = validate(
            &s,
            "odin.token.BTC.price",
            None,
            Bytes::from_static(PRICE.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.text.as_str(), PRICE);
        assert_eq!(v.dedup_key, "body");
    }

    #[test]
    fn header_wins_over_body_nonce() {
        let s = Subjects::default();
        let v = validate(
            &s,
            "odin.token.BTC.price",
            Some("hdr"),
            Bytes::from_static(PRICE.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.dedup_key, "hdr");
        let v = validate(
            &s,
            "odin.token.BTC.price",
            Some(""),
            Bytes::from_static(PRICE.as_bytes()),
        )
        .unwrap();
        assert_eq!(v.dedup_key, "body");
    }

    #[test]
    fn refuses_mismatches_and_garbage() {
        let s = Subjects::default();
        let p = || Bytes::from_static(PRICE.as_bytes());
        assert!(matches!(
            validate(&s, "odin.token.ETH.price", None, p()),
            Err(InvalidEvent::Mismatch(..))
        ));
        assert!(matches!(
            validate(&s, "odin.trades.BTC", None, p()),
            Err(InvalidEvent::Mismatch(..))
        ));
        assert!(matches!(
            validate(&s, "odin.nope", None, p()),
            Err(InvalidEvent::Subject(_))
        ));
        assert!(matches!(
            validate(&s, "odin.token.BTC.price", None, Bytes::from_static(b"{}")),
            Err(InvalidEvent::Payload(_))
        ));
        assert!(matches!(
            validate(
                &s,
                "odin.token.BTC.price",
                None,
                Bytes::from_static(b"\xff")
            ),
            Err(InvalidEvent::Utf8)
        ));
    }
}
