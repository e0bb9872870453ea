//! The client task: runs the [`Machine`] against a real WebSocket.
//!
//! One task owns the socket. It feeds the machine what happens (connect
//! results, frames, closes, timers, shutdown) and does what the machine
//! answers. The per-frame path parses a borrowed [`MessageView`], checks the
//! nonce and calls the observer: no allocation beyond the frame itself.
//!
//! The WebSocket layer is `tokio-websockets`: it reads into a buffer it does
//! not zero-fill and wraps no wakers per poll, which made the load
//! generator's per-frame cost lower than with tokio-tungstenite (measured
//! side by side; the figures are in LOAD_TESTING.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use odin_protocol::message::ChannelRequest;
use odin_protocol::{ClientMessage, ServerMessage};
use odin_server::inflating::Inflating;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpStream;
use tokio::time::{Interval, MissedTickBehavior, interval_at, sleep, sleep_until, timeout};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_websockets::{ClientBuilder, CloseCode, Message, WebSocketStream};

use super::config::{ClientConfig, TokenSource};
use super::machine::{Action, Input, Machine, Phase};
use super::observer::{Notice, Observer};
use super::stats::ClientStats;
use super::view::{MessageKind, MessageView};

/// Plain TCP, or TLS over it for `wss://`.
type Stream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

type Socket = WebSocketStream<Inflating<Stream>>;

/// The largest message the client inflates (events are at most 256 KiB by
/// the server's default).
const MAX_INFLATED: usize = 16 << 20;

/// A reference client: what a browser does, in Rust. Build it, keep its
/// [`Client::stats`], and [`Client::run`] it until the shutdown token fires.
pub struct Client<O> {
    config: ClientConfig,
    token: TokenSource,
    observer: O,
    stats: Arc<ClientStats>,
    machine: Machine,
    rng: StdRng,
    /// The `subscribe` frame, built once; cloning it is a reference count.
    subscribe: Bytes,
    /// Set from `connection_established`, taken when the connection starts
    /// watching for silence.
    silence_limit: Option<Duration>,
    /// When the current connection's token expires (read from the token
    /// at connect, moved by `refreshed`); `None` when it does not refresh.
    expires: Option<std::time::SystemTime>,
}

impl<O: Observer> Client<O> {
    /// A client of `config`, with `token` called before every attempt and
    /// `observer` receiving what happens.
    pub fn new(
        config: ClientConfig,
        token: impl Fn() -> String + Send + Sync + 'static,
        observer: O,
    ) -> Self {
        let subscribe = ClientMessage::Subscribe(ChannelRequest {
            channels: config.channels.clone(),
            id: None,
        })
        .to_json();
        Self {
            machine: Machine::new(config.policy.clone()),
            config,
            token: Arc::new(token),
            observer,
            stats: Arc::default(),
            rng: StdRng::from_os_rng(),
            subscribe: Bytes::from(subscribe),
            silence_limit: None,
            expires: None,
        }
    }

    /// The counters, shared: they stay readable while the client runs.
    pub fn stats(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// Connects, subscribes and reconnects until `shutdown` fires; then
    /// closes with `1000` and gives the observer back (e.g. its histogram).
    pub async fn run(mut self, shutdown: CancellationToken) -> O {
        let mut action = self.step(Input::Start);
        loop {
            action = match action {
                Action::Connect => self.session(&shutdown).await,
                Action::Wait(delay) => {
                    self.observer.on_notice(Notice::BackingOff { delay });
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => self.step(Input::Shutdown),
                        () = sleep(delay) => self.step(Input::BackoffElapsed),
                    }
                }
                Action::Stop => break,
                other => {
                    // Only connection inputs yield these; reaching here is a
                    // machine bug, and looping on it would spin.
                    tracing::error!(?other, "unexpected action between connections");
                    break;
                }
            };
        }
        self.stats.set_live(false);
        self.observer.on_notice(Notice::Stopped);
        self.observer
    }

    fn step(&mut self, input: Input<'_>) -> Action {
        self.machine.handle(input, Instant::now(), &mut self.rng)
    }

    /// One connection, from the attempt to its end; returns the machine's
    /// answer to how it ended (a back-off wait, or stop).
    async fn session(&mut self, shutdown: &CancellationToken) -> Action {
        let token = (self.token)();
        self.expires = self
            .config
            .refresh_ahead
            .and_then(|_| super::config::token_exp(&token));
        let url = self.config.url_with(&token);
        let attempt = timeout(
            self.config.connect_timeout,
            open(
                url,
                self.config.source_ip,
                self.config.tls.as_ref(),
                self.config.compression,
            ),
        );
        let ws = tokio::select! {
            biased;
            () = shutdown.cancelled() => return self.step(Input::Shutdown),
            result = attempt => match result {
                Ok(Ok(ws)) => ws,
                Ok(Err(e)) => {
                    let status = e.downcast_ref::<tokio_websockets::Error>().and_then(|e| match e {
                        tokio_websockets::Error::Upgrade(
                            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status),
                        ) => Some(*status),
                        _ => None,
                    });
                    return self.connect_failed(e.context("WebSocket connect failed"), status);
                }
                Err(_) => {
                    let limit = self.config.connect_timeout;
                    return self.connect_failed(anyhow!("WebSocket connect timed out after {limit:?}"), None);
                }
            },
        };
        self.stats.add_connect();
        self.silence_limit = None;
        self.step(Input::Opened);
        self.connected(ws, shutdown).await
    }

    fn connect_failed(&mut self, error: anyhow::Error, status: Option<u16>) -> Action {
        tracing::debug!(?status, "connect failed: {error:#}");
        self.stats.add_connect_failure();
        self.observer.on_notice(Notice::ConnectFailed {
            error: &error,
            status,
        });
        self.step(Input::ConnectFailed)
    }

    /// Reads the open socket until it ends or shutdown is asked for.
    ///
    /// The socket is polled first: while frames are ready, the loop takes
    /// them without polling the shutdown token and the timers, which would
    /// cost a lock and a timer check per frame. Every [`FRAMES_PER_CHECK`]
    /// frames in a row it checks all three directly, so a socket that never
    /// runs dry cannot starve a shutdown or a handshake timeout.
    async fn connected(&mut self, mut ws: Socket, shutdown: &CancellationToken) -> Action {
        // Created once, not per frame: a fresh timer or cancellation waiter
        // per message would cost more than the message.
        let handshake_deadline = Instant::now() + self.config.handshake_timeout;
        let handshake = sleep_until(handshake_deadline.into());
        tokio::pin!(handshake);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // Checked on a slow tick rather than a timer reset per frame.
        let mut silence: Option<SilenceCheck> = None;
        // Frames taken since the socket was last found empty.
        let mut streak = 0u32;
        loop {
            let live = matches!(self.machine.phase(), Phase::Live { .. });
            if streak >= FRAMES_PER_CHECK {
                streak = 0;
                if shutdown.is_cancelled() {
                    self.close_gracefully(&mut ws).await;
                    return self.step(Input::Shutdown);
                }
                if !live && Instant::now() >= handshake_deadline {
                    let limit = self.config.handshake_timeout;
                    return self.ended(None, &format!("no subscribed within {limit:?}"));
                }
            }
            let frame = tokio::select! {
                biased;
                frame = ws.next() => frame,
                () = &mut cancelled => {
                    self.close_gracefully(&mut ws).await;
                    return self.step(Input::Shutdown);
                }
                () = &mut handshake, if !live => {
                    let limit = self.config.handshake_timeout;
                    return self.ended(None, &format!("no subscribed within {limit:?}"));
                }
                () = refresh_due(self.expires, self.config.refresh_ahead), if live && self.expires.is_some() => {
                    streak = 0;
                    // Asked once per token: the next is set by `refreshed`.
                    self.expires = None;
                    let refresh = serde_json::json!({"type": "refresh", "token": (self.token)()});
                    if let Err(e) = ws.send(Message::text(refresh.to_string())).await {
                        return self.ended(None, &e.to_string());
                    }
                    continue;
                }
                () = tick(&mut silence), if live && silence.is_some() => {
                    streak = 0;
                    if let Some(limit) = silence.as_mut().and_then(SilenceCheck::silent_too_long) {
                        return self.ended(None, &format!("server silent for {limit:?}"));
                    }
                    continue;
                }
            };
            streak += 1;
            if let Some(check) = &mut silence {
                check.frames += 1;
            }
            let outcome = match frame {
                Some(Ok(message)) if message.is_text() => {
                    let text = message.as_text().unwrap_or_default();
                    let outcome = self.on_text(&mut ws, text).await;
                    if silence.is_none() {
                        silence = self.silence_limit.take().map(SilenceCheck::new);
                    }
                    outcome
                }
                Some(Ok(message)) if message.is_binary() => {
                    let frame = format!("<binary frame of {} bytes>", message.as_payload().len());
                    self.invalid(&frame, "binary frames are not part of the protocol");
                    Ok(())
                }
                Some(Ok(message)) if message.is_close() => {
                    let (code, reason) = match message.as_close() {
                        Some((code, reason)) => (Some(u16::from(code)), reason.to_owned()),
                        None => (None, String::new()),
                    };
                    self.drain(&mut ws).await;
                    return self.ended(code, &reason);
                }
                // Pings are answered by the WebSocket layer on the next read.
                Some(Ok(_ping_or_pong)) => Ok(()),
                Some(Err(e)) => Err(e),
                None => return self.ended(None, "connection closed without a close frame"),
            };
            if let Err(e) = outcome {
                return self.ended(None, &e.to_string());
            }
        }
    }

    /// Handles one text frame: the hot path.
    async fn on_text(
        &mut self,
        ws: &mut Socket,
        text: &str,
    ) -> Result<(), tokio_websockets::Error> {
        let view = match MessageView::parse(text) {
            Ok(view) => view,
            Err(e) => {
                self.invalid(text, &e.to_string());
                return Ok(());
            }
        };
        let kind = view.kind();
        if kind.is_event() {
            self.stats.add_received();
            let latest_price_of = match kind {
                MessageKind::PriceUpdate => view.token_id(),
                _ => None,
            };
            let input = Input::Event {
                nonce: view.nonce(),
                latest_price_of,
            };
            match self.step(input) {
                Action::Deliver => {
                    self.stats.add_delivered();
                    self.observer.on_message(&view, view.latency_us());
                }
                Action::DropDuplicate => {
                    self.stats.add_duplicate();
                    self.observer.on_notice(Notice::Duplicate(&view));
                }
                _ => {}
            }
            return Ok(());
        }
        self.stats.add_control();
        match kind {
            MessageKind::ConnectionEstablished => {
                // Once per connection, so a full decode is affordable.
                if let Ok(ServerMessage::ConnectionEstablished(m)) = view.decode() {
                    let heartbeat = Duration::from_millis(m.heartbeat_interval_ms.max(1));
                    self.silence_limit = Some(heartbeat.mul_f64(self.config.silence_heartbeats));
                }
                self.observer.on_notice(Notice::Connected(&view));
                if self.step(Input::Established) == Action::Subscribe {
                    ws.send(Message::text(self.subscribe.clone())).await?;
                }
            }
            MessageKind::Reconnect => {
                if let Ok(ServerMessage::Reconnect(m)) = view.decode() {
                    self.stats.add_advisory();
                    self.step(Input::Advised {
                        delay: Duration::from_millis(m.delay_ms),
                    });
                }
                self.observer.on_notice(Notice::Control(&view));
            }
            MessageKind::Subscribed => {
                self.step(Input::Subscribed);
                if matches!(self.machine.phase(), Phase::Live { .. }) {
                    self.stats.set_live(true);
                }
                self.observer.on_notice(Notice::Subscribed(&view));
            }
            MessageKind::Refreshed => {
                #[derive(serde::Deserialize)]
                struct Exp {
                    exp: u64,
                }
                if self.config.refresh_ahead.is_some()
                    && let Ok(Exp { exp }) = serde_json::from_str(text)
                {
                    self.expires = Some(std::time::UNIX_EPOCH + Duration::from_secs(exp));
                }
                self.observer.on_notice(Notice::Control(&view));
            }
            _ => self.observer.on_notice(Notice::Control(&view)),
        }
        Ok(())
    }

    fn invalid(&mut self, frame: &str, reason: &str) {
        tracing::warn!(reason, "invalid frame from the server");
        self.stats.add_invalid();
        self.observer.on_notice(Notice::Invalid { frame, reason });
    }

    /// Records the end of a connection and asks the machine what next.
    fn ended(&mut self, code: Option<u16>, reason: &str) -> Action {
        tracing::debug!(?code, reason, "connection ended");
        self.stats.set_live(false);
        self.stats.add_disconnect(code);
        self.observer
            .on_notice(Notice::Disconnected { code, reason });
        self.step(Input::Closed { code })
    }

    /// Sends `1000` and waits (bounded) for the server's answer.
    async fn close_gracefully(&mut self, ws: &mut Socket) {
        let close = Message::close(Some(CloseCode::NORMAL_CLOSURE), "client shutdown");
        if timeout(self.config.close_timeout, ws.send(close))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            self.drain(ws).await;
        }
        self.stats.set_live(false);
    }

    /// Reads until the stream ends, so the WebSocket layer completes the
    /// closing handshake; bounded by the close timeout.
    async fn drain(&self, ws: &mut Socket) {
        let _ = timeout(self.config.close_timeout, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// Opens the WebSocket: from `source_ip` when one is set (bind, then
/// connect), otherwise from wherever the kernel chooses; over TLS trusting
/// `tls` for `wss://`; offering permessage-deflate when `compression` is
/// set.
async fn open(
    url: String,
    source_ip: Option<std::net::IpAddr>,
    tls: Option<&crate::tls::ClientTls>,
    compression: bool,
) -> anyhow::Result<Socket> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid WebSocket URL {url}"))?;
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => anyhow::bail!("{url}: the reference client speaks ws:// and wss:// only"),
    };
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let stream = match source_ip {
        None => TcpStream::connect((host, port)).await?,
        Some(ip) => connect_from(ip, host, port).await?,
    };
    stream.set_nodelay(true)?;
    let stream = if secure {
        let tls = tls.with_context(|| format!("{url}: wss:// needs a certificate to trust"))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .with_context(|| format!("{url}: not a TLS server name"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await?;
        Either::Right(stream)
    } else {
        Either::Left(stream)
    };
    let mut builder = ClientBuilder::from_uri(uri);
    let stream = if compression {
        builder = builder.add_header(
            http::header::SEC_WEBSOCKET_EXTENSIONS,
            http::HeaderValue::from_static(odin_protocol::deflate::offer::EXTENSION),
        )?;
        // Inflating from the end of the server's answer on: a server that
        // declines never sets RSV1, so its frames pass unchanged.
        Inflating::after_head(stream, MAX_INFLATED)
    } else {
        Inflating::new(stream)
    };
    let (ws, _response) = builder.connect_on(stream).await?;
    Ok(ws)
}

/// A TCP connection to `host:port` from `ip`.
async fn connect_from(ip: std::net::IpAddr, host: &str, port: u16) -> std::io::Result<TcpStream> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .ok_or_else(|| std::io::Error::other(format!("{host}:{port} has no address like {ip}")))?;
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // The port is chosen at connect, per destination, not at bind: a bind
    // to port 0 searches the whole ephemeral range for a port free on every
    // destination, which at tens of thousands of sockets per address costs
    // more than the connection (profiled: `inet_bhash2_conflict`).
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::IpBindAddressNoPort,
        &true,
    )
    .map_err(std::io::Error::from)?;
    socket.bind(std::net::SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// How many frames in a row the connection loop takes before it checks the
/// shutdown token and the handshake deadline directly.
const FRAMES_PER_CHECK: u32 = 64;

/// Watches for a silent server without reading the clock per frame: the
/// loop counts frames, and a tick every quarter of the limit looks whether
/// the count moved.
struct SilenceCheck {
    every: Interval,
    period: Duration,
    limit: Duration,
    /// Frames received so far (the loop adds to it).
    frames: u64,
    /// `frames` at the last tick.
    frames_at_tick: u64,
    /// Ticks in a row without a frame.
    quiet_ticks: u32,
}

impl SilenceCheck {
    fn new(limit: Duration) -> Self {
        // Rounded up, so four quiet ticks always cover the whole limit.
        let period = Duration::from_nanos(limit.as_nanos().div_ceil(4).max(1) as u64);
        let mut every = interval_at((Instant::now() + period).into(), period);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self {
            every,
            period,
            limit,
            frames: 0,
            frames_at_tick: 0,
            quiet_ticks: 0,
        }
    }

    /// Called on each tick: the limit when no frame came for at least that
    /// long (each quiet tick means a whole period without a frame).
    fn silent_too_long(&mut self) -> Option<Duration> {
        if self.frames == self.frames_at_tick {
            self.quiet_ticks += 1;
        } else {
            self.frames_at_tick = self.frames;
            self.quiet_ticks = 0;
        }
        (self.period * self.quiet_ticks >= self.limit).then_some(self.limit)
    }
}

/// The next silence tick; never completes when there is no check.
async fn tick(check: &mut Option<SilenceCheck>) {
    match check {
        Some(check) => {
            check.every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Resolves `ahead` before `expires` (at once when that has passed).
async fn refresh_due(expires: Option<std::time::SystemTime>, ahead: Option<Duration>) {
    let (Some(expires), Some(ahead)) = (expires, ahead) else {
        return std::future::pending().await;
    };
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    sleep(left.saturating_sub(ahead)).await;
}
