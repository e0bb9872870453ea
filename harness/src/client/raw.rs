//! The harness's one bare WebSocket client, for protocol tests: connects
//! with any token, header or loopback source address, sends any frame
//! (binary, oversized, fragmented, malformed JSON) and reads raw frames and
//! close codes, with no reconnecting, de-duplication or interpretation.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use odin_protocol::message::AuthErrorBody;
use odin_protocol::{ClientMessage, ServerMessage};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async, connect_async};

use super::config::url_with_token;

/// Limit for the TCP connect plus upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a raw connection authenticates (PROTOCOL §2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawAuth {
    /// Sent as `?token=`; `Some("")` sends an empty parameter.
    pub query: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
}

impl RawAuth {
    /// No token at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// The token as the `?token=` query parameter (what browsers do).
    pub fn query(token: impl Into<String>) -> Self {
        Self {
            query: Some(token.into()),
            bearer: None,
        }
    }

    /// The token as an `Authorization: Bearer` header.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            query: None,
            bearer: Some(token.into()),
        }
    }
}

/// Why a raw connection was not opened; tests match on `Refused`.
#[derive(Debug, thiserror::Error)]
pub enum RawConnectError {
    /// The server answered the upgrade with an HTTP error (401, 503 …).
    #[error("upgrade refused with HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header (with 429 and 503), if any.
        retry_after: Option<String>,
        /// The response body (a JSON error for 401).
        body: String,
    },
    /// TCP or WebSocket failure.
    #[error("WebSocket connect failed: {0}")]
    WebSocket(#[source] Box<tungstenite::Error>),
    /// The URL or header could not be used.
    #[error("bad request: {0}")]
    Request(String),
    /// Nothing answered in time.
    #[error("WebSocket connect timed out after {0:?}")]
    Timeout(Duration),
}

impl RawConnectError {
    /// The HTTP status of a refused upgrade.
    pub fn status(&self) -> Option<u16> {
        match self {
            RawConnectError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The JSON body of a `401` (PROTOCOL §2), when it parses.
    pub fn auth_error(&self) -> Option<AuthErrorBody> {
        match self {
            RawConnectError::Refused { body, .. } => serde_json::from_str(body).ok(),
            _ => None,
        }
    }
}

/// A close frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code.
    pub code: u16,
    /// The reason text.
    pub reason: String,
}

/// Connects with `token` as `?token=`: the usual protocol-test opening.
pub async fn connect_raw(url: &str, token: &str) -> Result<RawClient, RawConnectError> {
    RawClient::connect(url, &RawAuth::query(token)).await
}

/// One raw WebSocket connection.
#[derive(Debug)]
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    /// Opens `url` (`ws://host:port/ws`) with `auth`.
    pub async fn connect(url: &str, auth: &RawAuth) -> Result<RawClient, RawConnectError> {
        let url = match &auth.query {
            Some(token) => url_with_token(url, token),
            None => url.to_owned(),
        };
        let bearer = auth.bearer.as_ref().map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|value| (http::header::AUTHORIZATION.as_str(), value.as_str()))
            .collect();
        Self::open(request(&url, &headers)?, None).await
    }

    /// Opens `url` as it is (any token already in it) with extra request
    /// `headers`, for tests of what the upgrade accepts.
    pub async fn connect_with_headers(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<RawClient, RawConnectError> {
        Self::open(request(url, headers)?, None).await
    }

    /// Opens `url` as it is from the loopback address `from` (all of 127/8
    /// is loopback, so a test has as many source addresses as it likes).
    pub async fn connect_from(from: IpAddr, url: &str) -> Result<RawClient, RawConnectError> {
        Self::open(request(url, &[])?, Some(from)).await
    }

    /// The upgrade of `request`, on a socket bound to `from` if given.
    async fn open(request: Request, from: Option<IpAddr>) -> Result<RawClient, RawConnectError> {
        let upgrade = async {
            let Some(from) = from else {
                return connect_async(request).await;
            };
            let to = destination(&request)?;
            let socket = match from {
                IpAddr::V4(_) => TcpSocket::new_v4(),
                IpAddr::V6(_) => TcpSocket::new_v6(),
            }?;
            socket.bind(SocketAddr::new(from, 0))?;
            let stream = socket.connect(to).await?;
            client_async(request, MaybeTlsStream::Plain(stream)).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, upgrade).await {
            Err(_) => Err(RawConnectError::Timeout(CONNECT_TIMEOUT)),
            Ok(Ok((ws, _response))) => Ok(RawClient { ws }),
            Ok(Err(tungstenite::Error::Http(response))) => Err(RawConnectError::Refused {
                status: response.status().as_u16(),
                retry_after: response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap_or("?").to_owned()),
                body: response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default(),
            }),
            Ok(Err(e)) => Err(RawConnectError::WebSocket(Box::new(e))),
        }
    }

    /// Sends a text frame, whatever it holds.
    pub async fn send_text(&mut self, text: impl Into<String>) -> anyhow::Result<()> {
        self.send(Message::text(text.into())).await
    }

    /// Sends a client message as JSON.
    pub async fn send_json(&mut self, message: &ClientMessage) -> anyhow::Result<()> {
        self.send_text(message.to_json()).await
    }

    /// Sends a binary frame (the protocol answers with close `1003`).
    pub async fn send_binary(&mut self, bytes: impl Into<Bytes>) -> anyhow::Result<()> {
        self.send(Message::Binary(bytes.into())).await
    }

    /// Sends `text` as one message split into frames of `fragment_len` bytes
    /// (a text frame and continuation frames), to test size limits across
    /// fragments. Splits on byte boundaries, as the wire allows.
    pub async fn send_fragmented_text(
        &mut self,
        text: &str,
        fragment_len: usize,
    ) -> anyhow::Result<()> {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let len = fragment_len.max(1);
        let count = bytes.len().div_ceil(len).max(1);
        for i in 0..count {
            let chunk = bytes.slice((i * len).min(bytes.len())..((i + 1) * len).min(bytes.len()));
            let opcode = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            self.ws
                .feed(Message::Frame(Frame::message(
                    chunk,
                    opcode,
                    i + 1 == count,
                )))
                .await
                .context("cannot send a fragment")?;
        }
        self.ws.flush().await.context("cannot flush fragments")
    }

    /// Sends any message (ping, pong, close, raw frame …).
    pub async fn send(&mut self, message: Message) -> anyhow::Result<()> {
        self.ws.send(message).await.context("cannot send")
    }

    /// The next frame of any kind (pings included), `None` once the
    /// connection is gone.
    pub async fn next_frame(&mut self, limit: Duration) -> anyhow::Result<Option<Message>> {
        match tokio::time::timeout(limit, self.recv()).await {
            Err(_) => bail!("no frame within {limit:?}"),
            Ok(received) => received,
        }
    }

    /// The next frame of any kind, however long it takes (the caller bounds
    /// the wait), `None` once the connection is gone.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Message>> {
        match self.ws.next().await {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(m)),
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                Ok(None)
            }
            Some(Err(e)) => Err(e).context("WebSocket error"),
        }
    }

    /// The next server message (text frames only; pings and pongs skipped);
    /// an error when the connection closes first, naming its close code.
    pub async fn next_message(&mut self, limit: Duration) -> anyhow::Result<ServerMessage> {
        let text = self.next_text(limit).await?;
        serde_json::from_str(&text).with_context(|| format!("not a server message: {text}"))
    }

    /// The next text frame as it is.
    pub async fn next_text(&mut self, limit: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await? {
                Some(Message::Text(t)) => return Ok(t.as_str().to_owned()),
                Some(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Some(Message::Binary(b)) => bail!("got a binary frame of {} bytes", b.len()),
                Some(Message::Close(f)) => {
                    bail!("connection closed first: {:?}", f.map(close_info))
                }
                None => bail!("connection ended without a close frame"),
            }
        }
    }

    /// Reads until the close frame (skipping anything else) and returns it;
    /// `None` when the connection ended without one.
    pub async fn expect_close(&mut self, limit: Duration) -> anyhow::Result<Option<CloseInfo>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame(left).await {
                Ok(Some(Message::Close(f))) => return Ok(f.map(close_info)),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(None),
                // A reset after the close is still "no close frame".
                Err(e) if e.downcast_ref::<tungstenite::Error>().is_some() => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes with `code` and `reason`.
    pub async fn close(&mut self, code: u16, reason: &str) -> anyhow::Result<()> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.ws.close(Some(frame)).await.context("cannot close")
    }

    /// The underlying stream, for anything this type does not cover.
    pub fn inner(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }
}

/// An upgrade request for `url` with `headers`.
fn request(url: &str, headers: &[(&str, &str)]) -> Result<Request, RawConnectError> {
    let bad = |e: &dyn std::fmt::Display| RawConnectError::Request(e.to_string());
    let mut request = url.into_client_request().map_err(|e| bad(&e))?;
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
        let value = http::HeaderValue::from_str(value).map_err(|e| bad(&e))?;
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

/// The address `request` goes to (`ws://` URLs with an IP address only:
/// tests connect to servers they started).
fn destination(request: &Request) -> Result<SocketAddr, tungstenite::Error> {
    let uri = request.uri();
    let host = uri.host().unwrap_or_default();
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?;
    Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

fn close_info(frame: CloseFrame) -> CloseInfo {
    CloseInfo {
        code: u16::from(frame.code),
        reason: frame.reason.as_str().to_owned(),
    }
}
