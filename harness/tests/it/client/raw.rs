//! The raw client: arbitrary frames out, raw frames and close codes in,
//! refused upgrades with their status and body.

use odin_harness::client::{CloseInfo, RawAuth, RawClient, connect_raw};
use odin_harness::wait::LIMIT;
use odin_protocol::message::AuthErrorCode;
use tokio_tungstenite::tungstenite::Message;

use super::peer::{FakeServer, established};

#[tokio::test]
async fn sends_binary_and_reads_the_close_code() {
    let mut server = FakeServer::start().await;
    let mut raw = connect_raw(&server.url(), "jwt").await.unwrap();
    let mut conn = server.accept().await;
    assert_eq!(conn.token().as_deref(), Some("jwt"));
    raw.send_binary(vec![0u8, 1, 2]).await.unwrap();
    assert!(matches!(conn.next_frame().await, Some(Message::Binary(b)) if b.as_ref() == [0, 1, 2]));
    conn.close(1003).await;
    let close = raw.expect_close(LIMIT).await.unwrap();
    assert_eq!(
        close,
        Some(CloseInfo {
            code: 1003,
            reason: "test".into()
        })
    );
}

#[tokio::test]
async fn reads_server_messages_and_sends_raw_text() {
    let mut server = FakeServer::start().await;
    let mut raw = connect_raw(&server.url(), "jwt").await.unwrap();
    let mut conn = server.accept().await;
    conn.send(&established()).await;
    let first = raw.next_message(LIMIT).await.unwrap();
    assert!(matches!(
        first,
        odin_protocol::ServerMessage::ConnectionEstablished(_)
    ));
    raw.send_text("{not json").await.unwrap();
    assert!(matches!(conn.next_frame().await, Some(Message::Text(t)) if t.as_str() == "{not json"));
}

#[tokio::test]
async fn fragmented_text_arrives_as_one_message() {
    let mut server = FakeServer::start().await;
    let mut raw = connect_raw(&server.url(), "jwt").await.unwrap();
    let mut conn = server.accept().await;
    let text = "x".repeat(5000);
    raw.send_fragmented_text(&text, 1024).await.unwrap();
    match conn.next_frame().await {
        Some(Message::Text(t)) => assert_eq!(t.as_str(), text),
        other => panic!("expected the reassembled text, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_upgrade_exposes_its_status_and_error_body() {
    let server = FakeServer::start().await;
    server.refuse_next(1);
    let err = connect_raw(&server.url(), "bad").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(
        err.auth_error().map(|b| b.code),
        Some(AuthErrorCode::AuthInvalid)
    );
}

#[tokio::test]
async fn bearer_tokens_go_in_the_header_and_none_sends_nothing() {
    let mut server = FakeServer::start().await;
    let _raw = RawClient::connect(&server.url(), &RawAuth::bearer("abc"))
        .await
        .unwrap();
    let conn = server.accept().await;
    assert_eq!(conn.headers.get("authorization").unwrap(), "Bearer abc");
    assert_eq!(conn.token(), None);

    let _bare = RawClient::connect(&server.url(), &RawAuth::none())
        .await
        .unwrap();
    let conn = server.accept().await;
    assert!(conn.headers.get("authorization").is_none());
    assert_eq!(conn.uri.query(), None);
}
