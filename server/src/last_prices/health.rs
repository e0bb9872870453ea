//! Whether the last-prices store answers now ([`StoreHealth`]), for an
//! honest `/health`.
//!
//! A gateway whose NATS node is cut off from the rest of its cluster (the
//! minority side of a partition) stays connected to that node, so its NATS
//! connection looks fine; yet prices published on the majority side no
//! longer reach it. What it can see is that the store, a replicated stream,
//! has lost its quorum: the stream's info (which only its leader answers)
//! does not come, or comes from a leader that has not heard from a majority
//! of the replicas for [`QUORUM_SILENCE`] (a leader on the minority side
//! goes on answering for a while before it steps down). A task asks every
//! `--nats-ping-interval`; `/health` reports the store `unreachable` (and
//! `degraded`, 503) while the last answer says so, so a
//! load balancer sends clients to a gateway that still gets every price.
//! When the store answers again, the gateway has missed what was published
//! on the other side meanwhile, with no reconnect to tell it so: the store's
//! recovery is counted ([`StoreHealth::recoveries`]) and the catch-up reads
//! the missed prices back, from the stream's leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::stream::jetstream;

/// A replica the stream's leader has not heard from for this long is
/// counted as lost (the replicas answer the leader's heartbeats every
/// second or so).
const QUORUM_SILENCE: Duration = Duration::from_secs(3);

/// The store's reachability as last checked.
/// `Ok` when the stream's leader has heard from a majority of its replicas
/// (itself included) within [`QUORUM_SILENCE`]; a stream of one replica
/// has no cluster to lose.
fn quorum(info: &async_nats::jetstream::stream::Info) -> Result<(), String> {
    let Some(cluster) = &info.cluster else {
        return Ok(());
    };
    let replicas = info.config.num_replicas.max(1);
    let heard = 1 + cluster
        .replicas
        .iter()
        .filter(|p| !p.offline && p.active < QUORUM_SILENCE)
        .count();
    if heard * 2 > replicas {
        Ok(())
    } else {
        Err(format!(
            "the stream's leader {:?} has heard from {heard} of {replicas} replicas",
            cluster.leader
        ))
    }
}

#[derive(Debug)]
pub(crate) struct StoreHealth {
    reachable: AtomicBool,
    /// Times the store answered again after a failed check.
    recovered: watch::Sender<u64>,
}

impl StoreHealth {
    /// A store believed `reachable` until the first check says otherwise
    /// (the start-up load has just read it, or failed to).
    pub(crate) fn new(reachable: bool) -> Arc<StoreHealth> {
        Arc::new(StoreHealth {
            reachable: AtomicBool::new(reachable),
            recovered: watch::Sender::new(0),
        })
    }

    /// Counts the store's recoveries: the catch-up reads the prices back
    /// after each.
    pub(crate) fn recoveries(&self) -> watch::Receiver<u64> {
        self.recovered.subscribe()
    }

    /// Whether the last check got an answer from the stream's leader.
    pub(crate) fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Asks for `stream`'s info every `every` until `shutdown`, and keeps
    /// the answer: reachable when the leader answered (within the store's
    /// request timeout), unreachable otherwise.
    pub(crate) async fn watch(
        self: Arc<Self>,
        nats: async_nats::Client,
        stream: String,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let js = jetstream(&nats);
        loop {
            let answered = tokio::select! {
                () = shutdown.cancelled() => return,
                info = js.get_stream(&stream) => info
                    .map_err(|e| e.to_string())
                    .and_then(|s| quorum(s.cached_info())),
            };
            let reachable = answered.is_ok();
            if self.reachable.swap(reachable, Ordering::Relaxed) != reachable {
                match answered {
                    Ok(()) => {
                        tracing::info!(stream = %stream, "last-prices store reachable again");
                        self.recovered.send_modify(|n| *n += 1);
                    }
                    Err(e) => {
                        tracing::warn!(stream = %stream, error = %e, "last-prices store unreachable")
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
