//! The shape of `GET /stats` (`PROTOCOL.md` §6) as a real server answers it,
//! after a short run in which every counter that can move does so by a known
//! amount; the values that differ from run to run (the server id, uptime and
//! latencies) are checked, then redacted.

use odin_harness::client::connect_raw;
use odin_harness::nats::NatsServer;
use odin_harness::server::TestServer;
use odin_harness::wait::LIMIT;
use odin_protocol::message::ChannelRequest;
use odin_protocol::{ClientMessage, ServerMessage, Subjects};
use serde_json::Value;

use super::sorted;

use crate::support::{Publisher, wait_subscribed_in_nats};

#[tokio::test]
async fn stats_of_a_running_server_have_the_documented_shape() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let server = TestServer::start(&nats.url()).await.expect("server starts");
    wait_subscribed_in_nats(&nats, &server, &Subjects::default().all()).await;

    // One refused upgrade, one client subscribed to BTC, and on NATS one
    // invalid event, one price and its duplicate.
    let refused = connect_raw(&server.ws_url(), "not-a-jwt").await;
    assert_eq!(refused.err().and_then(|e| e.status()), Some(401));
    let mut client = connect_raw(&server.ws_url(), &server.token("stats"))
        .await
        .unwrap();
    client
        .send_json(&ClientMessage::Subscribe(ChannelRequest {
            channels: vec!["token.BTC".into()],
            id: None,
        }))
        .await
        .unwrap();
    for expected in ["connection_established", "subscribed"] {
        let m = client.next_message(LIMIT).await.unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap()["type"], expected, "{m:?}");
    }
    let mut publisher = Publisher::connect(&nats.url()).await;
    publisher
        .raw("odin.token.BTC.price".into(), Some("bad-1"), "not JSON")
        .await;
    let price = publisher.price_event("BTC", 1.5);
    publisher.event(&price).await;
    publisher.event(&price).await;
    match client.next_message(LIMIT).await.unwrap() {
        ServerMessage::PriceUpdate(p) => assert_eq!(&p.nonce, price.nonce()),
        other => panic!("expected the price, got {other:?}"),
    }

    server
        .wait_for_stats(LIMIT, |s| {
            s.messages_received == 3
                && s.invalid_events == 1
                && s.duplicates_dropped == 1
                && s.auth_failures == 1
                && s.messages_delivered == 3
        })
        .await
        .unwrap();
    let body: Value = server.get("/stats").await.unwrap().json().unwrap();
    assert_eq!(body["serverId"], server.server_id());
    for field in ["uptimeSeconds", "averageLatency", "peakLatency"] {
        assert!(
            body[field].as_f64().is_some_and(|v| v >= 0.0),
            "{field} is a non-negative number: {body}"
        );
    }
    assert!(body["peakLatency"].as_f64() >= body["averageLatency"].as_f64());
    insta::assert_json_snapshot!("stats", sorted(body), {
        ".serverId" => "[server id]",
        ".uptimeSeconds" => "[seconds]",
        ".averageLatency" => "[milliseconds]",
        ".peakLatency" => "[milliseconds]",
    });
}
