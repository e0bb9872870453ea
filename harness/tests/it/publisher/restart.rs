//! NATS restarts under a running publisher.

use odin_harness::nats::NatsServer;
use odin_harness::publisher::{InProcessPublisher, test_config};
use odin_harness::wait::{LIMIT, eventually};
use odin_publisher::PublisherConfig;

use super::support::Capture;

#[tokio::test]
async fn survives_a_nats_restart_and_keeps_publishing() {
    let mut nats = NatsServer::start().await.expect("NATS starts");
    let mut capture = Capture::start(&nats.url()).await.expect("subscribed");
    let config = PublisherConfig {
        rate: 500.0,
        ..test_config(&nats.url())
    };
    let publisher = InProcessPublisher::start(config).unwrap();
    capture.wait_for(200).await.expect("publishing before");

    nats.stop().await.unwrap();
    // Wait for the outage to be seen by the capture's client.
    eventually(LIMIT, "the outage to be noticed", async || {
        (capture.client.connection_state() != async_nats::connection::State::Connected)
            .then_some(())
    })
    .await;
    nats.restart().await.unwrap();

    // The capture client re-subscribes on reconnect; fresh events arrive.
    capture.drain();
    let before = capture.messages.len();
    capture
        .wait_for(before + 500)
        .await
        .expect("publishing after");
    assert!(!publisher.is_finished());
    let totals = publisher.stop().await.unwrap();
    assert!(totals.disconnects >= 1, "{totals:?}");
    assert!(totals.reconnects >= 1, "{totals:?}");
    assert!(totals.flushed);
}
