//! A gateway with a second NATS connection (`--nats-second-url`) to another
//! node of the cluster loses nothing when the node of its first connection
//! is lost: the events published while the first reconnects come through
//! the second, and each event reaches a client once, whichever connection
//! brought it first. Meanwhile `/health` stays 200: events still flow.

use std::collections::BTreeSet;

use odin_harness::nats::{NatsCluster, NatsOptions};
use odin_harness::server::{TestServer, test_config};
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::Event;

use super::support::{RawRecorder, all_subjects, token_channels, token_ids};
use crate::support::{Publisher, subscribed_on, wait_subscribed_in_nats};

/// Tokens published in this test.
const TOKENS: usize = 8;

/// Publishes a trade and a price of every token; returns their nonces in
/// publish order.
async fn publish_round(publisher: &mut Publisher, tokens: &[String], round: u32) -> Vec<String> {
    let mut nonces = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let trade = publisher.trade_event(token, u64::from(round) * 100 + i as u64);
        let price = publisher.price_event(token, 100.0 * f64::from(round) + i as f64);
        for event in [trade, price] {
            publisher.event(&event).await;
            nonces.push(nonce_of(&event));
        }
    }
    nonces
}

fn nonce_of(event: &Event) -> String {
    event.nonce().as_str().to_owned()
}

#[tokio::test]
async fn a_gateway_with_a_second_nats_connection_loses_nothing_when_its_node_is_lost() {
    // Nodes that do not advertise the cluster: the first connection, given
    // node 0 only, waits for node 0 instead of failing over, so everything
    // published while it is away can only come through the second.
    let mut cluster = NatsCluster::start_with(
        3,
        NatsOptions {
            extra_args: vec!["--no_advertise".into()],
            ..NatsOptions::default()
        },
    )
    .await
    .expect("three nodes start");
    let urls = cluster.urls();
    let gateway = TestServer::start_with(odin_server::ServerConfig {
        nats_second_url: Some(urls[1].clone()),
        ..test_config(&urls[0])
    })
    .await
    .expect("the gateway starts");
    let subject = all_subjects();
    wait_subscribed_in_nats(&cluster.nodes()[0], &gateway, &subject).await;
    let id = gateway.stats().await.unwrap().server_id;
    let second = format!("{id} (second)");
    eventually(
        LIMIT,
        "the second connection's subscription on node 1",
        async || {
            subscribed_on(&cluster.nodes()[1], &second, &subject)
                .await
                .unwrap()
                .then_some(())
        },
    )
    .await;
    let tokens = token_ids(TOKENS);
    let mut watcher = RawRecorder::subscribe(&gateway, &token_channels(&tokens))
        .await
        .unwrap();
    let received = |watcher: &RawRecorder, from: usize| -> Vec<String> {
        watcher.events[from..]
            .iter()
            .map(|m| m.nonce().as_str().to_owned())
            .collect()
    };

    // Both connections bring every event: each reaches the client once.
    let mut on_node_0 = Publisher::connect(&urls[0]).await;
    let round_1 = publish_round(&mut on_node_0, &tokens, 1).await;
    watcher.until_count(round_1.len()).await.unwrap();

    // Node 0 is lost: the first connection waits for it, the second brings
    // everything published meanwhile, in order.
    cluster.node(0).stop().await.unwrap();
    let mut on_node_1 = Publisher::connect(&urls[1]).await;
    let round_2 = publish_round(&mut on_node_1, &tokens, 2).await;
    let before = watcher.events.len();
    watcher
        .until_count(before + round_2.len())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}: {} of the {} events published while node 0 was down reached the client",
                watcher.events.len() - before,
                round_2.len()
            )
        });
    assert_eq!(received(&watcher, before), round_2);

    // Events flow, so the gateway is healthy: `/health` names the first
    // connection down and the second up, and answers 200 "ok".
    let health = eventually(
        LIMIT,
        "/health to see the first connection down",
        async || {
            let response = gateway.endpoint().get("/health").await.unwrap();
            let body: serde_json::Value = response.json().unwrap();
            if body["natsFirst"] == "disconnected" {
                Ok((response.status, body))
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert_eq!(health.0, 200, "{}", health.1);
    assert_eq!(health.1["status"], "ok", "{}", health.1);
    assert_eq!(health.1["nats"], "connected", "{}", health.1);
    assert_eq!(health.1["natsSecond"], "connected", "{}", health.1);
    assert!(gateway.stats().await.unwrap().nats_connected);

    // Node 0 is back and so is the first connection: still each event once.
    cluster.node(0).restart().await.unwrap();
    wait_subscribed_in_nats(&cluster.nodes()[0], &gateway, &subject).await;
    let round_3 = publish_round(&mut on_node_0, &tokens, 3).await;
    // A last event after round 3, by the same publisher (order holds per
    // publisher): a second copy of round 3 let through would arrive around
    // its first, before the client has counted this one.
    let last = publish_round(&mut on_node_0, &tokens[..1], 4).await;
    let before = watcher.events.len();
    watcher
        .until_count(before + round_3.len() + last.len())
        .await
        .unwrap();
    let all = received(&watcher, 0);
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "an event reached the client twice"
    );
    assert_eq!(
        received(&watcher, before),
        [round_3, last].concat(),
        "round 3 and the last event, in publish order"
    );
    gateway.shutdown().await.unwrap();
}
