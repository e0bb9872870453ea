//! A slow, lossy link between NATS nodes and a gateway: `tc netem` adds
//! 100 ms ± 20 ms and drops 1 % of the packets leaving the gateway's NATS
//! node, which carries every price to it (from the publisher's node over
//! the cluster's route, then to the gateway). TCP repairs loss and
//! reordering under NATS: every price still arrives, in order per token,
//! once each, only later. Kernels without netem (some VM kernels) skip that
//! test; the loss alone, 10 % each way through `iptables`, runs everywhere.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use odin_harness::host::{Netem, NetemSpec, PacketLoss, netem_available};
use odin_harness::server::TestServer;
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::ServerMessage;

use super::hosts::{container_cluster, hosts_or_skip, price_round};
use super::support::{RawRecorder, all_subjects, token_channels, token_ids};
use crate::support::{Publisher, wait_subscribed_in_nats};

/// Tokens published.
const TOKENS: usize = 4;
/// Rounds of one price per token published through the bad link.
/// Each round is flushed on its own, so the rounds travel in packets of
/// their own and the loss falls on some of them.
const ROUNDS: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_price_crosses_a_slow_lossy_link_in_order_once() {
    if !hosts_or_skip("netem") {
        return;
    }
    if let Err(reason) = netem_available() {
        odin_harness::report_skip(&format!("netem: {reason}"));
        return;
    }
    let spec = NetemSpec {
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(20),
        loss_percent: 1.0,
    };
    let took = crosses_a_bad_link(|node, network| {
        let netem = Netem::apply(node, network, spec).expect("netem applies");
        move || netem.stats().unwrap_or_default()
    })
    .await;
    // The link was slow indeed: the last price came at least one delay late.
    assert!(took >= Duration::from_millis(80), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_price_crosses_a_lossy_link_in_order_once() {
    if !hosts_or_skip("packet loss") {
        return;
    }
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = dropped.clone();
    crosses_a_bad_link(|node, network| {
        let loss = PacketLoss::apply(node, network, 10.0).expect("the loss rules apply");
        move || {
            counted.store(
                loss.dropped().unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            loss.stats().unwrap_or_default()
        }
    })
    .await;
    // The fault was real: packets of the prices' way were lost.
    assert!(
        dropped.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no packet was dropped"
    );
}

/// Two nodes; the gateway on node 1, the publisher on node 0. Once prices
/// flow, `spoil` spoils node 1's link on the cluster's network (and
/// returns what to say of it in a failure message; dropping it undoes the
/// fault); then every price published must reach the gateway's client
/// once, in order per token. Returns how long the last one took.
async fn crosses_a_bad_link<F, S>(spoil: F) -> Duration
where
    F: FnOnce(&str, &str) -> S,
    S: FnOnce() -> String,
{
    let cluster = container_cluster(2, false).await;
    let network = cluster.network().expect("a container cluster");
    let gateway_node = cluster.nodes()[1].container_id().unwrap().to_owned();
    let server = TestServer::start(&cluster.nodes()[1].url())
        .await
        .expect("the gateway starts");
    wait_subscribed_in_nats(&cluster.nodes()[1], &server, &all_subjects()).await;
    let tokens = token_ids(TOKENS);
    let mut recorder = RawRecorder::subscribe(&server, &token_channels(&tokens))
        .await
        .unwrap();
    let mut publisher = Publisher::connect(&cluster.nodes()[0].url()).await;

    // The gateway's interest crosses the route before the link goes bad: a
    // probe from the publisher's node reaches the client.
    let mut probes = Vec::new();
    eventually(LIMIT, "a probe across the route", async || {
        let probe = publisher.price_event(&tokens[0], 1.0);
        publisher.event(&probe).await;
        probes.push(probe.nonce().to_string());
        let before = recorder.events.len();
        let _ = tokio::time::timeout(Duration::from_millis(100), recorder.until_count(before + 1))
            .await;
        recorder
            .events
            .iter()
            .any(|e| probes.contains(&e.nonce().to_string()))
            .then_some(())
    })
    .await;
    // Whatever probes are still on their way land before what is counted.
    let fence = publisher.price_event(&tokens[0], 2.0);
    publisher.event(&fence).await;
    recorder.until_nonce(fence.nonce().as_ref()).await.unwrap();
    let settled = recorder.events.len();

    let describe = spoil(&gateway_node, &network);
    let started = tokio::time::Instant::now();
    let mut latest = BTreeMap::new();
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    for round in 1..=ROUNDS {
        let nonces = price_round(&mut publisher, &tokens, round, &mut latest).await;
        for (token, nonce) in tokens.iter().zip(nonces) {
            sent.entry(token.clone()).or_default().push(nonce);
        }
        publisher.client.flush().await.unwrap();
    }
    let total = TOKENS * ROUNDS as usize;
    let arrived = recorder.until_count(settled + total).await;
    let took = started.elapsed();
    let fault = describe();
    arrived.unwrap_or_else(|e| panic!("{e:#} (fault: {fault})"));

    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    for event in &recorder.events[settled..] {
        match event {
            ServerMessage::PriceUpdate(p) => got
                .entry(p.token_id.to_string())
                .or_default()
                .push(p.nonce.to_string()),
            other => panic!("not a price: {other:?}"),
        }
    }
    assert_eq!(
        got, sent,
        "every price once, in publishing order per token (fault: {fault})"
    );
    assert_eq!(server.stats().await.unwrap().conflated, 0);
    eprintln!("bad link crossed in {took:?}: {fault}");
    took
}
