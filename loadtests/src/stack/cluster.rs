//! The NATS cluster of an embedded run with several nodes, and what a run
//! does with it beyond starting it: find which node leads the last-prices
//! stream, hand that leadership on, pick the node a fault run stops, and
//! read the store at the end to count stale prices.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use odin_harness::nats::NatsCluster;
use odin_publisher::Totals;

/// The last-prices stream of a cluster run.
pub(crate) const LAST_PRICES_STREAM: &str = "ODIN_LAST_PRICES";

/// The name of the server that leads the last-prices stream, within 5 s.
async fn stream_leader(js: &async_nats::jetstream::Context) -> anyhow::Result<Option<String>> {
    let ask = async {
        let mut stream = js.get_stream(LAST_PRICES_STREAM).await?;
        let info = stream.info().await?;
        anyhow::Ok(info.cluster.as_ref().and_then(|c| c.leader.clone()))
    };
    tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s")))
}

/// Asks the last-prices stream's leader (`before`) to hand its leadership
/// on, and waits (at most 10 s) until another node leads.
async fn step_down(js: &async_nats::jetstream::Context, before: &str) -> anyhow::Result<()> {
    js.client()
        .request(
            format!("$JS.API.STREAM.LEADER.STEPDOWN.{LAST_PRICES_STREAM}"),
            "".into(),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let now = stream_leader(js).await.ok().flatten();
        if now.is_some_and(|now| now != before) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no other node leads 10 s after the step-down")
}

/// A client of whichever node of `cluster` answers.
async fn cluster_client(cluster: &NatsCluster) -> anyhow::Result<async_nats::Client> {
    let servers = cluster
        .urls()
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(async_nats::connect(servers).await?)
}

/// The node a run that loses one stops: the one that leads the
/// last-prices stream when `leader_wanted`, else the first that does
/// not; never the publisher's (the last), whose leadership is handed on
/// first when it leads. Losing the leader loses what is published while
/// the others elect one (JetStream stores nothing without a leader, and
/// core NATS keeps nothing for a gateway that is reconnecting) unless
/// the publisher confirms its stored prices and the gateways have a
/// second connection; see `LOAD_TESTING.md`. Node 0 when the leader
/// cannot be told.
pub(crate) async fn node_to_stop(cluster: &mut NatsCluster, leader_wanted: bool) -> usize {
    let js = match cluster_client(cluster).await {
        Ok(client) => async_nats::jetstream::new(client),
        Err(e) => {
            eprintln!("odin-load: cannot tell the last-prices stream's leader: {e:#}");
            return 0;
        }
    };
    let publisher_node = cluster.len() - 1;
    for _attempt in 0..5 {
        let leader = match stream_leader(&js).await {
            Ok(Some(leader)) => leader,
            Ok(None) => {
                eprintln!("odin-load: the last-prices stream has no leader now");
                return 0;
            }
            Err(e) => {
                eprintln!("odin-load: cannot tell the last-prices stream's leader: {e:#}");
                return 0;
            }
        };
        eprintln!("odin-load: the last-prices stream's leader is {leader}");
        let mut leads = Vec::with_capacity(cluster.len());
        for i in 0..cluster.len() {
            let name = cluster.node(i).monitor_json("/varz").await.ok();
            let name = name.as_ref().and_then(|v| v["server_name"].as_str());
            leads.push(name.is_some_and(|n| n == leader));
        }
        if leader_wanted && leads[publisher_node] {
            eprintln!("odin-load: the publisher's node leads; asking it to step down");
            if let Err(e) = step_down(&js, &leader).await {
                eprintln!("odin-load: the step-down failed: {e:#}");
            }
            continue;
        }
        if let Some(i) = (0..publisher_node).find(|&i| leads[i] == leader_wanted) {
            return i;
        }
        return 0;
    }
    0
}

/// Reads the last-prices store (through its leader, so a lagging
/// replica cannot answer) for every token priced in the run and counts
/// those it holds an older price for, or none: `(checked, stale)`.
pub(crate) async fn check_stored_prices(
    cluster: &NatsCluster,
    totals: &Totals,
) -> anyhow::Result<(u64, u64)> {
    let check = || async {
        let js = async_nats::jetstream::new(cluster_client(cluster).await?);
        let stream = js.get_stream(LAST_PRICES_STREAM).await?;
        let subjects = odin_protocol::Subjects::default();
        let (mut checked, mut stale) = (0, 0);
        for (token, &last) in &totals.last_price_at_by_token {
            let id = odin_protocol::TokenId::parse(token)
                .map_err(|e| anyhow::anyhow!("token {token:?}: {e}"))?;
            let subject = subjects.price(&id);
            let stored = match stream.get_last_raw_message_by_subject(&subject).await {
                Ok(message) => {
                    let body: serde_json::Value = serde_json::from_slice(&message.payload)
                        .with_context(|| format!("the stored price of {token} is not JSON"))?;
                    body["timestamp"].as_f64()
                }
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    None
                }
                Err(e) => return Err(anyhow::anyhow!("reading {subject}: {e}")),
            };
            checked += 1;
            if stored.is_none_or(|at| at < last) {
                stale += 1;
            }
        }
        anyhow::Ok((checked, stale))
    };
    // A cluster that has just lost a node may still be electing the
    // stream's leader, and then answers nothing: ask again until it does.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match tokio::time::timeout(left, check()).await {
            Ok(Ok(found)) => return Ok(found),
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("no answer"),
        };
        if Instant::now() + Duration::from_millis(500) >= deadline {
            return Err(error.context("the store did not answer within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
