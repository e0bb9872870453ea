//! More than one server: two servers on one NATS each deliver every event,
//! two gateways share one WebSocket port (`SO_REUSEPORT`), and two servers
//! on a three-node NATS cluster carry on when the nodes they are connected
//! to are killed.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use odin_harness::nats::{NatsCluster, NatsServer};
use odin_harness::publisher::InProcessPublisher;
use odin_harness::server::{TestServer, test_config};
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::Event;
use odin_publisher::PublisherConfig;

use super::support::{Watched, all_subjects, client_config, token_channels, token_ids};
use crate::support::{Publisher, subscribed_on, wait_subscribed_in_nats};

/// Tokens published in these tests.
const TOKENS: usize = 3;

/// How long one probe of [`deliver_eventually`] is waited for before the
/// next is published: not a bound on the test (that is [`LIMIT`]), only how
/// often a probe is sent while interest crosses the cluster's routes.
const PROBE_ROUND: Duration = Duration::from_millis(100);

/// Channels of every client here: the tokens, `batch` and `market`.
fn channels(tokens: &[String]) -> Vec<String> {
    let mut channels = token_channels(tokens);
    channels.extend(["batch".to_owned(), "market".to_owned()]);
    channels
}

/// A reference client of `server` on `channels`, subscribed.
async fn client_of(name: &str, server: &TestServer, tokens: &[String]) -> Watched {
    let endpoint = server.endpoint().clone();
    let mut client = Watched::spawn(
        name,
        client_config(server, &channels(tokens)),
        tokens.to_vec(),
        move || endpoint.token("scale-out"),
    );
    client
        .until("subscribed", LIMIT, |s| s.subscribed == 1)
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn two_servers_on_one_nats_each_deliver_every_event() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let servers = [
        TestServer::start(&nats.url())
            .await
            .expect("server a starts"),
        TestServer::start(&nats.url())
            .await
            .expect("server b starts"),
    ];
    for server in &servers {
        wait_subscribed_in_nats(&nats, server, &all_subjects()).await;
    }
    let tokens = token_ids(TOKENS);
    let mut clients = [
        client_of("on a", &servers[0], &tokens).await,
        client_of("on b", &servers[1], &tokens).await,
    ];

    let totals = InProcessPublisher::start(PublisherConfig {
        tokens: TOKENS,
        rate: 100.0,
        tick: Duration::from_millis(100),
        duration: Some(Duration::from_secs(2)),
        ..odin_harness::publisher::test_config(&nats.url())
    })
    .unwrap()
    .wait(LIMIT)
    .await
    .expect("the publisher runs to its end");
    assert!(
        totals.flushed && totals.duplicates.total() == 0,
        "{totals:?}"
    );

    // One more event after each server has ingested everything: when it
    // reaches a client, so has every event before it.
    for server in &servers {
        server
            .wait_for_stats(LIMIT, |s| s.messages_received == totals.messages)
            .await
            .unwrap();
    }
    let mut publisher = Publisher::connect(&nats.url()).await;
    let fence = publisher.market_event(0);
    publisher.event(&fence).await;
    let fence = fence.nonce().to_string();

    let e = &totals.events;
    let expected = [
        ("batch_update", e.batch_update),
        ("market_stats", e.market_stats + 1),
        ("price_update", e.price_update),
        ("trade_executed", e.trade_executed),
        ("volume_update", e.volume_update),
    ];
    for c in &mut clients {
        c.until("the fence event", LIMIT, |s| s.nonces.contains(&fence))
            .await
            .unwrap();
        let got = expected.map(|(kind, _)| (kind, c.seen.by_type.get(kind).copied().unwrap_or(0)));
        assert_eq!(got, expected, "client {}: every event, by type", c.name);
        assert_eq!(c.seen.by_type.values().sum::<u64>(), e.total() + 1);
        assert!(c.seen.repeated.is_empty() && c.seen.duplicates == 0);
    }
    assert_eq!(
        clients[0].seen.nonces, clients[1].seen.nonces,
        "both clients got the same events"
    );
    for server in &servers {
        let stats = server.stats().await.unwrap();
        assert_eq!(stats.conflated, 0, "{stats:?}");
    }
}

#[tokio::test]
async fn gateways_sharing_a_port_each_take_connections_and_deliver() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let shared = |port: u16| odin_server::ServerConfig {
        ws_addr: ([127, 0, 0, 1], port).into(),
        reuse_port: true,
        ..test_config(&nats.url())
    };
    let first = TestServer::start_with(shared(0))
        .await
        .expect("gateway a starts");
    let port = first.endpoint().ws_addr.port();
    let second = TestServer::start_with(shared(port))
        .await
        .expect("gateway b starts on the same port");
    // Without the option the port is not shared: the bind fails, and says so.
    let refused = TestServer::start_with(odin_server::ServerConfig {
        reuse_port: false,
        ..shared(port)
    })
    .await
    .err()
    .expect("a gateway without --reuse-port cannot bind a shared port");
    assert!(
        format!("{refused:#}").contains("cannot listen on --ws-addr"),
        "{refused:#}"
    );
    let servers = [first, second];
    for server in &servers {
        wait_subscribed_in_nats(&nats, server, &all_subjects()).await;
    }

    // The kernel hashes each connection to one listener: with 32 clients
    // both get some (all on one: probability 2⁻³¹).
    const CLIENTS: usize = 32;
    let tokens = token_ids(TOKENS);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        clients.push(client_of(&format!("client {i}"), &servers[0], &tokens).await);
    }
    let mut counts = Vec::new();
    for server in &servers {
        counts.push(server.stats().await.unwrap().connection_count);
    }
    assert_eq!(counts.iter().sum::<u64>(), CLIENTS as u64, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "one gateway took every connection: {counts:?}"
    );

    // Every client gets every event, whichever gateway holds it.
    let mut publisher = Publisher::connect(&nats.url()).await;
    publish_and_expect(&mut publisher, &mut clients, &tokens, "to a shared port").await;
    for c in &clients {
        assert!(c.seen.repeated.is_empty() && c.seen.duplicates == 0);
    }
}

#[tokio::test]
async fn servers_on_a_nats_cluster_survive_the_loss_of_their_nodes() {
    let mut cluster = NatsCluster::start(3).await.expect("the cluster starts");
    let servers = [
        TestServer::start(&cluster.url_list())
            .await
            .expect("server a starts"),
        TestServer::start(&cluster.url_list())
            .await
            .expect("server b starts"),
    ];
    let mut used = BTreeSet::new();
    for server in &servers {
        used.insert(wait_node_of(&cluster, server.server_id(), &(0..3).collect()).await);
    }
    // The publisher sits on a node no server uses, which is never killed.
    let spare = (0..3).find(|i| !used.contains(i)).expect("a spare node");
    let mut publisher = Publisher::connect(&cluster.nodes()[spare].url()).await;
    let tokens = token_ids(TOKENS);
    let mut clients = [
        client_of("on a", &servers[0], &tokens).await,
        client_of("on b", &servers[1], &tokens).await,
    ];
    deliver_eventually(&mut publisher, &mut clients).await;
    publish_and_expect(&mut publisher, &mut clients, &tokens, "before the kill").await;

    for &i in &used {
        cluster.node(i).stop().await.unwrap();
    }
    let survivors: BTreeSet<usize> = (0..3).filter(|i| !used.contains(i)).collect();
    for server in &servers {
        wait_node_of(&cluster, server.server_id(), &survivors).await;
        server
            .wait_for_stats(LIMIT, |s| s.nats_connected)
            .await
            .unwrap();
    }
    deliver_eventually(&mut publisher, &mut clients).await;
    publish_and_expect(&mut publisher, &mut clients, &tokens, "after the kill").await;

    for c in &clients {
        let stats = c.client.stats();
        assert_eq!(
            (stats.connects, stats.disconnects),
            (1, 0),
            "client {}: its WebSocket outlived the NATS node: {stats:?}",
            c.name
        );
        assert!(c.seen.repeated.is_empty());
    }
    for server in &servers {
        assert_eq!(server.get("/health").await.unwrap().status, 200);
    }
}

/// Waits until one of the `nodes` lists `server_id`'s subscription in its
/// `/connz`, and returns that node.
async fn wait_node_of(cluster: &NatsCluster, server_id: &str, nodes: &BTreeSet<usize>) -> usize {
    let what = format!("server {server_id} subscribed on one of the nodes {nodes:?}");
    eventually(LIMIT, &what, async || {
        for &i in nodes {
            if subscribed_on(&cluster.nodes()[i], server_id, &all_subjects())
                .await
                .unwrap_or(false)
            {
                return Some(i);
            }
        }
        None
    })
    .await
}

/// Publishes probe prices until every client has received one: interest
/// crosses cluster routes asynchronously, so the first may find none yet.
/// Each round waits on the delivery itself (up to [`PROBE_ROUND`]), not on a
/// timer.
async fn deliver_eventually(publisher: &mut Publisher, clients: &mut [Watched]) {
    let mut probes: HashSet<String> = HashSet::new();
    for c in clients.iter_mut() {
        let what = format!("a probe reaching client {}", c.name);
        eventually(LIMIT, &what, async || {
            if c.seen.nonces.iter().any(|n| probes.contains(n)) {
                return Some(());
            }
            let probe = publisher.price_event(&c.tokens[0], 1.0);
            probes.insert(probe.nonce().to_string());
            publisher.event(&probe).await;
            c.until("a probe", PROBE_ROUND, |s| {
                s.nonces.iter().any(|n| probes.contains(n))
            })
            .await
            .ok()
        })
        .await;
    }
}

/// Publishes one event of each kind a client can subscribe to, per token,
/// and checks every client receives every one of them.
async fn publish_and_expect(
    publisher: &mut Publisher,
    clients: &mut [Watched],
    tokens: &[String],
    when: &str,
) {
    let mut events: Vec<Event> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        events.push(publisher.price_event(token, 100.0 + i as f64));
        events.push(publisher.trade_event(token, i as u64));
    }
    events.push(publisher.market_event(1));
    for event in &events {
        publisher.event(event).await;
    }
    let nonces: Vec<String> = events.iter().map(|e| e.nonce().to_string()).collect();
    for c in clients.iter_mut() {
        c.until(&format!("every event published {when}"), LIMIT, |s| {
            nonces.iter().all(|n| s.nonces.contains(n))
        })
        .await
        .unwrap();
    }
}
