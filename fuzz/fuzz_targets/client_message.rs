//! A client's text frame through what the gateway does with it: the
//! `ClientMessage` deserialization `session.rs` applies to every frame, and
//! `Channel::parse` on each channel of a subscribe or unsubscribe; also the
//! acknowledgement the server would send back. For clients' sake (the
//! harness and the load users read every server frame), the same bytes go
//! through `ServerMessage` too.
//!
//! No input may panic. An accepted message serializes and parses back to
//! itself; an accepted channel prints back as the string the client sent;
//! whatever the server sends is parseable by a client.
//! (`session::on_text`, `parse_channels` and `request_id` are private to the
//! server crate; this target drives the public parsers they are built on.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use odin_fuzz::{is_channel, json_close};
use odin_protocol::message::{ChannelRequest, ChannelsAck};
use odin_protocol::{Channel, ClientMessage, Nonce, ServerMessage};

fuzz_target!(|data: &[u8]| {
    // A text frame that is not UTF-8 is closed with 1007 before anything
    // parses it (PROTOCOL.md §5).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = ClientMessage::parse(text) {
        check_client_message(text, message);
    }
    if let Ok(message) = serde_json::from_str::<ServerMessage>(text) {
        check_server_message(&message);
    }
});

fn check_client_message(text: &str, message: ClientMessage) {
    // Only a JSON object is a message (PROTOCOL.md §3); serde's tagged
    // enums alone also read an array with the tag first (`["ping"]`), which
    // this target found and `ClientMessage::parse` now refuses.
    let value: serde_json::Value = serde_json::from_str(text).expect("a message is JSON");
    assert!(
        value.is_object(),
        "{text:?} parsed as a message but is no JSON object"
    );
    let json = message.to_json();
    let back: ClientMessage = serde_json::from_str(&json).expect("a message's JSON parses");
    assert_eq!(back, message, "{json}");
    assert_eq!(back.to_json(), json);
    match message {
        ClientMessage::Subscribe(req) => channel_request(req, ServerMessage::Subscribed),
        ClientMessage::Unsubscribe(req) => channel_request(req, ServerMessage::Unsubscribed),
        ClientMessage::Ping(_) => {}
        // The token is checked by the server's authenticator, which the
        // jwt_claims target fuzzes.
        ClientMessage::Refresh(_) => {}
    }
}

/// What `session.rs` does with a request's channels: parse each (an invalid
/// one gets `invalid_channel` naming it), acknowledge the valid ones.
fn channel_request(req: ChannelRequest, answer: fn(ChannelsAck) -> ServerMessage) {
    let mut acked = Vec::new();
    for raw in &req.channels {
        match Channel::parse(raw) {
            Ok(channel) => {
                assert!(is_channel(raw), "channel {raw:?} accepted");
                assert_eq!(channel.to_string(), *raw);
                acked.push(raw.clone());
            }
            Err(e) => {
                assert!(!is_channel(raw), "channel {raw:?} refused: {e}");
                let _error_message = format!("invalid channel {raw:?}: {e}");
            }
        }
    }
    let ack = answer(ChannelsAck {
        channels: acked,
        id: req.id,
        timestamp: 1_764_288_000_123.456,
        nonce: Nonce::parse("fuzz-1").unwrap(),
    });
    let back: ServerMessage = serde_json::from_str(&ack.to_json()).expect("an ack parses");
    assert_eq!(back, ack);
}

/// Whatever a server message holds, its JSON parses back to the same value
/// (floats to within an ulp: serde_json's default float parsing).
fn check_server_message(message: &ServerMessage) {
    let json = message.to_json();
    let back: ServerMessage = serde_json::from_str(&json).expect("a server message's JSON parses");
    let a = serde_json::to_value(message).unwrap();
    let b = serde_json::to_value(&back).unwrap();
    assert!(json_close(&a, &b), "{a} became {b}");
}
