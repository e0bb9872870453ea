//! What the host fault tests share: whether they can run here (they need
//! hosts: NATS nodes as containers, and the Docker host's `tc`, `iptables`
//! and `nsenter`), a container cluster, `/health` read and waited on, and
//! rounds of prices whose latest per token every client must end on.

use std::collections::BTreeMap;
use std::time::Duration;

use odin_harness::nats::{BackendChoice, NatsCluster, NatsOptions, select};
use odin_harness::server::Endpoint;
use odin_harness::wait::eventually;

use super::support::Watched;
use crate::support::Publisher;

/// Whether the host fault test `test` can run here; reports the skip with
/// its reason when not. `ODIN_NATS_BACKEND=binary` (or `binary-first`
/// with a binary at hand) runs NATS as processes on this host, which have
/// no network of their own to cut.
pub(crate) fn hosts_or_skip(test: &str) -> bool {
    let choice = match select::choice_from_env() {
        Ok(choice) => choice,
        Err(e) => {
            odin_harness::report_skip(&format!("{test}: {e}"));
            return false;
        }
    };
    let binary_wanted = match choice {
        BackendChoice::Binary => true,
        BackendChoice::BinaryFirst => matches!(select::find_binary(), Ok(Some(_))),
        BackendChoice::Auto | BackendChoice::Container => false,
    };
    if binary_wanted {
        odin_harness::report_skip(&format!(
            "{test}: needs hosts (NATS nodes as containers), and {}={} runs NATS as processes",
            select::BACKEND_ENV,
            format!("{choice:?}").to_lowercase()
        ));
        return false;
    }
    if let Err(reason) = odin_harness::host::docker_reachable_for_hosts() {
        odin_harness::report_skip(&format!("{test}: needs hosts (containers): {reason}"));
        return false;
    }
    true
}

/// `n` NATS nodes as containers on a network of their own.
pub(crate) async fn container_cluster(n: usize, jetstream: bool) -> NatsCluster {
    NatsCluster::start_with(
        n,
        NatsOptions {
            jetstream,
            backend: Some(BackendChoice::Container),
            ..NatsOptions::default()
        },
    )
    .await
    .expect("the NATS containers start")
}

/// How long one `/health` request may take.
const HEALTH_ANSWER: Duration = Duration::from_secs(2);

/// `/health`'s status code and body.
pub(crate) async fn health(endpoint: &Endpoint) -> (u16, serde_json::Value) {
    let answer = endpoint.get("/health").await.expect("/health answers");
    let body = answer.json().unwrap_or_default();
    (answer.status, body)
}

/// Waits until `/health` answers `status`; returns how long that took and
/// the body.
pub(crate) async fn wait_health(
    endpoint: &Endpoint,
    status: u16,
    limit: Duration,
) -> (Duration, serde_json::Value) {
    let started = tokio::time::Instant::now();
    let what = format!("/health of {} to answer {status}", endpoint.http_addr);
    let body = eventually(limit, &what, async || {
        let Ok((got, body)) = tokio::time::timeout(HEALTH_ANSWER, health(endpoint)).await else {
            return Err(format!("no answer within {HEALTH_ANSWER:?}"));
        };
        if got == status {
            Ok(body)
        } else {
            Err(format!("{got} {body}"))
        }
    })
    .await;
    (started.elapsed(), body)
}

/// Publishes one price of every token in `tokens` and notes each one's
/// nonce as its token's latest; returns the nonces in publishing order.
pub(crate) async fn price_round(
    publisher: &mut Publisher,
    tokens: &[String],
    round: u32,
    latest: &mut BTreeMap<String, String>,
) -> Vec<String> {
    let mut nonces = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let event = publisher.price_event(token, 100.0 * f64::from(round) + i as f64 + 0.5);
        publisher.event(&event).await;
        let nonce = event.nonce().to_string();
        latest.insert(token.clone(), nonce.clone());
        nonces.push(nonce);
    }
    nonces
}

/// Tokens whose latest delivered price is not `latest`'s.
pub(crate) fn stale_tokens(client: &Watched, latest: &BTreeMap<String, String>) -> Vec<String> {
    latest
        .iter()
        .filter(|(token, nonce)| client.seen.latest.get(*token).map(|(n, _)| n) != Some(*nonce))
        .map(|(token, _)| token.clone())
        .collect()
}

/// Waits until `client` holds the latest price of every token in `latest`,
/// and checks that nothing reached its application twice and its
/// WebSocket never dropped.
pub(crate) async fn assert_ends_on_latest(
    client: &mut Watched,
    latest: &BTreeMap<String, String>,
    limit: Duration,
) {
    let what = "the latest price of every token";
    if let Err(e) = client
        .until(what, limit, |s| {
            latest
                .iter()
                .all(|(t, n)| s.latest.get(t).map(|(got, _)| got) == Some(n))
        })
        .await
    {
        panic!(
            "{e:#}; stale or missing: {:?}",
            stale_tokens(client, latest)
        );
    }
    assert!(
        client.seen.repeated.is_empty() && client.seen.duplicates == 0,
        "client {}: delivered twice {:?}, {} dropped as duplicates",
        client.name,
        client.seen.repeated,
        client.seen.duplicates
    );
    let stats = client.client.stats();
    assert_eq!(
        (stats.connects, stats.disconnects),
        (1, 0),
        "client {}: its WebSocket did not outlive the fault: {stats:?}",
        client.name
    );
}
