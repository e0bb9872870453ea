//! A NATS node partitioned from its cluster: of three JetStream nodes
//! holding the last-prices stream (three replicas), node 2 loses its
//! routes to the other two (iptables in its network namespace reset and
//! drop the traffic, [`Partition`]; everyone else, its gateway included,
//! still reaches it).
//!
//! - The gateway on the majority (node 0) keeps delivering every price,
//!   published on node 1, once each.
//! - The gateway on the minority (node 2) stays connected to its node,
//!   which is up, but hears no price published on the other side. Its
//!   `/health` is honest about it: `503`, `lastPrices: unreachable` (the
//!   stream has no leader on its side), so a load balancer moves clients
//!   to a gateway that gets every price; its clients stay connected.
//! - Once the partition heals, the minority gateway's store answers again,
//!   it reads back the prices it missed from the stream's leader, and
//!   clients on both gateways hold the latest price of every token, each
//!   delivered once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use odin_harness::host::Partition;
use odin_harness::server::{Endpoint, ServerProcess};
use odin_harness::wait::{LIMIT, eventually};

use super::hosts::{
    assert_ends_on_latest, container_cluster, hosts_or_skip, price_round, wait_health,
};
use super::support::{Watched, all_subjects, client_config, token_channels, token_ids};
use crate::support::{Publisher, wait_subscribed_in_nats};

/// Tokens published.
const TOKENS: usize = 6;
/// How long one round of the first prices is waited for before the next:
/// interest crosses the routes asynchronously.
const ROUND: Duration = Duration::from_millis(200);

/// A gateway process with the three-replica store on `url`, pinging every
/// 300 ms. A process of its own: the test's runtime only runs its clients.
async fn gateway(url: &str) -> ServerProcess {
    ServerProcess::start(
        url,
        &[
            "--last-prices-stream",
            "ODIN_LAST_PRICES",
            "--last-prices-replicas",
            "3",
            "--last-prices-timeout",
            "30s",
            "--nats-ping-interval",
            "300ms",
        ],
    )
    .await
    .expect("a gateway starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_leaves_the_majority_whole_and_its_gateway_honest() {
    if !hosts_or_skip("partition") {
        return;
    }
    let cluster = container_cluster(3, true).await;
    let network = cluster.network().expect("a container cluster");
    let ids: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.container_id().unwrap().to_owned())
        .collect();
    let majority = gateway(&cluster.nodes()[0].url()).await;
    let minority = gateway(&cluster.nodes()[2].url()).await;
    wait_subscribed_in_nats(&cluster.nodes()[0], &majority, &all_subjects()).await;
    wait_subscribed_in_nats(&cluster.nodes()[2], &minority, &all_subjects()).await;
    let tokens = token_ids(TOKENS);
    let mut on_majority = client_of("on the majority", &majority, &tokens).await;
    let mut on_minority = client_of("on the minority", &minority, &tokens).await;
    let mut publisher = Publisher::connect(&cluster.nodes()[1].url()).await;

    // Rounds until both gateways' interest has crossed the routes.
    let mut latest = BTreeMap::new();
    let mut round = 0;
    eventually(LIMIT, "a round reaching both gateways", async || {
        round += 1;
        price_round(&mut publisher, &tokens, round, &mut latest).await;
        for client in [&mut on_majority, &mut on_minority] {
            client
                .until("the round", ROUND, |s| {
                    latest
                        .iter()
                        .all(|(t, n)| s.latest.get(t).map(|(got, _)| got) == Some(n))
                })
                .await?;
        }
        anyhow::Ok(())
    })
    .await;

    let peers = [ids[0].as_str(), ids[1].as_str()];
    let partition = Partition::isolate(&ids[2], &peers, &network).expect("the partition");
    let (noticed, body) = wait_health(&minority, 503, LIMIT).await;
    assert_eq!(
        (&body["nats"], &body["lastPrices"]),
        (&"connected".into(), &"unreachable".into()),
        "{body}"
    );
    // Live prices keep reaching the majority's gateway, even while its
    // side elects the stream's leader again (were it on node 2).
    let mut during = price_round(&mut publisher, &tokens, round + 1, &mut latest).await;
    let (_, body) = wait_health(&majority, 200, LIMIT).await;
    assert_eq!(body["lastPrices"], "reachable", "{body}");
    // The store has a leader again: this round is stored.
    during.extend(price_round(&mut publisher, &tokens, round + 2, &mut latest).await);
    on_majority
        .until("every price published during the partition", LIMIT, |s| {
            during.iter().all(|n| s.nonces.contains(n))
        })
        .await
        .unwrap();
    let heard: BTreeSet<&String> = during
        .iter()
        .filter(|n| on_minority.seen.nonces.contains(*n))
        .collect();
    assert!(
        heard.is_empty(),
        "the minority heard {heard:?} across the partition"
    );
    assert_eq!(health_status(&minority).await, 503);

    partition.heal().expect("the partition heals");
    cluster.wait_for_routes(LIMIT).await.unwrap();
    let (recovered, body) = wait_health(&minority, 200, LIMIT).await;
    assert_eq!(body["lastPrices"], "reachable", "{body}");
    price_round(
        &mut publisher,
        &tokens[..TOKENS / 2],
        round + 3,
        &mut latest,
    )
    .await;
    assert_ends_on_latest(&mut on_majority, &latest, LIMIT).await;
    assert_ends_on_latest(&mut on_minority, &latest, LIMIT).await;
    eprintln!("minority /health: 503 after {noticed:?}, 200 again {recovered:?} after the heal");
}

/// `/health`'s status code now.
async fn health_status(server: &Endpoint) -> u16 {
    server.get("/health").await.unwrap().status
}

/// A reference client of `server` on every token's channel, subscribed.
async fn client_of(name: &str, server: &Endpoint, tokens: &[String]) -> Watched {
    let endpoint = server.clone();
    let mut client = Watched::spawn(
        name,
        client_config(&endpoint, &token_channels(tokens)),
        tokens.to_vec(),
        move || endpoint.token("partition"),
    );
    client
        .until("subscribed", LIMIT, |s| s.subscribed == 1)
        .await
        .unwrap();
    client
}
