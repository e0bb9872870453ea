//! A tiny WebSocket server standing in for odin-server: each accepted
//! connection is handed to the test, which plays the server's part by hand
//! (real sockets, scripted answers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Uri};
use odin_harness::wait::LIMIT;
use odin_protocol::message::{
    ChannelRequest, ChannelsAck, ConnectionEstablished, Heartbeat, MarketStats, PriceSource,
    PriceUpdate,
};
use odin_protocol::{ClientMessage, Nonce, ServerMessage, TokenId, time};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The listening fake server; stops accepting on drop.
pub(super) struct FakeServer {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<FakeConn>,
    /// How many of the next upgrades to refuse with `401`.
    refuse: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub(super) async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = mpsc::unbounded_channel();
        let refuse = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, tx, refuse.clone()));
        Self {
            addr,
            accepted,
            refuse,
            task,
        }
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub(super) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Refuses the next `n` upgrades with a `401` and a protocol error body.
    pub(super) fn refuse_next(&self, n: usize) {
        self.refuse.store(n, Ordering::SeqCst);
    }

    /// The next upgraded connection.
    pub(super) async fn accept(&mut self) -> FakeConn {
        timeout(LIMIT, self.accepted.recv())
            .await
            .expect("no client connected in time")
            .expect("the accept loop ended")
    }
}

async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::UnboundedSender<FakeConn>,
    refuse: Arc<AtomicUsize>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let tx = tx.clone();
        let refuse = refuse.clone();
        tokio::spawn(async move {
            let mut seen: Option<(Uri, HeaderMap)> = None;
            // The error type is tungstenite's, large or not.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                seen = Some((req.uri().clone(), req.headers().clone()));
                let refusing = refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if refusing {
                    let body = r#"{"error":"bad token","code":"auth_invalid"}"#;
                    let mut refusal = ErrorResponse::new(Some(body.to_owned()));
                    *refusal.status_mut() = http::StatusCode::UNAUTHORIZED;
                    return Err(refusal);
                }
                Ok(resp)
            };
            if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                let (uri, headers) = seen.expect("the callback saw the request");
                let _ = tx.send(FakeConn {
                    ws,
                    uri,
                    headers,
                    heartbeat_ms: 30_000,
                });
            }
        });
    }
}

/// One accepted connection, driven by the test.
pub(super) struct FakeConn {
    pub(super) ws: WebSocketStream<TcpStream>,
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
    /// Announced in `connection_established`.
    pub(super) heartbeat_ms: u64,
}

impl FakeConn {
    /// The `token` query parameter the client sent.
    pub(super) fn token(&self) -> Option<String> {
        let query = self.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    }

    pub(super) async fn send(&mut self, message: &ServerMessage) {
        self.send_text(message.to_json()).await;
    }

    pub(super) async fn send_text(&mut self, text: String) {
        timeout(LIMIT, self.ws.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    pub(super) async fn send_raw(&mut self, message: Message) {
        timeout(LIMIT, self.ws.send(message))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// The next data or close frame from the client (pings and pongs skipped).
    pub(super) async fn next_frame(&mut self) -> Option<Message> {
        timeout(LIMIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(m)) => return Some(m),
                    _ => return None,
                }
            }
        })
        .await
        .expect("no frame from the client in time")
    }

    /// Waits for the client's `subscribe`.
    pub(super) async fn expect_subscribe(&mut self) -> ChannelRequest {
        match self.next_frame().await {
            Some(Message::Text(t)) => match serde_json::from_str(&t).expect("valid JSON") {
                ClientMessage::Subscribe(req) => req,
                other => panic!("expected subscribe, got {other:?}"),
            },
            other => panic!("expected subscribe, got {other:?}"),
        }
    }

    /// connection_established → subscribe → subscribed; returns the request.
    pub(super) async fn handshake(&mut self) -> ChannelRequest {
        self.send(&established_with(self.heartbeat_ms)).await;
        let req = self.expect_subscribe().await;
        self.send(&ServerMessage::Subscribed(ChannelsAck {
            channels: req.channels.clone(),
            id: req.id.clone(),
            timestamp: time::now_millis(),
            nonce: fresh_nonce(),
        }))
        .await;
        req
    }

    /// Sends a close frame with `code`; the closing handshake finishes in
    /// the background, so a test that reads the close afterwards does not
    /// wait for it.
    pub(super) async fn close(mut self, code: u16) {
        let frame = CloseFrame {
            code: code.into(),
            reason: "test".into(),
        };
        timeout(LIMIT, self.ws.send(Message::Close(Some(frame))))
            .await
            .expect("close timed out")
            .expect("close failed");
        tokio::spawn(async move {
            let _ = timeout(LIMIT, async {
                while let Some(Ok(_)) = self.ws.next().await {}
            })
            .await;
        });
    }
}

pub(super) fn fresh_nonce() -> Nonce {
    Nonce::parse(&format!("srv-{}", rand::random::<u64>())).unwrap()
}

pub(super) fn established() -> ServerMessage {
    established_with(30_000)
}

pub(super) fn established_with(heartbeat_interval_ms: u64) -> ServerMessage {
    ServerMessage::ConnectionEstablished(ConnectionEstablished {
        client_id: "c1".into(),
        server_id: "fake".into(),
        protocol_version: odin_protocol::PROTOCOL_VERSION,
        heartbeat_interval_ms,
        timestamp: time::now_millis(),
        nonce: fresh_nonce(),
    })
}

/// A `price_update` of `token` with `nonce`, stamped now.
pub(super) fn price(token: &str, nonce: &str, value: f64) -> ServerMessage {
    ServerMessage::PriceUpdate(PriceUpdate {
        token_id: TokenId::parse(token).unwrap(),
        price: value,
        source: PriceSource::Trade,
        previous_price: None,
        change_24h: None,
        timestamp: time::now_millis(),
        nonce: Nonce::parse(nonce).unwrap(),
    })
}

/// A `heartbeat`.
pub(super) fn heartbeat() -> ServerMessage {
    ServerMessage::Heartbeat(Heartbeat {
        server_id: "fake".into(),
        timestamp: time::now_millis(),
        nonce: fresh_nonce(),
    })
}

/// A `market_stats` event with `nonce`.
pub(super) fn market(nonce: &str) -> ServerMessage {
    ServerMessage::MarketStats(MarketStats {
        total_volume_24h: 1.0,
        total_trades_24h: 2,
        active_tokens: 3,
        timestamp: time::now_millis(),
        nonce: Nonce::parse(nonce).unwrap(),
    })
}
