//! Three routed binary servers: a message crosses nodes, a node is killed
//! and the rest carry on, and it rejoins after a restart.

use async_nats::Event;
use odin_harness::nats::NatsCluster;
use odin_harness::wait::LIMIT;

use super::{deliver_eventually, wait_event, watched_client, within};

#[tokio::test]
async fn three_nodes_route_messages_and_survive_a_killed_node() {
    let mut cluster = within("cluster start", NatsCluster::start(3))
        .await
        .expect("three nodes start and mesh");
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(cluster.url_list(), urls.join(","));
    for node in cluster.nodes() {
        let routez = within("routez", node.monitor_json("/routez"))
            .await
            .unwrap();
        // Routes to both other nodes. NATS 2.10 and later pool several
        // connections per peer (`num_routes` 6 or more), so count peers.
        let peers: std::collections::HashSet<&str> = routez["routes"]
            .as_array()
            .expect("a routes list")
            .iter()
            .filter_map(|r| r["remote_id"].as_str())
            .collect();
        assert_eq!(peers.len(), 2, "{}: {routez}", node.url());
    }

    let (on_0, _) = watched_client(vec![urls[0].clone()], false).await;
    let (on_2, _) = watched_client(vec![urls[2].clone()], false).await;
    deliver_eventually(&on_2, &on_0, "odin.cross").await;

    // A client that knows every node, connected to node 1 first.
    let (roaming, mut events) = watched_client(
        vec![urls[1].clone(), urls[0].clone(), urls[2].clone()],
        true,
    )
    .await;
    wait_event(
        &mut events,
        |e| matches!(e, Event::Connected),
        "roaming connect",
    )
    .await;

    within("stop node 1", cluster.node(1).stop()).await.unwrap();
    within("routes without node 1", cluster.wait_for_routes(LIMIT))
        .await
        .unwrap();
    wait_event(
        &mut events,
        |e| matches!(e, Event::Disconnected),
        "roaming disconnect",
    )
    .await;
    wait_event(
        &mut events,
        |e| matches!(e, Event::Connected),
        "roaming failover",
    )
    .await;
    deliver_eventually(&on_2, &on_0, "odin.after-kill").await;
    deliver_eventually(&on_2, &roaming, "odin.roaming").await;

    within("restart node 1", cluster.node(1).restart())
        .await
        .unwrap();
    within("routes with node 1 back", cluster.wait_for_routes(LIMIT))
        .await
        .unwrap();
    let (on_1, _) = watched_client(vec![cluster.node(1).url()], false).await;
    deliver_eventually(&on_1, &on_0, "odin.rejoined").await;
}
