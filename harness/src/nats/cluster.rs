//! A local NATS cluster: `n` binary servers routed to each other, for
//! scale-out and fail-over tests (several Odin servers on one cluster, a node
//! killed mid-run).
//!
//! The first node picks its route port freely; each later node solicits the
//! routes of the ones before it and gossip completes the mesh. Once all are
//! up every node is told every other node's route port, so a node that is
//! restarted rejoins on its own. Binary backend only: routes between
//! containers would need a Docker network, which no test needs yet.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::time::{Instant, sleep};

use super::binary::{BinaryServer, ClusterSpec, Spec};
use super::monitor;
use super::options::{Backend, DEFAULT_READY_TIMEOUT, NatsOptions};
use super::select::{self, BackendChoice, Resolved};
use super::server::{Inner, NatsServer};

/// Pause between `/routez` polls.
const ROUTES_POLL: Duration = Duration::from_millis(25);

/// `n` routed `nats-server`s, each killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    /// Invariant: every node is a binary server with a cluster spec.
    nodes: Vec<NatsServer>,
    ready_timeout: Duration,
}

impl NatsCluster {
    /// `n` plain nodes, ready when every node has a route to every other.
    pub async fn start(n: usize) -> anyhow::Result<NatsCluster> {
        Self::start_with(n, NatsOptions::default()).await
    }

    /// `n` nodes as `opts` asks (JetStream, extra args, binary); the backend
    /// must be the binary (or `auto` with a binary present).
    pub async fn start_with(n: usize, opts: NatsOptions) -> anyhow::Result<NatsCluster> {
        ensure!(n >= 1, "a cluster needs at least one node");
        let choice = opts.backend.unwrap_or(BackendChoice::Binary);
        ensure!(
            choice != BackendChoice::Container,
            "NatsCluster runs on the binary backend only"
        );
        let bin = match select::resolve_backend(BackendChoice::Binary, opts.binary.clone())? {
            Resolved::Binary(bin) => bin,
            Resolved::Container => unreachable!("binary choice never resolves to a container"),
        };
        let name = format!("odin-{:08x}", rand::random::<u32>());
        // JetStream in a cluster refuses to start on a node with no route
        // configured, the first one included; so JetStream nodes get their
        // route ports up front and the first node solicits the second.
        let reserved = if opts.jetstream && n > 1 {
            Some(free_ports(n)?)
        } else {
            None
        };
        let mut nodes: Vec<NatsServer> = Vec::with_capacity(n);
        for i in 0..n {
            let mut spec = Spec::single(&opts);
            spec.name = format!("{name}-n{i}");
            let (routes, listen) = match &reserved {
                Some(ports) if i == 0 => (vec![ports[1]], Some(ports[0])),
                Some(ports) => (ports[..i].to_vec(), Some(ports[i])),
                None => (nodes.iter().map(route_port).collect(), None),
            };
            spec.cluster = Some(ClusterSpec {
                name: name.as_str().into(),
                routes,
                listen,
            });
            let server = BinaryServer::start(bin.clone(), spec)
                .await
                .with_context(|| format!("cluster node {i}"))?;
            nodes.push(NatsServer {
                inner: Inner::Binary(server),
            });
        }
        let all: Vec<u16> = nodes.iter().map(route_port).collect();
        for node in &mut nodes {
            let own = route_port(node);
            if let Inner::Binary(b) = &mut node.inner {
                b.set_routes(all.iter().copied().filter(|&p| p != own).collect());
            }
        }
        crate::test_log::nats(Backend::Binary, n);
        let cluster = NatsCluster {
            nodes,
            ready_timeout: opts.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
        };
        cluster.wait_for_routes(cluster.ready_timeout).await?;
        Ok(cluster)
    }

    /// Node `i`, to stop, restart or pause it.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// All nodes, read-only.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// How many nodes the cluster has (running or stopped).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's client URL, in node order; `async_nats::connect` takes
    /// this `Vec` as it is.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The URLs joined with commas, the form the NATS CLI and most NATS
    /// configuration take. async-nats does not split a comma-joined string:
    /// give it [`NatsCluster::urls`] (or split on `,` first).
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// Waits until every running node reports a route to every other running
    /// node (distinct remote servers in `/routez`); call it after restarting
    /// a node to know the mesh is whole again.
    pub async fn wait_for_routes(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let running: Vec<&NatsServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
        let want = running.len().saturating_sub(1);
        loop {
            let mut short = Vec::new();
            for node in &running {
                let have = distinct_routes(node).await.unwrap_or(0);
                if have < want {
                    short.push(format!("{} has {have}/{want}", node.url()));
                }
            }
            if short.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "cluster routes incomplete after {limit:?}: {}",
                    short.join(", ")
                );
            }
            sleep(ROUTES_POLL).await;
        }
    }
}

/// `n` distinct loopback ports that were free a moment ago (bound, read
/// back, released). Another process could take one in between; the node's
/// start then fails with its log quoted, as any start failure does.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind((super::binary::HOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free route ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn route_port(node: &NatsServer) -> u16 {
    match &node.inner {
        Inner::Binary(b) => b
            .ports()
            .cluster
            .expect("cluster nodes always have a route port"),
        Inner::Container(_) => unreachable!("cluster nodes are binary servers"),
    }
}

/// How many distinct servers `node` has routes to.
async fn distinct_routes(node: &NatsServer) -> anyhow::Result<usize> {
    let base = node.monitor_url().context("no monitoring port")?;
    let routez = monitor::get_json(&base, "/routez").await?;
    let remotes: HashSet<&str> = routez["routes"]
        .as_array()
        .map(|routes| {
            routes
                .iter()
                .filter_map(|r| r["remote_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    Ok(remotes.len())
}
