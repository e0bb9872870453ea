//! Hostile upgrade requests: an over-long token or header block gets `431`
//! (it used to get no answer at all), while the control client keeps its
//! feed.
//!
//! The requests are written on a bare `TcpStream`: a WebSocket client
//! would not send a head this malformed, nor show the raw answer.

use odin_harness::wait::LIMIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::control::Control;
use crate::server::support::Stack;

/// Sends `request` on a fresh connection to the WebSocket port and returns
/// everything the server answers before it closes.
async fn answer_to(stack: &Stack, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(stack.server.endpoint().ws_addr)
        .await
        .unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes in time")
        .expect("no reset: the server reads the request before it closes");
    String::from_utf8_lossy(&answer).into_owned()
}

fn upgrade_request(path: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: odin\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn an_over_long_token_or_header_block_gets_431() {
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let long_token = format!("/ws?token={}", "a".repeat(100_000));
    let flood: String = (0..3_000).map(|i| format!("X-Flood-{i}: x\r\n")).collect();
    for (what, request) in [
        ("a 100 KB token", upgrade_request(&long_token, "")),
        ("3,000 headers", upgrade_request("/ws", &flood)),
    ] {
        let answer = answer_to(&stack, &request).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 "),
            "{what}: {}",
            &answer[..answer.len().min(200)]
        );
        assert!(
            answer.contains(r#""code":"request_head_too_large""#),
            "{what}: {answer}"
        );
    }
    // A request just under the limit is read as usual (refused for its
    // token, which is not a JWT).
    let near = format!("/ws?token={}", "a".repeat(15_000));
    let answer = answer_to(&stack, &upgrade_request(&near, "")).await;
    assert!(
        answer.starts_with("HTTP/1.1 401 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
    control.finish().await;
}
