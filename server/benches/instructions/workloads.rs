//! The inner mode: each workload run once, single-threaded, on a
//! current-thread runtime, with the server's own code (see `main.rs`).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use odin_protocol::ids::NonceSource;
use odin_protocol::message::{PriceSource, PriceUpdate, Side, TradeExecuted, VolumeUpdate};
use odin_protocol::{Channel, DedupWindow, Event, Subjects, TokenId};
use odin_server::auth::{AuthConfig, Authenticator, mint_token, token_from_request};
use odin_server::config::EventLimits;
use odin_server::metrics::Metrics;
use odin_server::outbox::{CloseRequest, Frame, Outbox};
use odin_server::router::Router;
use odin_server::{ServerConfig, WS_PATH, ingest, wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Events of the larger `deliveries` size; both sizes build this many
/// messages so that building them cancels out.
pub(crate) const MAX_EVENTS: usize = 400;

/// `events` events through ingest to `subscribers` subscribers of one token,
/// `burst` events per wake-up of their writers.
pub(crate) fn deliveries(events: usize, subscribers: usize, burst: usize) -> anyhow::Result<bool> {
    if events > MAX_EVENTS || burst == 0 {
        bail!("--events must be at most {MAX_EVENTS} and --burst at least 1");
    }
    let config = ServerConfig::default();
    let token = TokenId::parse("BTC").expect("valid token id");
    let messages = nats_messages(&config.subjects, &token, MAX_EVENTS);
    let expected_bytes: usize = messages[..events]
        .iter()
        .map(|m| frame_len(m.payload.len()))
        .sum::<usize>()
        * subscribers;
    let metrics = Arc::new(Metrics::new());
    let router = Router::new(metrics.clone());
    let mut window = DedupWindow::new(config.dedup_window, config.dedup_capacity);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let written = runtime.block_on(async {
        let channel = [Channel::Token(token.clone())];
        let mut writers = Vec::with_capacity(subscribers);
        let mut outboxes = Vec::with_capacity(subscribers);
        for conn in 0..subscribers as u64 {
            let outbox = Arc::new(Outbox::new(
                config.max_queue_bytes,
                config.conflate_above_bytes,
            ));
            router.subscribe(conn, &outbox, &channel, Frame::plain("ack"));
            writers.push(tokio::spawn(writer(outbox.clone(), metrics.clone())));
            outboxes.push(outbox);
        }
        // The acks go out before the first event.
        tokio::task::yield_now().await;

        // The events' timestamps are fixed and long past (see
        // `nats_messages`): a window reaching back a century takes them all.
        let limits = EventLimits {
            max_age: Duration::from_secs(100 * 365 * 86_400),
            ..EventLimits::default()
        };
        let mut wakes = Vec::new();
        let mut messages = messages.into_iter();
        let mut left = events;
        while left > 0 {
            for msg in messages.by_ref().take(burst.min(left)) {
                ingest::ingest_one(
                    &config.subjects,
                    &limits,
                    &metrics,
                    &router,
                    &mut window,
                    msg,
                    &mut wakes,
                );
            }
            left = left.saturating_sub(burst);
            Router::wake_all(&mut wakes);
            // Every woken writer runs before the next burst.
            tokio::task::yield_now().await;
        }
        // The unused messages of the larger size: dropping them would cost
        // less the more are used, skewing the difference.
        std::mem::forget(messages);

        for outbox in &outboxes {
            outbox.close(CloseRequest {
                code: odin_protocol::close::GOING_AWAY,
                drain: true,
                reply: false,
            });
        }
        let mut written = 0;
        for writer in writers {
            written += writer.await.expect("writer task");
        }
        written
    });
    let delivered = metrics.messages_delivered.get();
    let want = ((events + 1) * subscribers) as u64;
    if delivered != want || written != expected_bytes + subscribers * frame_len(3) {
        bail!(
            "delivered {delivered} frames ({written} bytes), expected {want} ({} bytes)",
            expected_bytes + subscribers * frame_len(3)
        );
    }
    Ok(true)
}

/// What the writer does with its outbox each time it wakes (its loop in
/// `writer.rs` without the heartbeat, expiry, shutdown and abort arms),
/// writing into a sink that takes everything. Returns the bytes written.
async fn writer(outbox: Arc<Outbox>, metrics: Arc<Metrics>) -> usize {
    let mut batch: VecDeque<Frame> = VecDeque::new();
    let mut written = 0;
    let ping = false;
    loop {
        outbox.ready().await;
        let close = outbox.take(&mut batch);
        let pong = outbox.take_pong();
        let count = batch.len() as u64;
        let frames = || {
            let pong = pong.as_deref().map(|p| (wire::OP_PONG, p));
            let texts = batch.iter().map(|f| (wire::OP_TEXT, f.text.as_bytes()));
            let ping = ping.then_some((wire::OP_PING, &[][..]));
            pong.into_iter().chain(texts).chain(ping)
        };
        let mut progress = wire::Progress::default();
        loop {
            let sink = |slices: &[IoSlice<'_>]| Ok(slices.iter().map(|s| s.len()).sum());
            match wire::write_frames(sink, frames(), &mut progress) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) => panic!("a memory sink cannot fail: {e}"),
            }
        }
        metrics.messages_delivered.inc_by(count);
        batch.clear();
        if close.is_some() {
            return written;
        }
    }
}

/// `count` price, volume and trade updates of `token` in turn, as the
/// publisher sends them (JSON body, `Nats-Msg-Id` header = the nonce). The
/// figures are fixed so every run parses the same bytes; the timestamps are
/// long past, so every ingest latency falls in the same histogram bucket.
fn nats_messages(subjects: &Subjects, token: &TokenId, count: usize) -> Vec<async_nats::Message> {
    let nonces = NonceSource::with_instance(0x0d1b_0000_0000_0001);
    (0..count)
        .map(|i| {
            let nonce = nonces.next();
            let step = (i % 40) as f64;
            let timestamp = 1_700_000_000_000.0 + i as f64 * 7.0;
            let event = match i % 3 {
                0 => Event::PriceUpdate(PriceUpdate {
                    token_id: token.clone(),
                    price: 64_250.5 + step * 1.25,
                    source: PriceSource::Trade,
                    previous_price: Some(64_249.25 + step * 1.25),
                    change_24h: Some(1.75),
                    timestamp,
                    nonce: nonce.clone(),
                }),
                1 => Event::VolumeUpdate(VolumeUpdate {
                    token_id: token.clone(),
                    volume_24h: 1_250_000.5 + step * 10.0,
                    timestamp,
                    nonce: nonce.clone(),
                }),
                _ => Event::TradeExecuted(TradeExecuted {
                    token_id: token.clone(),
                    trade_id: format!("t-{i:06}"),
                    side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
                    price: 64_250.5 + step * 1.25,
                    amount: 0.125,
                    timestamp,
                    nonce: nonce.clone(),
                }),
            };
            let subject = event.subject(subjects);
            let payload = Bytes::from(event.to_json());
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, nonce.as_str());
            async_nats::Message {
                length: subject.len() + payload.len(),
                subject: subject.into(),
                reply: None,
                payload,
                headers: Some(headers),
                status: None,
                description: None,
            }
        })
        .collect()
}

/// Bytes on the wire of a text frame of `payload` bytes (below 64 KiB).
fn frame_len(payload: usize) -> usize {
    payload + if payload < 126 { 2 } else { 4 }
}

/// `count` WebSocket upgrades with a JWT, one after the other.
pub(crate) fn handshakes(count: usize) -> anyhow::Result<bool> {
    let config = ServerConfig::default();
    let auth = AuthConfig::development();
    let authenticator = Authenticator::new(&auth);
    let token = mint_token(&auth, "bench-user", Duration::from_secs(3600));
    let request = format!(
        "GET {WS_PATH}?token={token} HTTP/1.1\r\n\
         Host: 127.0.0.1:8080\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    // As `listener::websocket_config`.
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
        .read_buffer_size(512)
        .write_buffer_size(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for _ in 0..count {
            let (mut client, server) = tokio::io::duplex(4096);
            let mut subject = None;
            // As `listener::admit`, less the path's 404 and the connection
            // slot.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                assert_eq!(req.uri().path(), WS_PATH);
                let token = token_from_request(
                    req.uri().query(),
                    req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
                );
                let verified = authenticator
                    .verify(&token.unwrap_or_default())
                    .expect("the token is valid");
                subject = Some(verified.sub);
                Ok(resp)
            };
            let serve =
                tokio_tungstenite::accept_hdr_async_with_config(server, callback, Some(ws_config));
            let ask = async {
                client.write_all(request.as_bytes()).await?;
                let mut response = Vec::with_capacity(256);
                while !response.ends_with(b"\r\n\r\n") {
                    if client.read_buf(&mut response).await? == 0 {
                        break;
                    }
                }
                anyhow::Ok(response)
            };
            let (upgraded, response) = tokio::join!(serve, ask);
            let response = response?;
            upgraded.context("the upgrade failed")?;
            if !response.starts_with(b"HTTP/1.1 101") || subject.is_none() {
                bail!("unexpected answer: {}", String::from_utf8_lossy(&response));
            }
        }
        Ok(true)
    })
}
