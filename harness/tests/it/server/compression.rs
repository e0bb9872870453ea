//! permessage-deflate (`--compression`, `PROTOCOL.md` §2): clients that
//! offer it get events compressed, each event compressed once however many
//! such clients there are; clients that do not get the same events plain;
//! and a compression bomb sent to the server ends in `1009`, never in
//! memory, while other clients carry on.

use odin_harness::client::{ClientConfig, TestClient};
use odin_harness::wait::LIMIT;
use odin_protocol::ServerMessage;
use odin_protocol::deflate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;

use super::support::Stack;

const PRICES: usize = 5;

/// The price updates' nonces `client` receives, in order, until it has
/// `PRICES` of them.
async fn price_nonces(client: &mut TestClient) -> Vec<String> {
    let mut nonces = Vec::new();
    while nonces.len() < PRICES {
        if let ServerMessage::PriceUpdate(p) =
            client.next_message(LIMIT).await.expect("a message in time")
        {
            nonces.push(p.nonce.as_str().to_owned());
        }
    }
    nonces
}

#[tokio::test]
async fn compressing_and_plain_clients_get_the_same_events_each_compressed_once() {
    let mut stack = Stack::start_with(|c| c.compression = Some(64)).await;
    let endpoint = stack.server.endpoint().clone();
    let spawn = |compression: bool| {
        let config =
            ClientConfig::new(endpoint.ws_url(), ["token.BTC"]).with_compression(compression);
        let endpoint = endpoint.clone();
        TestClient::spawn(config, move || endpoint.token("deflate"))
    };
    let mut clients = [spawn(true), spawn(true), spawn(false)];
    for client in &mut clients {
        client.wait_subscribed(LIMIT).await.expect("subscribed");
    }
    let mut sent = Vec::new();
    for i in 0..PRICES {
        let event = stack.publisher.price_event("BTC", 100.0 + i as f64);
        sent.push(event.nonce().as_str().to_owned());
        stack.publisher.event(&event).await;
    }
    for client in &mut clients {
        assert_eq!(price_nonces(client).await, sent);
    }
    let stats = stack
        .server
        .endpoint()
        .wait_for_stats(LIMIT, |s| s.messages_compressed >= 2 * PRICES as u64)
        .await
        .expect("stats");
    assert_eq!(stats.compressed_connections, 2);
    assert_eq!(
        (stats.events_compressed, stats.messages_compressed),
        (PRICES as u64, 2 * PRICES as u64),
        "each event compressed once, sent compressed to both"
    );
}

/// A masked client frame whose first byte is `b0` (FIN, RSV1, opcode),
/// encoded by tungstenite.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Frame::message(payload.to_vec(), OpCode::from(b0 & 0x0F), b0 & 0x80 != 0);
    let header = frame.header_mut();
    header.rsv1 = b0 & 0x40 != 0;
    header.mask = Some([0x12, 0x34, 0x56, 0x78]);
    let mut out = Vec::new();
    frame.format(&mut out).expect("a frame encodes into memory");
    out
}

/// Reads frames from `stream` (after the `101` head) until a close frame,
/// and returns its code.
async fn close_code(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed without a close frame");
        buf.extend_from_slice(&chunk[..n]);
        // Skip whole frames (the server's are unmasked, short here).
        loop {
            if buf.len() < 2 {
                break;
            }
            let (len, at) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => break,
                n => (n as usize, 2),
            };
            if buf.len() < at + len {
                break;
            }
            if buf[0] & 0x0f == 0x8 {
                return u16::from_be_bytes([buf[at], buf[at + 1]]);
            }
            buf.drain(..at + len);
        }
    }
}

/// Reads the upgrade's answer up to its blank line.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        timeout(LIMIT, stream.read_exact(&mut byte))
            .await
            .expect("101 in time")
            .unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn a_compression_bomb_closes_with_1009_and_others_carry_on() {
    let stack = Stack::start_with(|c| c.compression = Some(64)).await;
    let endpoint = stack.server.endpoint();
    let mut control = stack.client().await;
    let mut stream = TcpStream::connect(endpoint.ws_addr).await.expect("connect");
    let request = |token: String| {
        format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: odin\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        )
    };
    stream
        .write_all(request(endpoint.token("bomb")).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{head}"
    );
    // 2 MiB of spaces, about 2 KiB compressed: over the 4 KiB limit
    // only once inflated.
    let bomb = deflate::deflate(&[b' '; 2 << 20]);
    assert!(bomb.len() < 4096, "{}", bomb.len());
    stream.write_all(&client_frame(0xC1, &bomb)).await.unwrap();
    let code = timeout(LIMIT, close_code(&mut stream))
        .await
        .expect("closed in time");
    assert_eq!(code, 1009);

    // A compressed subscribe, as browsers send it, is understood.
    let mut stream = TcpStream::connect(endpoint.ws_addr).await.expect("connect");
    stream
        .write_all(request(endpoint.token("ok")).as_bytes())
        .await
        .unwrap();
    // RFC 6455 §4.1: a client waits for the answer before sending frames.
    read_head(&mut stream).await;
    let subscribe = deflate::deflate(br#"{"type":"subscribe","channels":["token.BTC"],"id":"z1"}"#);
    stream
        .write_all(&client_frame(0xC1, &subscribe))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let found = timeout(LIMIT, async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&seen).contains(r#""id":"z1""#) {
                break;
            }
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no subscribed answer: {}",
        String::from_utf8_lossy(&seen)
    );

    control
        .send_json(serde_json::json!({"type":"ping","id":"c1"}))
        .await;
    assert_eq!(control.next_of_type("pong").await["id"], "c1");
}
