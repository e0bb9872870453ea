//! The publisher's confirmation of the last-prices store
//! (`--confirm-stored-prices`): a price the store did not take (here: no
//! stream yet, as for a cluster still electing the stream's leader) is sent
//! again while it is its token's latest, until the store has it; an older
//! price of a token is not sent again once a newer one was published.

use std::time::Duration;

use async_nats::jetstream;
use odin_harness::nats::{NatsOptions, NatsServer};
use odin_protocol::Subjects;
use odin_publisher::outgoing::Outgoing;
use odin_publisher::sink::{NatsSink, Sink};
use odin_server::last_prices::{LastPricesConfig, ensure_stream, stream_config};

use super::support::LIMIT;
use crate::support::Publisher;

#[tokio::test]
async fn the_publisher_sends_each_unstored_latest_price_again_until_the_store_takes_it() {
    let nats = NatsServer::start_with(NatsOptions {
        jetstream: true,
        ..NatsOptions::default()
    })
    .await
    .expect("NATS with JetStream starts");
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let mut sink = NatsSink::from_client(client.clone());
    sink.confirm_stored_prices();
    let stats = sink.store_stats().expect("confirmation is on");

    // Three prices while there is no store: nothing answers them.
    let mut events = Publisher::connect(&nats.url()).await;
    let subjects = Subjects::default();
    let a1 = events.price_event("AAA", 1.0);
    let b1 = events.price_event("BBB", 2.0);
    let a2 = events.price_event("AAA", 3.0);
    for (event, token) in [(&a1, 0), (&b1, 1), (&a2, 0)] {
        let subject = event.subject(&subjects).into();
        sink.publish(Outgoing::new(event, Some(token), subject))
            .await
            .expect("the publish is sent");
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    while stats.failed() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the missing store was never noticed ({} failed)",
            stats.failed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.unconfirmed(), 3);

    // The store appears; the final flush waits until it has every latest
    // price.
    let js = jetstream::new(client);
    let config = LastPricesConfig::new("ODIN_LAST_PRICES");
    let stream = ensure_stream(&js, &stream_config(&config, &subjects))
        .await
        .expect("the stream is made");
    tokio::time::timeout(LIMIT, sink.flush())
        .await
        .expect("the store confirms within the limit")
        .expect("the flush succeeds");
    assert_eq!(stats.unconfirmed(), 0);
    assert!(stats.resent() >= 2, "{} resent", stats.resent());

    for (token, want) in [("AAA", &a2), ("BBB", &b1)] {
        let stored = stream
            .get_last_raw_message_by_subject(&format!("odin.token.{token}.price"))
            .await
            .unwrap_or_else(|e| panic!("the store has no price of {token}: {e}"));
        assert_eq!(
            std::str::from_utf8(&stored.payload).unwrap(),
            want.to_json(),
            "the store's price of {token}"
        );
    }
    // A1 was superseded by A2 before the store came back: never stored.
    let mut stream = stream;
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 2, "{:?}", info.state);
    assert_eq!(info.state.last_sequence, 2, "{:?}", info.state);
}
