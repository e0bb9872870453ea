//! The last price of every token kept in NATS JetStream
//! (`--last-prices-stream`): a gateway started after the prices were
//! published (and a live price after that replaces the stored one), a
//! gateway killed and restarted while prices go on, and a
//! gateway started on a three-node cluster that has lost a node each serve
//! the latest price of every token in their first client's snapshot, before
//! any new event is published. A gateway whose NATS node goes away while
//! prices go on catches up once it is back: its clients get each token's
//! missed latest price, and so does the next snapshot. A gateway whose NATS is down at start serves
//! after its bounded wait, and live prices flow once NATS is back.
//!
//! The snapshot is read up to a `pong`: the server queues `subscribed`, the
//! snapshot and then the answer to a `ping` sent right after the
//! `subscribe`, so what lies between is exactly the snapshot, with no
//! waiting on a timer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream;
use odin_harness::client::connect_raw;
use odin_harness::nats::{NatsCluster, NatsOptions};
use odin_harness::server::{Endpoint, ServerProcess, TestServer, test_config};
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::message::{ChannelRequest, PingRequest};
use odin_protocol::{ClientMessage, ServerMessage, Subjects};
use odin_server::last_prices::{LastPricesConfig, ensure_stream, stream_config};

use super::support::{RawRecorder, all_subjects, jetstream_nats, token_channels, token_ids};
use crate::support::{Publisher, wait_subscribed_in_nats};

/// The stream every test here keeps its prices in.
const STREAM: &str = "ODIN_LAST_PRICES";

/// Tokens published in these tests.
const TOKENS: usize = 12;

/// How long past its bounded wait for the store a gateway may take to
/// listen: starting the process and its failed NATS attempts, on a loaded
/// 2-core box.
const START_SLACK: Duration = Duration::from_secs(4);

/// A client of `addrs` for JetStream requests.
async fn jetstream_of(addrs: impl async_nats::ToServerAddrs) -> jetstream::Context {
    let client = tokio::time::timeout(LIMIT, async_nats::connect(addrs))
        .await
        .expect("NATS connect in time")
        .expect("NATS connects");
    jetstream::new(client)
}

/// Publishes one price of every token on core NATS (no JetStream call), the
/// way the publisher does, and returns each token's exact JSON. `round`
/// makes each round's prices different.
async fn publish_round(
    publisher: &mut Publisher,
    tokens: &[String],
    round: u32,
    last: &mut BTreeMap<String, String>,
) {
    for (i, token) in tokens.iter().enumerate() {
        let price = 100.0 * f64::from(round) + i as f64 + 0.25;
        let text = publisher.price(token, price).await;
        last.insert(token.clone(), text);
    }
}

/// Waits until the stream has stored `count` messages since it was created
/// (its last sequence): every price published so far is in the store.
async fn wait_stored(js: &jetstream::Context, count: u64) {
    let what = format!("the stream to store {count} messages");
    eventually(LIMIT, &what, async || {
        let mut stream = js.get_stream(STREAM).await?;
        let stored = stream.info().await?.state.last_sequence;
        if stored >= count {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{stored} stored"))
        }
    })
    .await;
}

/// Waits until the stream answers with a leader: after a node is lost, a
/// price published before the others elected one would not be stored.
async fn wait_stream_leader(js: &jetstream::Context) {
    eventually(LIMIT, "the stream to have a leader", async || {
        let mut stream = js.get_stream(STREAM).await?;
        let info = stream.info().await?;
        match info.cluster.as_ref().and_then(|c| c.leader.as_ref()) {
            Some(_) => Ok(()),
            None => Err(anyhow::anyhow!("no leader: {:?}", info.cluster)),
        }
    })
    .await;
}

/// The first client's snapshot of every token in `tokens`: token → the
/// exact frame. Fails if anything but a `price_update` comes between
/// `subscribed` and the `pong`.
async fn first_snapshot(
    endpoint: &Endpoint,
    tokens: &[String],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut raw = connect_raw(&endpoint.ws_url(), &endpoint.token("last-prices")).await?;
    match raw.next_message(LIMIT).await? {
        ServerMessage::ConnectionEstablished(_) => {}
        other => bail!("expected connection_established, got {other:?}"),
    }
    raw.send_json(&ClientMessage::Subscribe(ChannelRequest {
        channels: token_channels(tokens),
        id: None,
    }))
    .await?;
    raw.send_json(&ClientMessage::Ping(PingRequest { id: None }))
        .await?;
    let mut snapshot = BTreeMap::new();
    let mut subscribed = false;
    loop {
        let text = raw.next_text(LIMIT).await.context("reading the snapshot")?;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        match value["type"].as_str() {
            Some("subscribed") if !subscribed => subscribed = true,
            Some("price_update") if subscribed => {
                let token = value["tokenId"].as_str().context("no tokenId")?.to_owned();
                if snapshot.insert(token.clone(), text).is_some() {
                    bail!("two snapshots of {token}");
                }
            }
            Some("pong") if subscribed => return Ok(snapshot),
            Some("heartbeat") => {}
            _ => bail!("unexpected frame {text} (subscribed: {subscribed})"),
        }
    }
}

/// Names of the tokens whose snapshot is missing or not the latest price.
fn wrong_tokens(
    snapshot: &BTreeMap<String, String>,
    latest: &BTreeMap<String, String>,
) -> Vec<String> {
    latest
        .iter()
        .filter(|(token, text)| snapshot.get(*token) != Some(*text))
        .map(|(token, _)| token.clone())
        .collect()
}

#[tokio::test]
async fn a_gateway_started_after_the_prices_were_published_serves_every_latest_price() {
    let nats = jetstream_nats().await;
    let js = jetstream_of(nats.url()).await;
    let config = LastPricesConfig::new(STREAM);
    // The stream as an earlier gateway (or an operator) made it.
    ensure_stream(&js, &stream_config(&config, &Subjects::default()))
        .await
        .expect("the stream is created");

    let tokens = token_ids(TOKENS);
    let mut publisher = Publisher::connect(&nats.url()).await;
    let mut latest = BTreeMap::new();
    for round in 1..=3 {
        publish_round(&mut publisher, &tokens, round, &mut latest).await;
    }
    // A stored price that is no valid event: skipped and counted, no crash.
    publisher
        .raw(
            "odin.token.BROKEN.price".into(),
            Some("broken-1"),
            "{not an event",
        )
        .await;
    publisher.client.flush().await.unwrap();
    wait_stored(&js, 3 * TOKENS as u64 + 1).await;

    let server = TestServer::start_with(odin_server::ServerConfig {
        last_prices: Some(config),
        ..test_config(&nats.url())
    })
    .await
    .expect("the gateway starts");
    let snapshot = first_snapshot(&server, &tokens).await.unwrap();
    assert!(
        wrong_tokens(&snapshot, &latest).is_empty(),
        "no or stale snapshot of {:?}: got {snapshot:#?}",
        wrong_tokens(&snapshot, &latest)
    );
    assert_eq!(snapshot.len(), TOKENS, "{snapshot:#?}");
    let stats = server.stats().await.unwrap();
    assert_eq!(
        stats.invalid_events, 1,
        "the broken stored price: {stats:?}"
    );

    // A live price after the load replaces the stored one in the snapshot.
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;
    let mut watcher = RawRecorder::subscribe(&server, &token_channels(&tokens[..1]))
        .await
        .unwrap();
    let live = publisher.price(&tokens[0], 9999.5).await;
    let nonce: serde_json::Value = serde_json::from_str(&live).unwrap();
    watcher
        .until_nonce(nonce["nonce"].as_str().unwrap())
        .await
        .unwrap();
    latest.insert(tokens[0].clone(), live);
    let snapshot = first_snapshot(&server, &tokens).await.unwrap();
    assert!(
        wrong_tokens(&snapshot, &latest).is_empty(),
        "after a live price: no or stale snapshot of {:?}",
        wrong_tokens(&snapshot, &latest)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_killed_gateway_restarts_with_every_latest_price() {
    let nats = jetstream_nats().await;
    // The gateway creates the stream (it listens only once it has).
    let mut server = ServerProcess::start(&nats.url(), &["--last-prices-stream", STREAM])
        .await
        .expect("the gateway starts");
    let js = jetstream_of(nats.url()).await;
    let info = js
        .get_stream(STREAM)
        .await
        .expect("the gateway created the stream")
        .cached_info()
        .clone();
    assert_eq!(info.config.subjects, ["odin.token.*.price"]);
    assert_eq!(info.config.max_messages_per_subject, 1);

    let tokens = token_ids(TOKENS);
    let mut publisher = Publisher::connect(&nats.url()).await;
    let mut latest = BTreeMap::new();
    publish_round(&mut publisher, &tokens, 1, &mut latest).await;
    server.kill().await.unwrap();
    // While the gateway is down: only the stream hears these.
    publish_round(&mut publisher, &tokens, 2, &mut latest).await;
    publish_round(&mut publisher, &tokens, 3, &mut latest).await;
    wait_stored(&js, 3 * TOKENS as u64).await;

    server.restart().await.expect("the gateway restarts");
    let snapshot = first_snapshot(&server, &tokens).await.unwrap();
    assert!(
        wrong_tokens(&snapshot, &latest).is_empty(),
        "no or stale snapshot of {:?} after the restart: got {snapshot:#?}\nlog:\n{}",
        wrong_tokens(&snapshot, &latest),
        server.logs().join("\n")
    );
    assert_eq!(snapshot.len(), TOKENS);
}

#[tokio::test]
async fn a_gateway_on_a_cluster_missing_the_stream_leader_loads_every_latest_price() {
    let mut cluster = NatsCluster::start_with(
        3,
        NatsOptions {
            jetstream: true,
            ..NatsOptions::default()
        },
    )
    .await
    .expect("three JetStream nodes start");
    let config = LastPricesConfig {
        replicas: 3,
        // A fresh cluster elects its JetStream leaders within seconds; the
        // gateway retries until this bound.
        load_timeout: Duration::from_secs(30),
        ..LastPricesConfig::new(STREAM)
    };
    let gateway = |url: String| {
        let config = config.clone();
        async move {
            TestServer::start_with(odin_server::ServerConfig {
                last_prices: Some(config),
                ..test_config(&url)
            })
            .await
            .expect("a gateway starts")
        }
    };
    // The first gateway creates the stream with three replicas.
    let first = gateway(cluster.url_list()).await;
    let js = jetstream_of(cluster.urls()).await;
    let mut stream = js.get_stream(STREAM).await.expect("the stream exists");
    assert_eq!(stream.cached_info().config.num_replicas, 3);

    let tokens = token_ids(TOKENS);
    let mut publisher = Publisher::connect(&cluster.urls()[0]).await;
    let mut latest = BTreeMap::new();
    for round in 1..=3 {
        publish_round(&mut publisher, &tokens, round, &mut latest).await;
    }
    wait_stored(&js, 3 * TOKENS as u64).await;
    first.shutdown().await.unwrap();

    // Kill the node that leads the stream: the others must elect a leader
    // and still have every price.
    let leader = stream
        .info()
        .await
        .expect("stream info")
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    let mut killed = None;
    for i in 0..cluster.len() {
        let varz = cluster.node(i).monitor_json("/varz").await.unwrap();
        if varz["server_name"].as_str() == Some(leader.as_str()) {
            killed = Some(i);
        }
    }
    let killed = killed.expect("the leader is one of the nodes");
    cluster.node(killed).stop().await.unwrap();

    let second = gateway(cluster.url_list()).await;
    let snapshot = first_snapshot(&second, &tokens).await.unwrap();
    assert!(
        wrong_tokens(&snapshot, &latest).is_empty(),
        "no or stale snapshot of {:?} with node {killed} down: got {snapshot:#?}\n{}",
        wrong_tokens(&snapshot, &latest),
        (0..cluster.len())
            .map(|i| format!("node {i}:\n{}", cluster.nodes()[i].log_tail(20)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(snapshot.len(), TOKENS);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_gateway_back_from_a_nats_outage_catches_up_on_the_prices_it_missed() {
    catch_up_after_an_outage(true).await;
}

#[tokio::test]
async fn a_gateway_catches_up_with_a_consumer_on_a_stream_without_direct_gets() {
    catch_up_after_an_outage(false).await;
}

/// A gateway on node 0 of three loses its node while prices go on, and must
/// deliver and snapshot each token's missed latest price once it is back;
/// `direct` false has an operator's stream that refuses direct gets, read
/// with a consumer instead.
async fn catch_up_after_an_outage(direct: bool) {
    // Nodes that do not advertise the cluster: the gateway, given node 0
    // only, waits for node 0 instead of failing over, so the prices of
    // round 2 are published while it is away for certain.
    let mut cluster = NatsCluster::start_with(
        3,
        NatsOptions {
            jetstream: true,
            extra_args: vec!["--no_advertise".into()],
            ..NatsOptions::default()
        },
    )
    .await
    .expect("three JetStream nodes start");
    let urls = cluster.urls();
    let js = jetstream_of(urls[1..].to_vec()).await;
    let config = LastPricesConfig {
        replicas: 3,
        load_timeout: Duration::from_secs(30),
        ..LastPricesConfig::new(STREAM)
    };
    if !direct {
        let want = jetstream::stream::Config {
            allow_direct: false,
            ..stream_config(&config, &Subjects::default())
        };
        // A fresh cluster answers JetStream requests once it has elected
        // its leaders.
        eventually(LIMIT, "the operator's stream to be created", async || {
            ensure_stream(&js, &want).await
        })
        .await;
    }
    let gateway = TestServer::start_with(odin_server::ServerConfig {
        last_prices: Some(config),
        ..test_config(&urls[0])
    })
    .await
    .expect("the gateway starts");
    let stored = js
        .get_stream(STREAM)
        .await
        .expect("the stream exists")
        .cached_info()
        .config
        .allow_direct;
    assert_eq!(stored, direct, "the stream's allow_direct");
    let tokens = token_ids(TOKENS);
    let mut watcher = RawRecorder::subscribe(&gateway, &token_channels(&tokens))
        .await
        .unwrap();
    let nonces = |latest: &BTreeMap<String, String>| -> BTreeSet<String> {
        latest
            .values()
            .map(|text| {
                let value: serde_json::Value = serde_json::from_str(text).unwrap();
                value["nonce"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let received = |watcher: &RawRecorder, from: usize| -> BTreeSet<String> {
        watcher.events[from..]
            .iter()
            .map(|m| m.nonce().as_str().to_owned())
            .collect()
    };
    let mut latest = BTreeMap::new();
    // Live prices are published on the gateway's node (no wait for interest
    // to spread over routes); those of the outage on node 1.
    wait_subscribed_in_nats(&cluster.nodes()[0], &gateway, &all_subjects()).await;
    let mut publisher = Publisher::connect(&urls[0]).await;
    publish_round(&mut publisher, &tokens, 1, &mut latest).await;
    watcher.until_count(TOKENS).await.unwrap();
    wait_stored(&js, TOKENS as u64).await;

    cluster.node(0).stop().await.unwrap();
    wait_stream_leader(&js).await;
    let mut away = Publisher::connect(&urls[1]).await;
    publish_round(&mut away, &tokens, 2, &mut latest).await;
    // A token first priced while the gateway is away: it knows nothing of it.
    let fresh = vec![odin_publisher::universe::token_id(TOKENS).to_string()];
    let mut fresh_latest = BTreeMap::new();
    publish_round(&mut away, &fresh, 2, &mut fresh_latest).await;
    wait_stored(&js, 2 * TOKENS as u64 + 1).await;
    cluster.node(0).restart().await.unwrap();

    // The missed prices arrive, each once, and nothing else.
    watcher.until_count(2 * TOKENS).await.unwrap();
    assert_eq!(
        received(&watcher, TOKENS),
        nonces(&latest),
        "the prices after the outage are not round 2's latest"
    );
    let snapshot = first_snapshot(&gateway, &tokens).await.unwrap();
    assert!(
        wrong_tokens(&snapshot, &latest).is_empty(),
        "no or stale snapshot of {:?} after the outage",
        wrong_tokens(&snapshot, &latest)
    );
    // Live prices flow on, none dropped as superseded.
    let mut publisher = Publisher::connect(&urls[0]).await;
    publish_round(&mut publisher, &tokens, 3, &mut latest).await;
    watcher.until_count(3 * TOKENS).await.unwrap();
    assert_eq!(received(&watcher, 2 * TOKENS), nonces(&latest));
    // The token first priced while it was away is restored as well, and
    // a first client gets its price as the snapshot.
    assert_eq!(
        wait_restored(&gateway, TOKENS as u64 + 1).await,
        TOKENS as u64 + 1
    );
    let snapshot = first_snapshot(&gateway, &fresh).await.unwrap();
    assert!(
        wrong_tokens(&snapshot, &fresh_latest).is_empty(),
        "no or stale snapshot of {fresh:?}, first priced during the outage: {snapshot:#?}"
    );
    gateway.shutdown().await.unwrap();
}

/// Waits until the gateway's `odin_prices_restored_total` reaches `count`,
/// and returns it.
async fn wait_restored(gateway: &TestServer, count: u64) -> u64 {
    let what = format!("{count} prices restored");
    eventually(LIMIT, &what, async || {
        let metrics = gateway.get("/metrics").await.unwrap().body;
        let restored = metrics
            .lines()
            .find_map(|l| l.strip_prefix("odin_prices_restored_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if restored >= count {
            Ok(restored)
        } else {
            Err(format!("{restored} restored"))
        }
    })
    .await
}

#[tokio::test]
async fn a_gateway_whose_nats_is_down_serves_after_its_bounded_wait() {
    let mut nats = jetstream_nats().await;
    nats.stop().await.unwrap();
    let started = tokio::time::Instant::now();
    let server = ServerProcess::start(
        &nats.url(),
        &[
            "--last-prices-stream",
            STREAM,
            "--last-prices-timeout",
            "1s",
        ],
    )
    .await
    .expect("the gateway starts without NATS");
    // Listening once its 1 s wait is over, and soon after: `start` alone
    // would accept anything up to its own limit.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(1) + START_SLACK,
        "listening after {waited:?}"
    );
    assert!(
        server
            .logs()
            .iter()
            .any(|l| l.contains("cannot load the last prices from JetStream")),
        "no error about the last prices in the log:\n{}",
        server.logs().join("\n")
    );

    // NATS comes back: live prices flow as without the store.
    nats.restart().await.unwrap();
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;
    let tokens = token_ids(1);
    let mut raw = connect_raw(&server.ws_url(), &server.token("late"))
        .await
        .unwrap();
    raw.next_message(LIMIT).await.unwrap();
    raw.send_json(&ClientMessage::Subscribe(ChannelRequest {
        channels: token_channels(&tokens),
        id: None,
    }))
    .await
    .unwrap();
    match raw.next_message(LIMIT).await.unwrap() {
        ServerMessage::Subscribed(_) => {}
        other => panic!("expected subscribed, got {other:?}"),
    }
    let mut publisher = Publisher::connect(&nats.url()).await;
    let sent = publisher.price(&tokens[0], 42.0).await;
    assert_eq!(raw.next_text(LIMIT).await.unwrap(), sent);
}
