//! A reconnect storm: a thousand reference clients lose the server at the
//! same moment (SIGKILL) and all come back once it is restarted, within a
//! bound, with the server healthy and delivering to every one of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use odin_harness::client::{Client, ClientConfig, ClientCounters, ClientStats, MessageView};
use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::wait::{LIMIT, eventually};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::support::all_subjects;
use crate::support::{Publisher, wait_subscribed_in_nats};

/// How many clients storm back.
const CLIENTS: usize = 1_000;

/// From the kill to every client live again, the server's restart
/// included. Each client retries with a back-off capped at
/// [`STORM_BACKOFF_CAP`], so once the server listens again each is back
/// within about that cap plus its handshake; the rest is headroom for a
/// debug-build server accepting a thousand upgrades on a loaded 2-core box.
const BACK_WITHIN: Duration = Duration::from_secs(30);

/// First back-off ceiling of the storming clients.
const STORM_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest back-off of the storming clients: full jitter up to this spreads
/// the thundering herd over two seconds.
const STORM_BACKOFF_CAP: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_dropped_at_once_are_all_back_within_30_s() {
    // Each client holds a socket here and one in the server, a child process
    // that inherits this limit.
    let wanted = 2 * CLIENTS as u64 + 512;
    let nofile = rlimit::increase_nofile_limit(wanted).expect("can read the open-file limit");
    assert!(
        nofile >= wanted,
        "the open-file limit is {nofile}; this test needs {wanted} (raise the hard limit)"
    );

    let nats = NatsServer::start().await.expect("NATS starts");
    let mut server = ServerProcess::start(&nats.url(), &[])
        .await
        .expect("server starts");
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;

    let token = server.token("storm");
    let shutdown = CancellationToken::new();
    let mut stats: Vec<Arc<ClientStats>> = Vec::with_capacity(CLIENTS);
    let mut tasks = JoinSet::new();
    for _ in 0..CLIENTS {
        let config = ClientConfig::new(server.ws_url(), ["token.BTC"])
            .with_backoff(STORM_BACKOFF_BASE, STORM_BACKOFF_CAP);
        let token = token.clone();
        // A load user's observer: nothing per message beyond the counters
        // the client keeps itself.
        let client = Client::new(
            config,
            move || token.clone(),
            |_: &MessageView<'_>, _: i64| {},
        );
        stats.push(client.stats());
        tasks.spawn(client.run(shutdown.clone()));
    }
    wait_all(&stats, "live", LIMIT, |c| c.live).await;
    server
        .wait_for_stats(LIMIT, |s| s.connection_count == CLIENTS as u64)
        .await
        .unwrap();

    let killed = Instant::now();
    server.kill().await.unwrap();
    wait_all(&stats, "dropped", LIMIT, |c| !c.live && c.disconnects == 1).await;
    server.restart().await.unwrap();
    let left = BACK_WITHIN.saturating_sub(killed.elapsed());
    wait_all(&stats, "live again", left, |c| c.live && c.connects == 2).await;
    let back_after = killed.elapsed();
    println!("{CLIENTS} clients back {back_after:.2?} after the kill (bound {BACK_WITHIN:?})");

    let health = server.get("/health").await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    server
        .wait_for_stats(LIMIT, |s| s.connection_count == CLIENTS as u64)
        .await
        .unwrap();
    // Live means delivering: the first event after the storm reaches all.
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;
    Publisher::connect(&nats.url())
        .await
        .price("BTC", 1.0)
        .await;
    wait_all(&stats, "the first event after the storm", LIMIT, |c| {
        c.delivered == 1
    })
    .await;

    shutdown.cancel();
    let stopped = tokio::time::timeout(LIMIT, async {
        while let Some(done) = tasks.join_next().await {
            // The output is the message handler, handed back; nothing to read.
            let _handler = done.expect("a client task panicked");
        }
    })
    .await;
    assert!(stopped.is_ok(), "the clients did not stop within {LIMIT:?}");
    assert!(
        stats.iter().all(|s| s.snapshot().invalid_frames == 0),
        "a client got a frame that is no server message"
    );
}

/// Polls the clients' counters until `done` holds for every one, within
/// `limit`.
async fn wait_all(
    stats: &[Arc<ClientStats>],
    what: &str,
    limit: Duration,
    done: impl Fn(&ClientCounters) -> bool,
) {
    let what = format!("every one of {} clients {what}", stats.len());
    eventually(limit, &what, async || {
        let behind: Vec<ClientCounters> = stats
            .iter()
            .map(|s| s.snapshot())
            .filter(|c| !done(c))
            .collect();
        match behind.first() {
            None => Ok(()),
            Some(example) => Err(format!("{} behind, e.g. {example:?}", behind.len())),
        }
    })
    .await;
}
