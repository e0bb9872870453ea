//! Hostile WebSocket frames: floods of pings or pongs, which use the same
//! budget as messages and end in `1008` like any other abuse, and frames
//! that break RFC 6455's framing rules, which get a `1002` close, while the
//! control client keeps its feed.

use futures_util::{SinkExt, StreamExt};
use odin_harness::wait::LIMIT;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::control::Control;
use crate::server::support::{Stack, Ws};

/// Frames sent as fast as the socket takes them; the budget is 40 at once
/// and 20 a second.
const FLOOD: usize = 2_000;

/// Sends `FLOOD` frames made by `frame` (stopping early when the server has
/// closed), then reads to the close: returns the close code, how many pongs
/// came back and how many `rate_limited` errors.
async fn flood(ws: &mut Ws, frame: impl Fn() -> Message) -> (Option<u16>, usize, usize) {
    for _ in 0..FLOOD {
        if ws.inner_mut().send(frame()).await.is_err() {
            break;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let next = tokio::time::timeout_at(deadline, ws.inner_mut().next())
            .await
            .expect("the flooding client is closed in time");
        match next {
            Some(Ok(Message::Pong(_))) => pongs += 1,
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    assert_eq!(v["code"], "rate_limited", "{v}");
                    limited += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return (frame.map(|f| u16::from(f.code)), pongs, limited);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (None, pongs, limited),
        }
    }
}

#[tokio::test]
async fn a_ping_flood_is_rate_limited_and_closed_with_1008() {
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let mut ws = stack.client().await;
    let (close, pongs, limited) = flood(&mut ws, || Message::Ping(b"x".to_vec().into())).await;
    assert_eq!(close, Some(1008), "pongs {pongs}, rate_limited {limited}");
    // Pings within the budget are answered (the writer may answer a run of
    // them with one pong, for the latest, as RFC 6455 §5.5.3 allows).
    assert!(pongs >= 1, "pings within the budget are answered");
    assert_eq!(limited, 10, "the tenth strike closes");
    control.finish().await;
}

#[tokio::test]
async fn a_pong_flood_is_rate_limited_and_closed_with_1008() {
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let mut ws = stack.client().await;
    let (close, _, limited) = flood(&mut ws, || Message::Pong(b"x".to_vec().into())).await;
    assert_eq!(close, Some(1008), "rate_limited {limited}");
    assert_eq!(limited, 10, "the tenth strike closes");
    control.finish().await;
}

/// A client frame as raw bytes: `first` is the FIN/RSV/opcode byte; the
/// payload is masked (with a zero mask, which leaves it as it is) unless
/// `masked` is false.
fn raw_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&[0, 0, 0, 0]);
    }
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn frames_that_break_the_framing_rules_get_a_1002_close() {
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let ping = br#"{"type":"ping"}"#;
    let cases: [(&str, Vec<u8>); 6] = [
        (
            "a reserved bit set",
            raw_frame(0x80 | 0x40 | 0x1, ping, true),
        ),
        ("an unmasked frame", raw_frame(0x81, ping, false)),
        ("a reserved data opcode", raw_frame(0x83, b"", true)),
        ("a reserved control opcode", raw_frame(0x8B, b"", true)),
        ("a 126-byte ping", raw_frame(0x89, &[b'p'; 126], true)),
        ("a fragmented ping", raw_frame(0x09, b"p", true)),
    ];
    for (what, bytes) in cases {
        let mut ws = stack.client().await;
        ws.send_raw_bytes(&bytes).await;
        assert_eq!(ws.closed().await, Some(1002), "{what}");
    }
    control.finish().await;
}
