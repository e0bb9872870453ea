//! A local NATS cluster: `n` servers routed to each other, for scale-out
//! and fail-over tests (several Odin servers on one cluster, a node killed,
//! paused or restarted mid-run), on either backend.
//!
//! - **Containers** share a private Docker network of their own and find
//!   each other by name there (`<cluster>-n<i>`); every node is given every
//!   other node's route from the start, so a restarted node rejoins on its
//!   own. Clients reach each node on a host port of its own.
//! - **Binaries**: the first node picks its route port freely; each later
//!   node solicits the routes of the ones before it and gossip completes the
//!   mesh. Once all are up every node is told every other node's route port,
//!   so a node that is restarted rejoins on its own.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use tokio::time::{Instant, sleep};

use super::binary::{BinaryServer, ClusterSpec, Spec};
use super::container::{ClusterPlace, ContainerServer};
use super::monitor;
use super::options::{Backend, DEFAULT_READY_TIMEOUT, NatsOptions};
use super::select::{self, Resolved};
use super::server::{Inner, NatsServer};

/// Pause between `/routez` polls.
const ROUTES_POLL: Duration = Duration::from_millis(25);

/// `n` routed `nats-server`s, each killed on drop.
#[derive(Debug)]
pub struct NatsCluster {
    /// Invariant: every node runs on the same backend, a binary node with a
    /// cluster spec.
    nodes: Vec<NatsServer>,
    /// The cluster's name; on the container backend also the prefix of its
    /// network's and its nodes' names.
    name: String,
    backend: Backend,
    ready_timeout: Duration,
}

impl NatsCluster {
    /// `n` plain nodes, ready when every node has a route to every other.
    pub async fn start(n: usize) -> anyhow::Result<NatsCluster> {
        Self::start_with(n, NatsOptions::default()).await
    }

    /// `n` nodes as `opts` asks (JetStream, extra args, backend: `None`
    /// reads `ODIN_NATS_BACKEND`, default `auto`).
    pub async fn start_with(n: usize, opts: NatsOptions) -> anyhow::Result<NatsCluster> {
        ensure!(n >= 1, "a cluster needs at least one node");
        let choice = match opts.backend {
            Some(choice) => choice,
            None => select::choice_from_env()?,
        };
        let name = format!("odin-{:08x}", rand::random::<u32>());
        let (nodes, backend) = match select::resolve_backend(choice, opts.binary.clone())? {
            Resolved::Binary(bin) => (Self::binaries(n, &opts, bin, &name).await?, Backend::Binary),
            Resolved::Container => (Self::containers(n, &opts, &name).await?, Backend::Container),
        };
        crate::test_log::nats(backend, n);
        let cluster = NatsCluster {
            nodes,
            name,
            backend,
            ready_timeout: opts.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
        };
        cluster.wait_for_routes(cluster.ready_timeout).await?;
        Ok(cluster)
    }

    /// `n` containers on a network of their own, each routed to the others
    /// by name.
    async fn containers(
        n: usize,
        opts: &NatsOptions,
        name: &str,
    ) -> anyhow::Result<Vec<NatsServer>> {
        let network = network_of(name);
        let names: Vec<String> = (0..n).map(|i| node_name(name, i)).collect();
        let mut nodes = Vec::with_capacity(n);
        for (i, node) in names.iter().enumerate() {
            let peers: Vec<String> = names.iter().filter(|&p| p != node).cloned().collect();
            let place = ClusterPlace {
                network: &network,
                name: node,
                cluster: name,
                peers: &peers,
            };
            let server = ContainerServer::start(opts, Some(&place))
                .await
                .with_context(|| format!("cluster node {i}"))?;
            nodes.push(NatsServer {
                inner: Inner::Container(Box::new(server)),
            });
        }
        Ok(nodes)
    }

    /// `n` binary servers, routed as the module doc says.
    async fn binaries(
        n: usize,
        opts: &NatsOptions,
        bin: std::path::PathBuf,
        name: &str,
    ) -> anyhow::Result<Vec<NatsServer>> {
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
            let mut spec = Spec::single(opts);
            spec.name = format!("{name}-n{i}");
            let (routes, listen) = match &reserved {
                Some(ports) if i == 0 => (vec![ports[1]], Some(ports[0])),
                Some(ports) => (ports[..i].to_vec(), Some(ports[i])),
                None => (nodes.iter().map(route_port).collect(), None),
            };
            spec.cluster = Some(ClusterSpec {
                name: name.into(),
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
        Ok(nodes)
    }

    /// Node `i`, to stop, restart or pause it.
    ///
    /// # Panics
    /// When `i` is out of range.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// The private Docker network the nodes share, on the container
    /// backend (`None` on the binary backend): where a gateway container
    /// joins them, and what a host fault cuts ([`crate::host`]).
    pub fn network(&self) -> Option<String> {
        (self.backend == Backend::Container).then(|| network_of(&self.name))
    }

    /// Node `i`'s host name on [`NatsCluster::network`] (container backend),
    /// e.g. for a gateway container's `--nats-url nats://<host>:4222`.
    pub fn node_host(&self, i: usize) -> Option<String> {
        (self.backend == Backend::Container).then(|| node_name(&self.name, i))
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

/// The network of the container cluster `name`.
fn network_of(name: &str) -> String {
    format!("{name}-net")
}

/// Node `i`'s container name (and host name, and NATS server name).
fn node_name(name: &str, i: usize) -> String {
    format!("{name}-n{i}")
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
        Inner::Container(_) => unreachable!("only binary nodes are told route ports"),
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
