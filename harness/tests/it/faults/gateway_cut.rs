//! A gateway cut off its NATS node while the node stays up: the gateway
//! runs as a container of its own ([`GatewayContainer`]), cut off the
//! cluster's network (a real network cut: no reset, the connection only
//! goes quiet) while its clients stay connected through its front network.
//! `/health` turns `503` within three NATS pings; once the cut heals it is
//! `200` again, and every client holds the latest price of every token,
//! those published during the cut (read back from the last-prices store)
//! and after it, each delivered once.

use std::collections::BTreeMap;
use std::time::Duration;

use odin_harness::host::{GatewayContainer, NetworkCut};
use odin_harness::wait::LIMIT;

use super::hosts::{
    assert_ends_on_latest, container_cluster, hosts_or_skip, price_round, wait_health,
};
use super::support::{Watched, client_config, token_channels, token_ids};
use crate::support::Publisher;

/// Tokens published.
const TOKENS: usize = 6;
/// The gateway's NATS ping interval here.
const PING: &str = "300ms";
/// How soon `/health` must say `503` after the cut: three unanswered pings
/// (0.9 s) and slack for a loaded 2-core box.
const HEALTH_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_its_nats_node_is_degraded_then_catches_up() {
    if !hosts_or_skip("gateway cut off") {
        return;
    }
    // Two nodes: JetStream in a cluster wants a route; the gateway and the
    // publisher share node 0, which stays up throughout.
    let cluster = container_cluster(2, true).await;
    let network = cluster.network().expect("a container cluster");
    let node = cluster.node_host(0).unwrap();
    let name = format!("{node}-gateway");
    let gateway = GatewayContainer::start(
        &name,
        &network,
        &format!("nats://{node}:4222"),
        &[
            "--last-prices-stream",
            "ODIN_LAST_PRICES",
            "--nats-ping-interval",
            PING,
        ],
    )
    .await
    .expect("the gateway container starts");

    let tokens = token_ids(TOKENS);
    let mut clients = Vec::new();
    for i in 0..2 {
        let endpoint = gateway.endpoint().clone();
        let mut client = Watched::spawn(
            format!("client {i}"),
            client_config(&endpoint, &token_channels(&tokens)),
            tokens.clone(),
            move || endpoint.token("gateway-cut"),
        );
        client
            .until("subscribed", LIMIT, |s| s.subscribed == 1)
            .await
            .unwrap();
        clients.push(client);
    }
    let mut publisher = Publisher::connect(&cluster.nodes()[0].url()).await;
    let mut latest = BTreeMap::new();
    price_round(&mut publisher, &tokens, 1, &mut latest).await;
    for client in &mut clients {
        assert_ends_on_latest(client, &latest, LIMIT).await;
    }

    let cut = NetworkCut::cut(gateway.name(), &network).expect("the cut");
    let (noticed, body) = wait_health(&gateway, 503, LIMIT).await;
    assert!(
        noticed <= HEALTH_BOUND,
        "/health said 503 only after {noticed:?}: {body}"
    );
    assert_eq!(body["nats"], "disconnected", "{body}");
    // Prices the gateway cannot hear now; the node stores them.
    price_round(&mut publisher, &tokens, 2, &mut latest).await;
    price_round(&mut publisher, &tokens, 3, &mut latest).await;
    publisher.client.flush().await.unwrap();

    cut.heal().expect("the gateway joins the network again");
    let (_, body) = wait_health(&gateway, 200, LIMIT).await;
    assert_eq!(body["nats"], "connected", "{body}");
    price_round(&mut publisher, &tokens[..TOKENS / 2], 4, &mut latest).await;
    for client in &mut clients {
        assert_ends_on_latest(client, &latest, LIMIT).await;
    }
    eprintln!("the cut was noticed by /health after {noticed:?}");
}
