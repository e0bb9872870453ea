//! Protocol version negotiation (`PROTOCOL.md` "Versions", §2): `?protocol=2`
//! gets version 2, nothing (or `1`) version 1, any other value a `400` with
//! `protocol_unsupported`; and the `error` message's `channel` field, which
//! every version gets, naming the channel verbatim.

use serde_json::json;

use super::support::{Stack, Ws};

#[tokio::test]
async fn the_version_asked_for_is_the_version_announced() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let plain = Ws::connect_ok(ep).await;
    assert_eq!(plain.hello["protocolVersion"], 1, "{}", plain.hello);
    for version in [1, 2] {
        let ws = Ws::connect_version(ep, version).await;
        assert_eq!(ws.hello["protocolVersion"], version, "{}", ws.hello);
    }
}

#[tokio::test]
async fn an_unknown_version_is_refused_with_400() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    for asked in ["7", "0", "two", "%32%32", "2.0"] {
        let url = format!("{}?protocol={asked}&token={}", ep.ws_url(), ep.token("t"));
        let (status, body) = Ws::refused(&url, &[]).await;
        assert_eq!(status, 400, "{asked}: {body}");
        assert_eq!(body["code"], "protocol_unsupported", "{asked}: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("version"))
        );
    }
    // Refused before the token is looked at: no token, still 400.
    let (status, _) = Ws::refused(&format!("{}?protocol=9", ep.ws_url()), &[]).await;
    assert_eq!(status, 400);
    // The server is unharmed.
    Ws::connect_version(ep, 2).await;
}

#[tokio::test]
async fn channel_errors_name_the_channel_verbatim_in_every_version() {
    let stack = Stack::start_with(|c| c.max_channels = 2).await;
    let ep = stack.server.endpoint();
    let strange = "token.\"quoted\"\\slash\u{1}\u{7f}é💥\u{2028}";
    for version in [1, 2] {
        let mut ws = Ws::connect_version(ep, version).await;
        ws.send_json(json!({"type": "subscribe", "id": "r1",
            "channels": ["token.a.b", strange, "token.A", "token.B", "token.C", "batch"]}))
            .await;
        let subscribed = ws.next_of_type("subscribed").await;
        assert_eq!(subscribed["channels"], json!(["token.A", "token.B"]));
        for channel in ["token.a.b", strange] {
            let error = ws.next_of_type("error").await;
            assert_eq!(error["code"], "invalid_channel", "{error}");
            assert_eq!(error["channel"], channel, "{error}");
            assert_eq!(error["id"], "r1");
        }
        let limit = ws.next_of_type("error").await;
        assert_eq!(limit["code"], "too_many_channels", "{limit}");
        assert_eq!(limit["channel"], "token.C", "the first refused: {limit}");
        // Errors about no channel have no `channel`.
        ws.send_text("not json").await;
        let invalid = ws.next_of_type("error").await;
        assert_eq!(invalid["code"], "invalid_message");
        assert!(invalid.get("channel").is_none(), "{invalid}");
    }
}

#[tokio::test]
async fn a_hostile_channel_name_is_echoed_whole_and_bounded_by_the_message_limit() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let mut ws = Ws::connect_version(ep, 2).await;
    // The largest message the server reads (4096 bytes) holding one channel
    // of quotes, backslashes and control characters, each escaped on the
    // way back: JSON's escapes, and Rust's in the human `message`.
    let envelope = json!({"type": "subscribe", "channels": [""]}).to_string();
    let unit = "\"\\\u{1}";
    let escaped_unit = serde_json::to_string(unit).unwrap().len() - 2;
    let room = 4096 - envelope.len();
    let name = unit.repeat(room / escaped_unit) + &"a".repeat(room % escaped_unit);
    let request = json!({"type": "subscribe", "channels": [name]}).to_string();
    assert_eq!(request.len(), 4096);
    ws.send_text(request).await;
    ws.next_of_type("subscribed").await;
    let text = ws.next_text().await;
    let error: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["code"], "invalid_channel");
    assert_eq!(error["channel"], name.as_str(), "echoed whole");
    // Bounded: the channel twice (field and message), each at most about
    // twice its escaped request size.
    assert!(text.len() < 4 * 4096, "an error of {} bytes", text.len());
    // One byte more is a message over the limit: 1009, no error echo.
    let over = json!({"type": "subscribe", "channels": [format!("{name}x")]}).to_string();
    let mut other = Ws::connect_version(ep, 2).await;
    other.send_text(over).await;
    assert_eq!(other.closed().await, Some(1009));
}
