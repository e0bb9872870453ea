//! The publisher's confirmation of the last-prices store
//! (`--confirm-stored-prices`): a price the store did not take (here: no
//! stream yet, as for a cluster still electing the stream's leader) is sent
//! again while it is its token's latest, until the store has it; an older
//! price of a token is not sent again once a newer one was published. With
//! NATS away and the client's buffer full, publishing waits (as a core
//! publish does) instead of dropping prices, and they are stored once NATS
//! is back.

use std::time::Duration;

use async_nats::jetstream;
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::{Event, Subjects};
use odin_publisher::outgoing::Outgoing;
use odin_publisher::sink::{NatsSink, Sink};
use odin_server::last_prices::{LastPricesConfig, ensure_stream, stream_config};

use super::support::jetstream_nats;
use crate::support::Publisher;

/// Asserts that `stream` holds `price` as its token's last price, byte for
/// byte.
async fn assert_stored(stream: &jetstream::stream::Stream, price: &Event) {
    let subject = price.subject(&Subjects::default());
    let stored = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .unwrap_or_else(|e| panic!("the store has nothing on {subject}: {e}"));
    assert_eq!(
        std::str::from_utf8(&stored.payload).unwrap(),
        price.to_json(),
        "the store's price on {subject}"
    );
}

#[tokio::test]
async fn the_publisher_sends_each_unstored_latest_price_again_until_the_store_takes_it() {
    let nats = jetstream_nats().await;
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
        sink.publish(Outgoing::new(event, Some(token), subject, None))
            .await
            .expect("the publish is sent");
    }
    eventually(
        LIMIT,
        "the missing store to be noticed",
        async || match stats.failed() {
            3.. => Ok(()),
            failed => Err(format!("{failed} failed")),
        },
    )
    .await;
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

    assert_stored(&stream, &a2).await;
    assert_stored(&stream, &b1).await;
    // A1 was superseded by A2 before the store came back: never stored.
    let mut stream = stream;
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 2, "{:?}", info.state);
    assert_eq!(info.state.last_sequence, 2, "{:?}", info.state);
}

#[tokio::test]
async fn prices_published_while_nats_is_away_with_a_full_buffer_wait_and_are_stored() {
    let mut nats = jetstream_nats().await;
    let subjects = Subjects::default();
    // A client that buffers 4 commands while disconnected: publishing then
    // waits, as the publisher's own client does past `--nats-buffer`.
    let client = async_nats::ConnectOptions::new()
        .client_capacity(4)
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .expect("connects");
    let js = jetstream::new(client.clone());
    let config = LastPricesConfig::new("ODIN_LAST_PRICES");
    let stream = ensure_stream(&js, &stream_config(&config, &subjects))
        .await
        .expect("the stream is made");
    let mut sink = NatsSink::from_client(client.clone());
    sink.confirm_stored_prices();
    let stats = sink.store_stats().expect("confirmation is on");

    let mut events = Publisher::connect(&nats.url()).await;
    let prices: Vec<_> = (0..20)
        .map(|i| events.price_event(&format!("T{i}"), f64::from(i)))
        .collect();

    nats.stop().await.expect("NATS stops");
    eventually(LIMIT, "the client to see NATS go", async || {
        (client.connection_state() != async_nats::connection::State::Connected).then_some(())
    })
    .await;
    let publishing = tokio::spawn({
        let prices = prices.clone();
        let subjects = subjects.clone();
        async move {
            for (i, event) in prices.iter().enumerate() {
                let subject = event.subject(&subjects).into();
                sink.publish(Outgoing::new(event, Some(i as u32), subject, None))
                    .await?;
            }
            tokio::time::timeout(LIMIT, sink.flush())
                .await
                .map_err(|_| odin_publisher::sink::SinkError::Closed("flush timed out".into()))?
        }
    });
    // Longer than a JetStream send's timeout (1 s): a publish stuck behind
    // the full buffer must wait, not fail. This test is about that timeout,
    // so it waits on the clock.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !publishing.is_finished(),
        "publishing went on with NATS away"
    );
    nats.restart().await.expect("NATS restarts");
    publishing
        .await
        .expect("the publishing task ends")
        .expect("every price is sent and the store confirms it");
    assert_eq!(stats.unconfirmed(), 0);
    for event in &prices {
        assert_stored(&stream, event).await;
    }
}
