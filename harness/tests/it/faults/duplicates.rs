//! A publisher that re-publishes half of its messages (`--dup-ratio 0.5`,
//! as a retrying or doubled publisher would): the server drops every repeat
//! once, at ingest, counts it in `duplicatesDropped`, and no client ever
//! receives one.

use std::collections::HashSet;
use std::time::Duration;

use odin_harness::nats::NatsServer;
use odin_harness::publisher::PublisherProcess;
use odin_harness::server::ServerProcess;
use odin_harness::wait::LIMIT;
use odin_publisher::PublisherConfig;

use super::support::{
    RawRecorder, Watched, all_subjects, client_config, token_channels, token_ids,
};
use crate::support::{Publisher, wait_subscribed_in_nats};

/// Tokens the publisher simulates.
const TOKENS: usize = 4;

/// Extra flags of the server under test: none, its de-duplication window is
/// what is tested.
const SERVER_FLAGS: &[&str] = &[];

#[tokio::test]
async fn a_duplicate_storm_never_reaches_a_client_and_every_repeat_is_counted() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let server = ServerProcess::start(&nats.url(), SERVER_FLAGS)
        .await
        .expect("server starts");
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;

    let tokens = token_ids(TOKENS);
    let mut channels = token_channels(&tokens);
    channels.extend(["batch".to_owned(), "market".to_owned()]);
    let mut raw = RawRecorder::subscribe(&server, &channels).await.unwrap();
    let endpoint = server.endpoint().clone();
    let mut client = Watched::spawn(
        "reference",
        client_config(&server, &channels),
        tokens,
        move || endpoint.token("duplicates"),
    );
    client
        .until("subscribed", LIMIT, |s| s.subscribed == 1)
        .await
        .unwrap();

    let config = PublisherConfig {
        tokens: TOKENS,
        rate: 200.0,
        tick: Duration::from_millis(100),
        duration: Some(Duration::from_secs(2)),
        dup_ratio: 0.5,
        seed: Some(42),
        ..odin_harness::publisher::test_config(&nats.url())
    };
    let totals = PublisherProcess::start(&config)
        .await
        .expect("the publisher starts")
        .wait(LIMIT)
        .await
        .expect("the publisher runs to its end");
    let (events, duplicates) = (totals.events.total(), totals.duplicates.total());
    assert!(totals.flushed, "{totals:?}");
    assert!(
        duplicates * 3 > events,
        "not a storm: {duplicates} duplicates of {events} events"
    );

    // Once the server has ingested every message, one more event is routed
    // after all of them: when it reaches a client, so has everything before.
    server
        .wait_for_stats(LIMIT, |s| s.messages_received == totals.messages)
        .await
        .unwrap();
    let mut fence_publisher = Publisher::connect(&nats.url()).await;
    let fence = fence_publisher.market_event(0);
    fence_publisher.event(&fence).await;
    let fence = fence.nonce().to_string();
    raw.until_nonce(&fence).await.unwrap();
    client
        .until("the fence event", LIMIT, |s| s.nonces.contains(&fence))
        .await
        .unwrap();

    let stats = server.stats().await.unwrap();
    assert_eq!(
        (stats.messages_received, stats.invalid_events),
        (totals.messages + 1, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.duplicates_dropped, duplicates,
        "/stats duplicatesDropped against the publisher's duplicates: {stats:?}"
    );

    let mut nonces = HashSet::new();
    let repeats: Vec<String> = raw
        .events
        .iter()
        .map(|m| m.nonce().to_string())
        .filter(|n| !nonces.insert(n.clone()))
        .collect();
    assert!(
        repeats.is_empty(),
        "{} duplicates reached a bare connection, e.g. {:?}",
        repeats.len(),
        &repeats[..repeats.len().min(5)]
    );
    // The counts below hold because nothing was conflated.
    assert_eq!(stats.conflated, 0, "{stats:?}");
    assert_eq!(
        raw.events.len() as u64,
        events + 1,
        "every distinct event reaches a bare connection once"
    );

    let counters = client.client.stats();
    assert_eq!(
        (counters.duplicates, client.seen.duplicates),
        (0, 0),
        "duplicates reached the reference client: {counters:?}"
    );
    assert!(client.seen.repeated.is_empty());
    assert_eq!(client.seen.nonces.len() as u64, events + 1);
    client.client.shutdown(LIMIT).await.unwrap();
}
