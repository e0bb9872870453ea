//! The client task: runs the [`Machine`] against a real WebSocket.
//!
//! One task owns the socket. It feeds the machine what happens (connect
//! results, frames, closes, timers, shutdown) and does what the machine
//! answers. The per-frame path parses a borrowed [`MessageView`], checks the
//! nonce and calls the observer: no allocation beyond the frame itself and
//! the de-dup window's key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::{SinkExt, StreamExt};
use odin_protocol::message::ChannelRequest;
use odin_protocol::{ClientMessage, ServerMessage};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::net::TcpStream;
use tokio::time::{Interval, MissedTickBehavior, interval, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use tokio_util::sync::CancellationToken;

use super::config::{ClientConfig, TokenSource, url_with_token};
use super::machine::{Action, Input, Machine, Phase};
use super::observer::{Notice, Observer};
use super::stats::ClientStats;
use super::view::{MessageKind, MessageView};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
    subscribe: Utf8Bytes,
    /// Set from `connection_established`, taken when the connection starts
    /// watching for silence.
    silence_limit: Option<Duration>,
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
            subscribe: subscribe.into(),
            silence_limit: None,
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
        let url = url_with_token(&self.config.url, &(self.token)());
        let attempt = timeout(
            self.config.connect_timeout,
            open(url, self.config.source_ip),
        );
        let ws = tokio::select! {
            biased;
            () = shutdown.cancelled() => return self.step(Input::Shutdown),
            result = attempt => match result {
                Ok(Ok((ws, _response))) => ws,
                Ok(Err(e)) => {
                    let status = match &e {
                        tungstenite::Error::Http(response) => Some(response.status().as_u16()),
                        _ => None,
                    };
                    return self.connect_failed(anyhow!(e).context("WebSocket connect failed"), status);
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
    async fn connected(&mut self, mut ws: Socket, shutdown: &CancellationToken) -> Action {
        // Created once, not per frame: a fresh timer or cancellation waiter
        // per message would cost more than the message.
        let handshake = sleep_until((Instant::now() + self.config.handshake_timeout).into());
        tokio::pin!(handshake);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // Checked on a slow tick rather than a timer reset per frame.
        let mut silence_check: Option<(Interval, Duration)> = None;
        let mut last_frame = Instant::now();
        loop {
            let live = matches!(self.machine.phase(), Phase::Live { .. });
            let frame = tokio::select! {
                biased;
                () = &mut cancelled => {
                    self.close_gracefully(&mut ws).await;
                    return self.step(Input::Shutdown);
                }
                () = &mut handshake, if !live => {
                    let limit = self.config.handshake_timeout;
                    return self.ended(None, &format!("no subscribed within {limit:?}"));
                }
                _ = tick(&mut silence_check), if live && silence_check.is_some() => {
                    let limit = silence_check.as_ref().map_or(Duration::MAX, |(_, l)| *l);
                    if last_frame.elapsed() > limit {
                        return self.ended(None, &format!("server silent for {limit:?}"));
                    }
                    continue;
                }
                frame = ws.next() => frame,
            };
            last_frame = Instant::now();
            let outcome = match frame {
                Some(Ok(Message::Text(text))) => {
                    let outcome = self.on_text(&mut ws, &text).await;
                    if silence_check.is_none() {
                        silence_check = self.silence_limit.take().map(|limit| {
                            let mut every = interval(limit / 4);
                            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
                            (every, limit)
                        });
                    }
                    outcome
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let frame = format!("<binary frame of {} bytes>", bytes.len());
                    self.invalid(&frame, "binary frames are not part of the protocol");
                    Ok(())
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = match &frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str()),
                        None => (None, ""),
                    };
                    let reason = reason.to_owned();
                    self.drain(&mut ws).await;
                    return self.ended(code, &reason);
                }
                // Pings are answered by tungstenite on the next read.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
                Some(Err(e)) => Err(e),
                None => return self.ended(None, "connection closed without a close frame"),
            };
            if let Err(e) = outcome {
                return self.ended(None, &e.to_string());
            }
        }
    }

    /// Handles one text frame: the hot path.
    async fn on_text(&mut self, ws: &mut Socket, text: &str) -> Result<(), tungstenite::Error> {
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
                    ws.send(Message::Text(self.subscribe.clone())).await?;
                }
            }
            MessageKind::Subscribed => {
                self.step(Input::Subscribed);
                if matches!(self.machine.phase(), Phase::Live { .. }) {
                    self.stats.set_live(true);
                }
                self.observer.on_notice(Notice::Subscribed(&view));
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
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "client shutdown".into(),
        };
        if timeout(self.config.close_timeout, ws.close(Some(frame)))
            .await
            .is_ok_and(|r| r.is_ok())
        {
            self.drain(ws).await;
        }
        self.stats.set_live(false);
    }

    /// Reads until the stream ends, so tungstenite completes the closing
    /// handshake; bounded by the close timeout.
    async fn drain(&self, ws: &mut Socket) {
        let _ = timeout(self.config.close_timeout, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// Opens the WebSocket: from `source_ip` when one is set (bind, then
/// connect), otherwise from wherever the kernel chooses.
async fn open(
    url: String,
    source_ip: Option<std::net::IpAddr>,
) -> Result<(Socket, tungstenite::handshake::client::Response), tungstenite::Error> {
    let Some(ip) = source_ip else {
        return connect_async_with_config(url, Some(read_config()), true).await;
    };
    let request = url.into_client_request()?;
    let uri = request.uri();
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(80);
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
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(read_config()),
    )
    .await
}

/// The next silence check; never completes when there is none.
async fn tick(check: &mut Option<(Interval, Duration)>) {
    match check {
        Some((every, _)) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The client's WebSocket settings. tungstenite zero-fills its whole read
/// buffer before every read, so its 128 KiB default costs a 128 KiB memset
/// per socket read — the largest single cost of a load user in a burst.
/// Server messages are small; the buffer still grows for a large frame.
fn read_config() -> WebSocketConfig {
    // tungstenite zero-fills its whole read buffer before every read: a
    // small one (events are ~300 bytes; a burst takes a few reads) keeps that
    // from costing more than the read itself.
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}
