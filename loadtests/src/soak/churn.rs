//! The soak's load: simulated clients that come and go (connect, subscribe,
//! read, change subscriptions, sometimes ping, leave by a close or by
//! dropping the socket; now and then a half-open connection or a bad token),
//! and a publisher whose token ids move on to a new generation every few
//! seconds, so the server's token table keeps gaining and evicting tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What every client and the publisher share.
pub struct Churn {
    /// `ws://host:port/ws`.
    pub ws_url: String,
    /// Mints a valid token.
    pub token: Arc<dyn Fn() -> String + Send + Sync>,
    /// A token signed with another secret (always refused).
    pub bad_token: String,
    /// The token generation being published now.
    pub generation: AtomicU64,
    /// Token ids per generation.
    pub tokens_per_generation: u64,
    /// When everything stops.
    pub deadline: Instant,
    /// What happened so far.
    pub counters: Counters,
}

/// Running totals of the churn (all cumulative).
#[derive(Debug, Default)]
pub struct Counters {
    /// WebSocket handshakes completed.
    pub connects: AtomicU64,
    /// Sessions left with a close handshake.
    pub clean_closes: AtomicU64,
    /// Sessions left by dropping the socket.
    pub drops: AtomicU64,
    /// Half-open connections (a request head never finished).
    pub half_open: AtomicU64,
    /// Bad tokens answered `401`.
    pub refused: AtomicU64,
    /// Channels subscribed and unsubscribed.
    pub subscription_changes: AtomicU64,
    /// Pings sent.
    pub pings: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
    /// Price events published.
    pub published: AtomicU64,
    /// Anything unexpected (a failed connect, a close by the server, a bad
    /// token not refused with `401`).
    pub errors: AtomicU64,
    /// The first few errors, for the report.
    pub first_errors: parking_lot::Mutex<Vec<String>>,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, e: &anyhow::Error) {
        Self::add(&self.errors, 1);
        let mut first = self.first_errors.lock();
        if first.len() < 10 {
            first.push(format!("{e:#}"));
        }
    }
}

/// How a cycle goes.
enum Kind {
    Session,
    HalfOpen,
    BadToken,
}

impl Churn {
    /// The token id `i` of generation `g`.
    pub fn token_id(generation: u64, i: u64) -> String {
        format!("soak-g{generation}-t{i}")
    }

    /// `n` random channels of the current generation.
    fn channels(&self, n: usize) -> Vec<String> {
        let g = self.generation.load(Ordering::Relaxed);
        let mut rng = rand::rng();
        (0..n)
            .map(|_| {
                let i = rng.random_range(0..self.tokens_per_generation);
                format!("token.{}", Self::token_id(g, i))
            })
            .collect()
    }

    fn until(&self, d: Duration) -> Instant {
        (Instant::now() + d).min(self.deadline)
    }
}

/// One simulated client: cycles until the deadline.
pub async fn client(churn: Arc<Churn>) {
    while Instant::now() < churn.deadline {
        let kind = {
            let roll: f64 = rand::rng().random();
            if roll < 0.03 {
                Kind::BadToken
            } else if roll < 0.06 {
                Kind::HalfOpen
            } else {
                Kind::Session
            }
        };
        let result = match kind {
            Kind::Session => session(&churn).await,
            Kind::HalfOpen => half_open(&churn).await,
            Kind::BadToken => bad_token(&churn).await,
        };
        if let Err(e) = result {
            churn.counters.error(&e);
            sleep(Duration::from_millis(200)).await;
        }
    }
}

fn millis(range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rand::rng().random_range(range))
}

async fn send_json(ws: &mut Ws, json: String) -> anyhow::Result<()> {
    ws.send(Message::text(json)).await.context("send")
}

fn channels_json(kind: &str, channels: &[String]) -> String {
    serde_json::json!({ "type": kind, "channels": channels }).to_string()
}

/// A proper session: connect, subscribe, read, change subscriptions, maybe
/// ping, read, leave.
async fn session(churn: &Churn) -> anyhow::Result<()> {
    let url = format!("{}?token={}", churn.ws_url, (churn.token)());
    let (mut ws, _) = timeout(Duration::from_secs(5), connect_async(url))
        .await
        .context("handshake timed out")?
        .context("handshake")?;
    Counters::add(&churn.counters.connects, 1);
    let how_many = rand::rng().random_range(1..=4);
    let first = churn.channels(how_many);
    send_json(&mut ws, channels_json("subscribe", &first)).await?;
    Counters::add(&churn.counters.subscription_changes, first.len() as u64);
    let read = millis(500..5000);
    read_until(&mut ws, churn, churn.until(read)).await?;
    if Instant::now() < churn.deadline {
        let gone = &first[..1];
        send_json(&mut ws, channels_json("unsubscribe", gone)).await?;
        let next = churn.channels(2);
        send_json(&mut ws, channels_json("subscribe", &next)).await?;
        Counters::add(&churn.counters.subscription_changes, 1 + next.len() as u64);
        let ping: bool = rand::rng().random_bool(0.3);
        if ping {
            send_json(&mut ws, r#"{"type":"ping","id":"soak"}"#.to_owned()).await?;
            Counters::add(&churn.counters.pings, 1);
        }
        let read = millis(200..1500);
        read_until(&mut ws, churn, churn.until(read)).await?;
    }
    let clean: bool = rand::rng().random_bool(0.5);
    if clean {
        // Close and wait (briefly) for the server's close frame.
        let _ = ws.close(None).await;
        let _ = timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        Counters::add(&churn.counters.clean_closes, 1);
    } else {
        drop(ws);
        Counters::add(&churn.counters.drops, 1);
    }
    Ok(())
}

/// Reads until `until`; the server closing the connection is an error.
async fn read_until(ws: &mut Ws, churn: &Churn, until: Instant) -> anyhow::Result<()> {
    loop {
        match timeout_at(until, ws.next()).await {
            Err(_) => return Ok(()),
            Ok(None) => anyhow::bail!("the server ended the connection"),
            Ok(Some(Err(e))) => return Err(e).context("read"),
            Ok(Some(Ok(Message::Close(frame)))) => {
                anyhow::bail!("the server closed the connection: {frame:?}")
            }
            Ok(Some(Ok(_))) => Counters::add(&churn.counters.frames, 1),
        }
    }
}

/// A connection whose request head never ends, dropped after a while.
async fn half_open(churn: &Churn) -> anyhow::Result<()> {
    let addr = churn
        .ws_url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .context("the WebSocket URL is not ws://host:port/…")?;
    let mut tcp = timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .context("connect timed out")?
        .context("connect")?;
    let _ = tcp
        .write_all(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n")
        .await;
    let hold = millis(500..3000);
    tokio::time::sleep_until(churn.until(hold)).await;
    drop(tcp);
    Counters::add(&churn.counters.half_open, 1);
    Ok(())
}

/// A handshake with a token signed by another secret: must be `401`.
async fn bad_token(churn: &Churn) -> anyhow::Result<()> {
    let url = format!("{}?token={}", churn.ws_url, churn.bad_token);
    match timeout(Duration::from_secs(5), connect_async(url))
        .await
        .context("handshake timed out")?
    {
        Err(WsError::Http(response)) if response.status().as_u16() == 401 => {
            Counters::add(&churn.counters.refused, 1);
            // Not a hot loop of refusals.
            sleep(millis(100..500)).await;
            Ok(())
        }
        Err(e) => Err(e).context("a bad token's handshake"),
        Ok(_) => anyhow::bail!("a bad token was accepted"),
    }
}

/// Publishes `rate` price events a second over the current generation's
/// token ids, moving to a new generation every `period`, until the deadline.
pub async fn publish(
    churn: Arc<Churn>,
    nats_url: String,
    rate: f64,
    period: Duration,
) -> anyhow::Result<()> {
    let nats = async_nats::connect(&nats_url)
        .await
        .context("cannot connect the soak publisher to NATS")?;
    let start = Instant::now();
    let tick = Duration::from_millis(10);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0_f64;
    let mut seq: u64 = 0;
    while Instant::now() < churn.deadline {
        interval.tick().await;
        let generation = start.elapsed().as_secs_f64() / period.as_secs_f64();
        churn.generation.store(generation as u64, Ordering::Relaxed);
        owed += rate * tick.as_secs_f64();
        while owed >= 1.0 {
            owed -= 1.0;
            seq += 1;
            let (i, price) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(0..churn.tokens_per_generation),
                    rng.random_range(0.5..2.0_f64),
                )
            };
            let id = Churn::token_id(generation as u64, i);
            let nonce = format!("soak-{seq}");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0;
            let body = format!(
                r#"{{"type":"price_update","tokenId":"{id}","price":{price:.6},"source":"scheduler","timestamp":{now:.3},"nonce":"{nonce}"}}"#
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", nonce.as_str());
            nats.publish_with_headers(format!("odin.token.{id}.price"), headers, Bytes::from(body))
                .await
                .context("publish")?;
            Counters::add(&churn.counters.published, 1);
        }
    }
    nats.flush().await.context("flush")?;
    Ok(())
}
