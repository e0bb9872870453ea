//! What the fault tests share: reference clients whose events are folded
//! into what their application has seen, a NATS subscriber that knows the
//! last price published of every token, and a bare connection that keeps
//! every event frame it gets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use odin_harness::client::{ClientConfig, ClientEvent, TestClient, connect_raw};
use odin_harness::nats::{NatsOptions, NatsServer};
use odin_harness::server::Endpoint;
use odin_harness::wait::LIMIT;
use odin_protocol::message::ChannelRequest;
use odin_protocol::{ClientMessage, Event, ServerMessage};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Back-off of the reference clients: short, so reconnects are quick, yet a
/// real capped exponential back-off with jitter.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// Longest back-off delay of the reference clients.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// One stand-alone NATS server with JetStream.
pub(crate) async fn jetstream_nats() -> NatsServer {
    NatsServer::start_with(NatsOptions {
        jetstream: true,
        ..NatsOptions::default()
    })
    .await
    .expect("NATS with JetStream starts")
}

/// The subject every server subscribes to (default prefix).
pub(crate) fn all_subjects() -> String {
    odin_protocol::Subjects::default().all()
}

/// The ids of the first `n` tokens the publisher simulates (BTC, ETH, …).
pub(crate) fn token_ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|rank| odin_publisher::universe::token_id(rank).to_string())
        .collect()
}

/// `token.<id>` for every id.
pub(crate) fn token_channels(tokens: &[String]) -> Vec<String> {
    tokens.iter().map(|t| format!("token.{t}")).collect()
}

/// A reference client of `endpoint` on `channels` with the short back-off.
pub(crate) fn client_config(endpoint: &Endpoint, channels: &[String]) -> ClientConfig {
    ClientConfig::new(endpoint.ws_url(), channels.iter().cloned())
        .with_backoff(BACKOFF_BASE, BACKOFF_CAP)
}

/// How many delivered messages after a `subscribed` are kept: enough for
/// the snapshot that follows it.
const KEPT_AFTER_SUBSCRIBED: usize = 64;

/// What a reference client's application has seen, folded from its events.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Every event nonce delivered to the application.
    pub(crate) nonces: HashSet<String>,
    /// Nonces delivered to the application more than once (must stay empty).
    pub(crate) repeated: Vec<String>,
    /// Delivered events by `type`.
    pub(crate) by_type: BTreeMap<&'static str, u64>,
    /// The latest delivered `price_update` of each token: `(nonce, price)`.
    pub(crate) latest: HashMap<String, (String, f64)>,
    /// Events the client dropped as duplicates before the application.
    pub(crate) duplicates: u64,
    /// `subscribed` answers received (one per connection).
    pub(crate) subscribed: u32,
    /// The first delivered events after the latest `subscribed`, in order.
    pub(crate) since_subscribed: Vec<ServerMessage>,
    /// Close codes of the connections that ended (`None`: no close frame).
    pub(crate) disconnects: Vec<Option<u16>>,
    /// HTTP status of each failed attempt (`None`: no HTTP answer).
    pub(crate) connect_failures: Vec<Option<u16>>,
    /// Every back-off delay the client waited.
    pub(crate) backoffs: Vec<Duration>,
    /// Frames that were no valid server message.
    pub(crate) invalid: u64,
}

impl Seen {
    fn record(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::Message { message, .. } => {
                let nonce = message.nonce().to_string();
                if !self.nonces.insert(nonce.clone()) {
                    self.repeated.push(nonce.clone());
                }
                let kind = message.clone().into_event().map_or("?", |e| e.type_name());
                *self.by_type.entry(kind).or_default() += 1;
                if let ServerMessage::PriceUpdate(p) = message {
                    self.latest.insert(p.token_id.to_string(), (nonce, p.price));
                }
                if self.since_subscribed.len() < KEPT_AFTER_SUBSCRIBED {
                    self.since_subscribed.push(message.clone());
                }
            }
            ClientEvent::Duplicate { .. } => self.duplicates += 1,
            ClientEvent::Subscribed(_) => {
                self.subscribed += 1;
                self.since_subscribed.clear();
            }
            ClientEvent::Disconnected { code, .. } => self.disconnects.push(*code),
            ClientEvent::ConnectFailed { status, .. } => self.connect_failures.push(*status),
            ClientEvent::BackingOff { delay } => self.backoffs.push(*delay),
            ClientEvent::Invalid { .. } => self.invalid += 1,
            ClientEvent::Connected(_) | ClientEvent::Control(_) | ClientEvent::Stopped => {}
        }
    }

    /// Whether the latest price of every token in `tokens` is known.
    pub(crate) fn has_price_of_each(&self, tokens: &[String]) -> bool {
        tokens.iter().all(|t| self.latest.contains_key(t))
    }

    /// A one-line account for failure messages.
    fn summary(&self) -> String {
        let mut tokens: Vec<&String> = self.latest.keys().collect();
        tokens.sort();
        format!(
            "delivered {:?}, {} client-side duplicates, {} subscribed, disconnects {:?}, \
             {} failed attempts, prices of {tokens:?}",
            self.by_type,
            self.duplicates,
            self.subscribed,
            self.disconnects,
            self.connect_failures.len(),
        )
    }
}

/// A [`TestClient`] with what its application has seen so far.
pub(crate) struct Watched {
    /// Names the client in failure messages.
    pub(crate) name: String,
    /// The tokens whose channels it subscribes to.
    pub(crate) tokens: Vec<String>,
    pub(crate) client: TestClient,
    pub(crate) seen: Seen,
}

impl Watched {
    /// Spawns a reference client of `config`, calling `token` before every
    /// attempt; `tokens` are the tokens among its channels.
    pub(crate) fn spawn(
        name: impl Into<String>,
        config: ClientConfig,
        tokens: Vec<String>,
        token: impl Fn() -> String + Send + Sync + 'static,
    ) -> Watched {
        Watched {
            name: name.into(),
            tokens,
            client: TestClient::spawn(config, token),
            seen: Seen::default(),
        }
    }

    /// Folds the client's events into [`Watched::seen`] until `done` holds
    /// (checked first, then after every event), within `limit`.
    pub(crate) async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Seen) -> bool,
    ) -> anyhow::Result<()> {
        if done(&self.seen) {
            return Ok(());
        }
        let seen = &mut self.seen;
        let found = self
            .client
            .wait_for(what, limit, |event| {
                seen.record(&event);
                done(seen).then_some(())
            })
            .await;
        found.with_context(|| format!("client {}: {}", self.name, self.seen.summary()))
    }

    /// Waits until the application has a price of every token it watches.
    pub(crate) async fn until_price_of_each_token(&mut self) -> anyhow::Result<()> {
        let tokens = self.tokens.clone();
        self.until("a price of every watched token", LIMIT, |s| {
            s.has_price_of_each(&tokens)
        })
        .await
    }
}

/// The last `price_update` published of each token, as a NATS subscriber
/// sees them: NATS keeps one publisher's order on a subject, so this is the
/// latest price every client must end on.
pub(crate) struct LatestPrices {
    log: watch::Receiver<PriceLog>,
    task: JoinHandle<()>,
}

/// What [`LatestPrices`] has seen.
#[derive(Debug, Clone, Default)]
pub(crate) struct PriceLog {
    /// `price_update` messages seen, duplicates included.
    pub(crate) count: u64,
    /// Per token, the last one: `(nonce, price)`.
    pub(crate) latest: HashMap<String, (String, f64)>,
}

impl LatestPrices {
    /// Subscribes to every price subject on `url`; the subscription is in
    /// place when this returns.
    pub(crate) async fn start(url: &str) -> anyhow::Result<LatestPrices> {
        let client = timeout(LIMIT, async_nats::connect(url))
            .await
            .context("NATS connect timed out")??;
        let prefix = odin_protocol::subject::DEFAULT_PREFIX;
        let mut prices = client.subscribe(format!("{prefix}.token.*.price")).await?;
        // A round trip on this connection: once our own message comes back,
        // the server has processed the subscription sent before it.
        let inbox = client.new_inbox();
        let mut echo = client.subscribe(inbox.clone()).await?;
        client.publish(inbox, "ping".into()).await?;
        timeout(LIMIT, echo.next())
            .await
            .context("no NATS round trip")?
            .context("the echo subscription ended")?;
        let (tx, log) = watch::channel(PriceLog::default());
        let task = tokio::spawn(async move {
            // Keeps the connection alive as long as the subscription.
            let _client = client;
            while let Some(m) = prices.next().await {
                let Ok(Event::PriceUpdate(p)) = serde_json::from_slice::<Event>(&m.payload) else {
                    continue;
                };
                tx.send_modify(|log| {
                    log.count += 1;
                    log.latest
                        .insert(p.token_id.to_string(), (p.nonce.to_string(), p.price));
                });
            }
        });
        Ok(LatestPrices { log, task })
    }

    /// Waits until `count` price updates have been seen, and returns the log.
    pub(crate) async fn wait_count(&mut self, count: u64) -> anyhow::Result<PriceLog> {
        let waited = timeout(LIMIT, self.log.wait_for(|l| l.count >= count))
            .await
            .map(|r| r.map(|log| log.clone()));
        match waited {
            Ok(Ok(log)) => Ok(log),
            Ok(Err(_)) => bail!("the price subscription ended"),
            Err(_) => bail!(
                "saw {} of {count} price updates on NATS within {LIMIT:?}",
                self.log.borrow().count
            ),
        }
    }
}

impl Drop for LatestPrices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bare connection subscribed to some channels whose every event frame is
/// read as soon as it arrives (so the server never sees a slow reader) and
/// kept, duplicates included: what reaches a client, before any client-side
/// de-duplication.
pub(crate) struct RawRecorder {
    rx: mpsc::UnboundedReceiver<ServerMessage>,
    task: JoinHandle<()>,
    /// The event frames received so far, in order.
    pub(crate) events: Vec<ServerMessage>,
}

impl RawRecorder {
    /// Connects to `endpoint` and subscribes to `channels`; live once this
    /// returns.
    pub(crate) async fn subscribe(
        endpoint: &Endpoint,
        channels: &[String],
    ) -> anyhow::Result<RawRecorder> {
        let mut raw = connect_raw(&endpoint.ws_url(), &endpoint.token("raw-recorder")).await?;
        match raw.next_message(LIMIT).await? {
            ServerMessage::ConnectionEstablished(_) => {}
            other => bail!("expected connection_established, got {other:?}"),
        }
        raw.send_json(&ClientMessage::Subscribe(ChannelRequest {
            channels: channels.to_vec(),
            id: None,
        }))
        .await?;
        loop {
            match raw.next_message(LIMIT).await? {
                ServerMessage::Subscribed(_) => break,
                ServerMessage::Heartbeat(_) => {}
                other => bail!("expected subscribed, got {other:?}"),
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // Ends when the connection does (or the recorder is dropped);
            // whoever waits on the channel then sees it closed.
            while let Ok(message) = raw.next_message(Duration::from_secs(3600)).await {
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Ok(RawRecorder {
            rx,
            task,
            events: Vec::new(),
        })
    }

    /// Keeps reading until `count` events have arrived in all.
    pub(crate) async fn until_count(&mut self, count: usize) -> anyhow::Result<()> {
        let reached = timeout(LIMIT, async {
            while self.events.len() < count {
                match self.rx.recv().await {
                    Some(message) if message.clone().into_event().is_some() => {
                        self.events.push(message);
                    }
                    Some(_) => {}
                    None => return false,
                }
            }
            true
        })
        .await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => bail!(
                "the raw connection ended after {} of {count} events",
                self.events.len()
            ),
            Err(_) => bail!("{} of {count} events within {LIMIT:?}", self.events.len()),
        }
    }

    /// Keeps reading until the event with `nonce` has arrived.
    pub(crate) async fn until_nonce(&mut self, nonce: &str) -> anyhow::Result<()> {
        let found = timeout(LIMIT, async {
            while let Some(message) = self.rx.recv().await {
                let done = message.nonce().as_str() == nonce;
                if message.clone().into_event().is_some() {
                    self.events.push(message);
                }
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        match found {
            Ok(true) => Ok(()),
            Ok(false) => bail!(
                "the raw connection ended before event {nonce} (after {} events)",
                self.events.len()
            ),
            Err(_) => bail!(
                "no event {nonce} within {LIMIT:?} (after {} events)",
                self.events.len()
            ),
        }
    }
}

impl Drop for RawRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
