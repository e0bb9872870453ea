//! What a run tests, brought up: an embedded stack of the shape a
//! [`Topology`] asks for (one NATS server or a cluster with JetStream, one
//! gateway or several sharing a port, `odin-server` or the bare forwarder,
//! all child processes of the built binaries), or an already running server.
//! The single-process run and the fleet's coordinator both bring their
//! target up here, and nowhere else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use odin_harness::nats::{BackendChoice, NatsCluster, NatsOptions, NatsServer, select};
use odin_harness::server::{ServerProcess, TEST_SECRET};
use odin_harness::tls::ClientTls;
use odin_protocol::stats::StatsSnapshot;
use odin_server::auth::{AuthConfig, mint_token};
use serde::{Deserialize, Serialize};

pub mod cluster;
pub mod forwarder;

use forwarder::ForwarderProcess;

use crate::combine::combined;
use crate::scenario::Scenario;
use crate::sysstat::{self, ProcSample};

/// Which gateway an embedded run starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// `odin-server`, the product.
    #[default]
    Odin,
    /// `odin-forwarder`, the bare forwarder: the fan-out benchmark's
    /// reference point (no auth, no de-dup, no `/stats`).
    Forwarder,
}

impl ServerKind {
    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            ServerKind::Odin => "odin-server",
            ServerKind::Forwarder => "odin-forwarder",
        }
    }
}

/// Where to point the load.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start NATS and the server for this run, and stop them after.
    Embedded {
        /// Which server.
        server: ServerKind,
        /// Extra flags for it.
        server_args: Vec<String>,
    },
    /// A running server.
    External {
        /// `ws://host:port/ws`.
        ws_url: String,
        /// Its HTTP address (for `/stats`), when reachable.
        http_addr: Option<SocketAddr>,
        /// The NATS the publisher should publish to.
        nats_url: String,
        /// The secret its tokens are signed with.
        jwt_secret: String,
        /// A PEM file of what to trust for a `wss://` URL and its HTTPS
        /// `/stats` (a CA or the self-signed certificate itself).
        ca_file: Option<std::path::PathBuf>,
    },
}

/// The shape of an embedded stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Gateways; more than one share a WebSocket port (`--reuse-port`).
    pub gateways: usize,
    /// NATS nodes: 1 is a single server; more form a cluster with
    /// JetStream, and the gateways keep their last prices in it.
    pub nats_nodes: usize,
    /// Give every gateway a second NATS connection, to the node after its
    /// first one's.
    pub second_connection: bool,
    /// Users the whole run connects (sizes `--max-connections`).
    pub users: usize,
    /// The gateways compress (`--compression`).
    pub compression: bool,
}

impl Topology {
    /// What `scenario` asks for.
    pub fn of(scenario: &Scenario) -> Topology {
        Topology {
            gateways: scenario.gateways.max(1),
            nats_nodes: scenario.nats_nodes.max(1),
            second_connection: scenario.nats_second_connection,
            compression: scenario.compression,
            users: scenario.users,
        }
    }

    /// One gateway on one NATS server.
    pub fn single(users: usize) -> Topology {
        Topology {
            gateways: 1,
            nats_nodes: 1,
            second_connection: false,
            compression: false,
            users,
        }
    }
}

/// The NATS of an embedded run.
enum Nats {
    One(NatsServer),
    /// A cluster with JetStream, the last prices kept in it.
    Cluster(NatsCluster),
}

impl Nats {
    async fn start(nodes: usize) -> anyhow::Result<Nats> {
        // The binary unless ODIN_NATS_BACKEND says otherwise: a container's
        // port proxy would be in every figure of the run.
        let backend = Some(select::choice_from_env_or(BackendChoice::BinaryFirst)?);
        if nodes > 1 {
            let options = NatsOptions {
                jetstream: true,
                backend,
                ..NatsOptions::default()
            };
            let cluster = NatsCluster::start_with(nodes, options)
                .await
                .context("cannot start the NATS cluster")?;
            Ok(Nats::Cluster(cluster))
        } else {
            let options = NatsOptions {
                backend,
                ..NatsOptions::default()
            };
            Ok(Nats::One(
                NatsServer::start_with(options)
                    .await
                    .context("cannot start NATS")?,
            ))
        }
    }

    fn urls(&self) -> Vec<String> {
        match self {
            Nats::One(server) => vec![server.url()],
            Nats::Cluster(cluster) => cluster.urls(),
        }
    }
}

/// One gateway process of an embedded run.
enum Gateway {
    Odin(ServerProcess),
    Forwarder(ForwarderProcess),
}

impl Gateway {
    fn pid(&self) -> Option<u32> {
        match self {
            Gateway::Odin(s) => s.pid(),
            Gateway::Forwarder(f) => f.pid(),
        }
    }

    fn kind(&self) -> ServerKind {
        match self {
            Gateway::Odin(_) => ServerKind::Odin,
            Gateway::Forwarder(_) => ServerKind::Forwarder,
        }
    }

    /// Stops it with SIGTERM (killed after 10 s); returns its exit code and
    /// its log.
    async fn stop(&mut self) -> (Option<i32>, Vec<String>) {
        let limit = Duration::from_secs(10);
        match self {
            Gateway::Odin(server) => {
                let _ = server.signal("TERM");
                let code = server.wait(limit).await.ok().flatten();
                (code, server.logs())
            }
            Gateway::Forwarder(forwarder) => {
                let _ = forwarder.signal("TERM");
                let code = forwarder.wait(limit).await.ok().flatten();
                (code, forwarder.logs())
            }
        }
    }
}

/// A target brought up and ready.
pub struct Stack {
    nats: Option<Nats>,
    gateways: Vec<Gateway>,
    ws_url: String,
    /// Where `/stats` is read: each gateway's, or an external target's.
    http_addrs: Vec<SocketAddr>,
    /// The publisher's NATS: the cluster's last node, never one a fault
    /// run stops.
    nats_url: String,
    jwt_secret: String,
    /// What the users and `/stats` trust when the target speaks TLS.
    tls: Option<ClientTls>,
}

impl Stack {
    /// Brings `target` up in the shape of `topology` (ignored for an
    /// external target).
    pub async fn start(target: &Target, topology: &Topology) -> anyhow::Result<Stack> {
        match target {
            Target::External {
                ws_url,
                http_addr,
                nats_url,
                jwt_secret,
                ca_file,
            } => Ok(Stack {
                nats: None,
                gateways: Vec::new(),
                ws_url: ws_url.clone(),
                http_addrs: http_addr.iter().copied().collect(),
                nats_url: nats_url.clone(),
                jwt_secret: jwt_secret.clone(),
                tls: match ca_file {
                    Some(path) => Some(odin_harness::tls::client_trusting_file(path)?),
                    None => None,
                },
            }),
            Target::Embedded {
                server: ServerKind::Forwarder,
                server_args,
            } => {
                if topology.gateways > 1 || topology.nats_nodes > 1 {
                    bail!(
                        "--server forwarder runs one forwarder on one NATS server: \
                         several gateways or NATS nodes need odin-server"
                    );
                }
                let nats = Nats::start(1).await?;
                let nats_url = nats.urls().remove(0);
                // Ready when started: it listens only once subscribed.
                let forwarder = ForwarderProcess::start(&nats_url, server_args)
                    .await
                    .context("cannot start odin-forwarder")?;
                Ok(Stack {
                    ws_url: forwarder.ws_url(),
                    http_addrs: Vec::new(),
                    nats_url,
                    // Tokens are minted as for odin-server (the users' cost
                    // stays the same) and ignored.
                    jwt_secret: TEST_SECRET.to_owned(),
                    nats: Some(nats),
                    gateways: vec![Gateway::Forwarder(forwarder)],
                    tls: None,
                })
            }
            Target::Embedded {
                server: ServerKind::Odin,
                server_args,
            } => Self::start_odin(server_args, topology).await,
        }
    }

    /// NATS (a server or a cluster) and `topology.gateways` odin-servers,
    /// each connected to NATS when this returns.
    async fn start_odin(server_args: &[String], topology: &Topology) -> anyhow::Result<Stack> {
        let nats = Nats::start(topology.nats_nodes).await?;
        let urls = nats.urls();
        let max = (topology.users.div_ceil(topology.gateways) + 1000).to_string();
        let replicas = urls.len().min(3).to_string();
        let mut args: Vec<&str> = vec!["--max-connections", &max];
        if urls.len() > 1 {
            // A fresh cluster elects its JetStream leaders within seconds:
            // the gateways wait for the stream that long.
            args.extend([
                "--last-prices-stream",
                cluster::LAST_PRICES_STREAM,
                "--last-prices-replicas",
                &replicas,
                "--last-prices-timeout",
                "30s",
            ]);
        }
        if topology.compression {
            args.push("--compression");
        }
        args.extend(server_args.iter().map(String::as_str));
        // Gateway g tries node g % n first, then the others in turn: the
        // gateways spread over the nodes.
        let order = |first: usize| -> String {
            (0..urls.len())
                .map(|i| urls[(first + i) % urls.len()].as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut gateways = Vec::with_capacity(topology.gateways);
        let ws_url = if topology.gateways == 1 && !topology.second_connection {
            let server = ServerProcess::start(&order(0), &args)
                .await
                .context("cannot start odin-server")?;
            let ws_url = server.endpoint().ws_url();
            gateways.push(server);
            ws_url
        } else {
            let ws_addr = format!("127.0.0.1:{}", free_port()?);
            args.push("--reuse-port");
            for g in 0..topology.gateways {
                let first = g % urls.len();
                // Its second connection, if any, prefers the next node.
                let second = order(first + 1);
                let mut gateway_args = args.clone();
                if topology.second_connection {
                    gateway_args.extend(["--nats-second-url", second.as_str()]);
                }
                let gateway = ServerProcess::start_at(&order(first), &ws_addr, &gateway_args, &[])
                    .await
                    .with_context(|| format!("cannot start gateway {g}"))?;
                gateways.push(gateway);
            }
            format!("ws://{ws_addr}{}", odin_server::WS_PATH)
        };
        for (g, gateway) in gateways.iter().enumerate() {
            gateway
                .endpoint()
                .wait_for_stats(Duration::from_secs(20), |s| s.nats_connected)
                .await
                .with_context(|| format!("gateway {g} did not connect to NATS within 20 s"))?;
        }
        Ok(Stack {
            ws_url,
            http_addrs: gateways.iter().map(|g| g.endpoint().http_addr).collect(),
            nats_url: urls[urls.len() - 1].clone(),
            jwt_secret: TEST_SECRET.to_owned(),
            nats: Some(nats),
            gateways: gateways.into_iter().map(Gateway::Odin).collect(),
            tls: None,
        })
    }

    /// `ws://…/ws`.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// What a `wss://` target's certificate is checked against.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The NATS URL for the publisher.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The secret the users' tokens are signed with.
    pub fn jwt_secret(&self) -> &str {
        &self.jwt_secret
    }

    /// A token minter for the users.
    pub fn token_source(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let auth = AuthConfig::with_secret(&self.jwt_secret);
        Arc::new(move || mint_token(&auth, "load-user", Duration::from_secs(3600)))
    }

    /// Gateways this stack started (0 for an external target).
    pub fn gateway_count(&self) -> usize {
        self.gateways.len()
    }

    /// Every gateway's `/stats` that answers, in order (none for the
    /// forwarder, which has none).
    pub async fn stats_each(&self) -> Vec<StatsSnapshot> {
        let mut all = Vec::with_capacity(self.http_addrs.len());
        for addr in &self.http_addrs {
            if let Some(stats) = stats_of(*addr, self.tls.as_ref()).await {
                all.push(stats);
            }
        }
        all
    }

    /// The gateways' `/stats` as one ([`crate::combine`]), when any answers;
    /// several are named for how many.
    pub async fn stats(&self) -> Option<StatsSnapshot> {
        let all = self.stats_each().await;
        let mut sum = combined(&all)?;
        if all.len() > 1 {
            sum.server_id = format!("{} gateways", all.len());
        }
        Some(sum)
    }

    /// The gateways' CPU and memory, summed (embedded runs).
    pub fn sample(&self) -> Option<ProcSample> {
        if self.gateways.is_empty() {
            return None;
        }
        let mut sum = ProcSample::default();
        for gateway in &self.gateways {
            let s = sysstat::sample(Some(gateway.pid()?))?;
            sum.cpu_seconds += s.cpu_seconds;
            sum.rss_bytes += s.rss_bytes;
            sum.peak_rss_bytes += s.peak_rss_bytes;
        }
        Some(sum)
    }

    /// The first gateway's process id (embedded runs).
    pub fn server_pid(&self) -> Option<u32> {
        self.gateways.first()?.pid()
    }

    /// Which server an embedded run started.
    pub fn server_kind(&self) -> Option<ServerKind> {
        self.gateways.first().map(Gateway::kind)
    }

    /// The NATS cluster of a run with several nodes.
    pub fn cluster(&mut self) -> Option<&mut NatsCluster> {
        match &mut self.nats {
            Some(Nats::Cluster(cluster)) => Some(cluster),
            _ => None,
        }
    }

    /// What is under test, for the report.
    pub fn describe(&self) -> String {
        let nats = match &self.nats {
            Some(Nats::Cluster(c)) => format!(", a {}-node NATS cluster", c.len()),
            _ => String::new(),
        };
        match (self.server_kind(), self.gateways.len()) {
            (None, _) => self.ws_url.clone(),
            (Some(ServerKind::Forwarder), _) => format!(
                "embedded odin-forwarder, the bare forwarder ({})",
                self.ws_url
            ),
            (Some(ServerKind::Odin), 1) => {
                format!("embedded odin-server ({}){nats}", self.ws_url)
            }
            (Some(ServerKind::Odin), n) => format!(
                "embedded fleet: {n} gateways sharing {} (SO_REUSEPORT){nats}",
                self.ws_url
            ),
        }
    }

    /// Stops what this run started: the gateways gracefully, then NATS.
    /// With `logs_to`, each gateway's log is kept there as
    /// `gateway-<g>.log`; a gateway that exits with an error prints its log.
    pub async fn shutdown(mut self, logs_to: Option<&Path>) {
        for (g, gateway) in self.gateways.iter_mut().enumerate() {
            let (code, log) = gateway.stop().await;
            if let Some(code) = code.filter(|&c| c != 0) {
                eprintln!(
                    "odin-load: {} exited with {code}; its log:\n{}",
                    gateway.kind().binary(),
                    log.join("\n")
                );
            }
            if let Some(dir) = logs_to {
                let path = dir.join(format!("gateway-{g}.log"));
                if let Err(e) = std::fs::write(&path, log.join("\n") + "\n") {
                    eprintln!("odin-load: cannot write {}: {e}", path.display());
                }
            }
        }
        drop(self.nats.take());
    }
}

/// `/stats` at `addr`, if it answers.
async fn stats_of(addr: SocketAddr, tls: Option<&ClientTls>) -> Option<StatsSnapshot> {
    odin_harness::http::get_over(addr, "/stats", &[], tls)
        .await
        .ok()?
        .json()
        .ok()
}

/// A free loopback port for the gateways to share.
fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(probe.local_addr()?.port())
}
