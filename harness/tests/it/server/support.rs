//! Helpers for the server's protocol tests: a real NATS with an in-process
//! server on it, and [`Ws`], the library's raw client with the assertions
//! these tests make on every frame and close code. The NATS publisher of
//! protocol events is shared with other topics (`crate::support`).

use std::time::Duration;

use odin_harness::client::{RawAuth, RawClient, RawConnectError};
use odin_harness::nats::NatsServer;
use odin_harness::server::{Endpoint, TestServer};
use odin_harness::wait::LIMIT;
use odin_protocol::Subjects;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{Publisher, wait_subscribed_in_nats};

/// A real NATS server and an in-process odin-server on it.
pub(crate) struct Stack {
    pub(crate) nats: NatsServer,
    pub(crate) server: TestServer,
    pub(crate) publisher: Publisher,
    /// The subjects the server ingests (its configured prefix).
    server_subjects: Subjects,
}

impl Stack {
    pub(crate) async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tune: impl FnOnce(&mut odin_server::ServerConfig)) -> Stack {
        let nats = NatsServer::start().await.expect("NATS starts");
        let mut config = odin_harness::server::test_config(&nats.url());
        tune(&mut config);
        let server_subjects = config.subjects.clone();
        let server = TestServer::start_with(config).await.expect("server starts");
        let publisher = Publisher::connect(&nats.url()).await;
        let stack = Stack {
            nats,
            server,
            publisher,
            server_subjects,
        };
        stack.wait_nats_connected().await;
        stack
    }

    /// Waits until the server is connected and NATS itself lists the
    /// server's `odin.>` subscription, so nothing published afterwards can
    /// miss it.
    pub(crate) async fn wait_nats_connected(&self) {
        wait_subscribed_in_nats(
            &self.nats,
            self.server.endpoint(),
            &self.server_subjects.all(),
        )
        .await;
    }

    /// A connected client that has read `connection_established`.
    pub(crate) async fn client(&self) -> Ws {
        Ws::connect_ok(self.server.endpoint()).await
    }
}

/// An upgrade the server refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    /// The `Retry-After` header, if any.
    pub(crate) retry_after: Option<String>,
    /// The JSON body (`Null` when there is none).
    pub(crate) body: Value,
}

impl Refusal {
    /// The refusal of a failed connect; any other failure fails the test.
    fn of(error: RawConnectError) -> Refusal {
        match error {
            RawConnectError::Refused {
                status,
                retry_after,
                body,
            } => Refusal {
                status,
                retry_after,
                body: serde_json::from_str(&body).unwrap_or(Value::Null),
            },
            other => panic!("unexpected connect error: {other}"),
        }
    }

    fn answer(self) -> (u16, Value) {
        (self.status, self.body)
    }
}

/// The library's raw client ([`RawClient`]) with what the server tests
/// assert on it: JSON frames, the greeting, close codes, and a failed test
/// instead of an error whenever the server does not do its part.
pub(crate) struct Ws {
    inner: RawClient,
    /// The `connection_established` message.
    pub(crate) hello: Value,
}

impl Ws {
    /// Connects with a fresh token and reads `connection_established`.
    pub(crate) async fn connect_ok(endpoint: &Endpoint) -> Ws {
        Ws::connect_url(endpoint, &endpoint.ws_url()).await
    }

    /// Connects asking for protocol `version` (`?protocol=<n>`) with a
    /// fresh token and reads `connection_established`.
    pub(crate) async fn connect_version(endpoint: &Endpoint, version: u32) -> Ws {
        let url = format!("{}?protocol={version}", endpoint.ws_url());
        Ws::connect_url(endpoint, &url).await
    }

    /// Connects to `url` (the endpoint's, with a query of its own) with a
    /// fresh token and reads `connection_established`.
    async fn connect_url(endpoint: &Endpoint, url: &str) -> Ws {
        let auth = RawAuth::query(endpoint.token("tester"));
        let inner = RawClient::connect(url, &auth)
            .await
            .expect("upgrade accepted in time");
        let mut ws = Ws {
            inner,
            hello: Value::Null,
        };
        ws.hello = ws.next_json().await;
        assert_eq!(ws.hello["type"], "connection_established", "{}", ws.hello);
        ws
    }

    /// Reads until the server closes: the text frames before the close (a
    /// heartbeat aside) and the close code.
    pub(crate) async fn texts_until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut texts = Vec::new();
        loop {
            match self.try_next_text(LIMIT).await {
                Ok(Some(t)) => {
                    let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                    if v["type"] != "heartbeat" {
                        texts.push(v);
                    }
                }
                Ok(None) => panic!("connection not closed within {LIMIT:?}"),
                Err(code) => return (texts, code),
            }
        }
    }

    /// Connects to `url` with extra headers and expects a refusal: its
    /// status and JSON body (fails the test if the upgrade is accepted).
    pub(crate) async fn refused(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        match Ws::try_connect(url, headers).await {
            Ok(ws) => panic!("upgrade was accepted: {}", ws.hello),
            Err(answer) => answer,
        }
    }

    /// Connects to `url` with extra headers; `Ok` when upgraded.
    pub(crate) async fn try_connect(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, (u16, Value)> {
        let upgraded = RawClient::connect_with_headers(url, headers).await;
        Ws::upgraded(upgraded).await.map_err(Refusal::answer)
    }

    /// Connects to `url` from the loopback address `from` (all of 127/8 is
    /// loopback, so a test has as many source addresses as it likes); `Ok`
    /// when upgraded.
    pub(crate) async fn try_connect_from(from: [u8; 4], url: &str) -> Result<Ws, Refusal> {
        Ws::upgraded(RawClient::connect_from(from.into(), url).await).await
    }

    /// The client of a finished upgrade, having read `connection_established`,
    /// or the refusal.
    async fn upgraded(upgraded: Result<RawClient, RawConnectError>) -> Result<Ws, Refusal> {
        let inner = upgraded.map_err(Refusal::of)?;
        let mut ws = Ws {
            inner,
            hello: Value::Null,
        };
        ws.hello = ws.next_json().await;
        Ok(ws)
    }

    pub(crate) async fn send_text(&mut self, text: impl Into<String>) {
        self.inner.send_text(text).await.expect("send");
    }

    pub(crate) async fn send_json(&mut self, v: Value) {
        self.send_text(v.to_string()).await;
    }

    pub(crate) async fn send_raw(&mut self, msg: Message) {
        self.inner.send(msg).await.expect("send");
    }

    /// The underlying stream, for tests that read control frames.
    pub(crate) fn inner_mut(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.inner.inner()
    }

    /// Writes bytes straight to the TCP socket, bypassing the WebSocket
    /// framing (for malformed or hostile frames).
    pub(crate) async fn send_raw_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        match self.inner.inner().get_mut() {
            MaybeTlsStream::Plain(s) => s.write_all(bytes).await.expect("raw write"),
            _ => unreachable!("tests use plain TCP"),
        }
    }

    /// The next text frame, skipping control frames; fails on close.
    pub(crate) async fn next_text(&mut self) -> String {
        match self.try_next_text(LIMIT).await {
            Ok(Some(t)) => t,
            Ok(None) => panic!("no text frame within {LIMIT:?}"),
            Err(code) => panic!("connection closed ({code:?}) while waiting for a frame"),
        }
    }

    /// The next text frame within `limit`: `Ok(None)` on timeout, `Err` with
    /// the close code when the connection closes.
    pub(crate) async fn try_next_text(
        &mut self,
        limit: Duration,
    ) -> Result<Option<String>, Option<u16>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.recv()).await {
                Err(_) => return Ok(None),
                Ok(Ok(Some(Message::Text(t)))) => return Ok(Some(t.to_string())),
                Ok(Ok(Some(Message::Close(frame)))) => {
                    return Err(frame.map(|f| u16::from(f.code)));
                }
                Ok(Ok(Some(_))) => continue,
                Ok(Err(_) | Ok(None)) => return Err(None),
            }
        }
    }

    pub(crate) async fn next_json(&mut self) -> Value {
        serde_json::from_str(&self.next_text().await).expect("server sends JSON")
    }

    /// The next message of `ty`, skipping heartbeats only.
    pub(crate) async fn next_of_type(&mut self, ty: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["type"] == "heartbeat" && ty != "heartbeat" {
                continue;
            }
            assert_eq!(v["type"], ty, "expected {ty}, got {v}");
            return v;
        }
    }

    /// Reads up to the frame `fence` and fails on anything but heartbeats
    /// before it. `fence` is an event published after everything this
    /// client must not get, on a channel it holds: the server forwards the
    /// events of its NATS subscription in order, so a frame that should not
    /// come arrives before the fence, however late. (Silence for a while
    /// proves nothing: a late frame arrives after the while.)
    pub(crate) async fn nothing_before(&mut self, fence: &str) {
        loop {
            let text = self.next_text().await;
            if text == fence {
                return;
            }
            if !text.contains(r#""type":"heartbeat""#) {
                panic!("expected nothing before {fence}, got {text}");
            }
        }
    }

    /// Reads until the server closes; returns its close code (`None` when the
    /// TCP connection ended without a close frame).
    pub(crate) async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.try_next_text(LIMIT).await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("connection not closed within {LIMIT:?}"),
                Err(code) => return code,
            }
        }
    }

    /// Subscribes and returns the `subscribed` answer.
    pub(crate) async fn subscribe(&mut self, channels: &[&str]) -> Value {
        self.send_json(json!({"type": "subscribe", "channels": channels}))
            .await;
        self.next_of_type("subscribed").await
    }
}
