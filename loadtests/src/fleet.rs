//! Runs beyond one process: several `odin-server` gateways sharing one
//! WebSocket port (`--reuse-port`) and several `odin-load worker` processes,
//! each holding at most [`MAX_USERS_PER_PROCESS`] sockets (the file limit is
//! 20,000 per process) from source addresses of its own, 127.0.<w+1>.1–8.
//! Spread that thin (about 2,000 connections per address at 100,000 users),
//! no address runs short of ephemeral ports, and the kernel's search for a
//! free one on connect stays short (at 17,000 connections from one address
//! it took a quarter of the machine's CPU in the ramp).
//!
//! The coordinator starts NATS and the gateways, splits the users over the
//! workers (numbered across workers, so channels spread as in one process),
//! waits until every worker reports its users in, then runs the publisher
//! once for all. Workers learn the publish start and, after the drain, the
//! publisher's totals over a line protocol on their stdin; each judges its
//! share and writes a `report.json`, which [`crate::merge`] folds into one
//! report with one verdict.
//!
//! Worker → coordinator (stdout): `odin-worker: ready <live> <failed>
//! <ramp-start-millis> <all-in-millis>`.
//! Coordinator → worker (stdin): `publish <millis>`, then
//! `totals <path> <publish-seconds>`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use odin_harness::nats::{NatsCluster, NatsOptions, NatsServer};
use odin_harness::server::{ServerProcess, TEST_SECRET};
use odin_protocol::stats::StatsSnapshot;
use odin_publisher::{PublisherConfig, Totals};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::report::RunReport;
use crate::run::{RunOptions, SetupError};
use crate::scenario::{MAX_USERS_PER_PROCESS, Scenario};
use crate::stack::{ServerKind, Target};
use crate::sysstat::{self, ProcSample};
use crate::user::LoadContext;

/// Source addresses per worker.
const SOURCES_PER_WORKER: u8 = 8;

/// The line a worker prints once its users are in.
const READY: &str = "odin-worker: ready";

/// What a run over several processes adds to its report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    /// Gateways started (0 for an external target).
    pub gateways: usize,
    /// Load processes.
    pub processes: usize,
    /// Connections each gateway held once every user was in.
    pub connections_per_gateway: Vec<u64>,
    /// From the first worker's start until every worker had its users in.
    pub ramp_secs: f64,
    /// Users live ÷ `ramp_secs`: new connections (upgrade, JWT check and
    /// subscribe) per second over the ramp.
    pub connect_rate_per_sec: f64,
    /// Gateways' resident memory before any user, bytes (all gateways).
    pub gateway_rss_before_bytes: u64,
    /// The same once every user was in, before publishing.
    pub gateway_rss_idle_bytes: u64,
    /// (idle − before) ÷ connections: memory per connected, subscribed,
    /// idle client.
    pub rss_per_idle_connection_bytes: f64,
}

/// Runs `scenario` over `scenario.processes` workers and
/// `scenario.gateways` gateways, and returns the merged report.
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunReport, SetupError> {
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let wall = Instant::now();
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create {}", opts.out_dir.display()))
        .map_err(SetupError)?;
    // The gateways inherit this process's file limit.
    crate::limits::ensure_files_for(MAX_USERS_PER_PROCESS).map_err(SetupError)?;
    let mut fleet = Fleet::start(scenario, &opts.target)
        .await
        .map_err(SetupError)?;
    let result = coordinate(scenario, opts, &mut fleet).await;
    fleet.shutdown(&opts.out_dir).await;
    let mut report = result.map_err(SetupError)?;
    report.started_at = started_at;
    report.duration_secs = wall.elapsed().as_secs_f64();
    Ok(report)
}

/// The NATS of an embedded run.
enum Nats {
    #[expect(dead_code, reason = "held for its drop, which stops it")]
    One(NatsServer),
    /// A cluster with JetStream, the last prices kept in it.
    Cluster(NatsCluster),
}

/// The last-prices stream of a cluster run.
const LAST_PRICES_STREAM: &str = "ODIN_LAST_PRICES";

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

/// NATS and the gateways of an embedded run, or an external target.
struct Fleet {
    nats: Option<Nats>,
    gateways: Vec<ServerProcess>,
    ws_url: String,
    nats_url: String,
    jwt_secret: String,
}

impl Fleet {
    async fn start(scenario: &Scenario, target: &Target) -> anyhow::Result<Fleet> {
        match target {
            Target::External {
                ws_url,
                nats_url,
                jwt_secret,
                ..
            } => Ok(Fleet {
                nats: None,
                gateways: Vec::new(),
                ws_url: ws_url.clone(),
                nats_url: nats_url.clone(),
                jwt_secret: jwt_secret.clone(),
            }),
            Target::Embedded {
                server: ServerKind::Forwarder,
                ..
            } => bail!(
                "--server forwarder runs one forwarder for one load process: \
                 a run over several processes or gateways needs odin-server"
            ),
            Target::Embedded {
                server: ServerKind::Odin,
                server_args,
            } => {
                let (nats, urls) = if scenario.nats_nodes > 1 {
                    let options = NatsOptions {
                        jetstream: true,
                        ..NatsOptions::default()
                    };
                    let cluster = NatsCluster::start_with(scenario.nats_nodes, options)
                        .await
                        .context("cannot start the NATS cluster")?;
                    let urls = cluster.urls();
                    (Nats::Cluster(cluster), urls)
                } else {
                    let nats = NatsServer::start().await.context("cannot start NATS")?;
                    let urls = vec![nats.url()];
                    (Nats::One(nats), urls)
                };
                let port = free_port()?;
                let ws_addr = format!("127.0.0.1:{port}");
                let max = (scenario.users.div_ceil(scenario.gateways) + 1000).to_string();
                let replicas = urls.len().min(3).to_string();
                let mut args: Vec<&str> = vec!["--reuse-port", "--max-connections", &max];
                if urls.len() > 1 {
                    // A fresh cluster elects its JetStream leaders within
                    // seconds: the gateways wait for the stream that long.
                    args.extend([
                        "--last-prices-stream",
                        LAST_PRICES_STREAM,
                        "--last-prices-replicas",
                        &replicas,
                        "--last-prices-timeout",
                        "30s",
                    ]);
                }
                args.extend(server_args.iter().map(String::as_str));
                let mut gateways = Vec::new();
                for g in 0..scenario.gateways {
                    // Gateway g tries node g % n first, then the others in
                    // turn: the gateways spread over the nodes.
                    let first = g % urls.len();
                    let order = |first: usize| -> String {
                        (0..urls.len())
                            .map(|i| urls[(first + i) % urls.len()].as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    // Its second connection, if any, prefers the next node.
                    let second = order(first + 1);
                    let mut gateway_args = args.clone();
                    if scenario.nats_second_connection {
                        gateway_args.extend(["--nats-second-url", second.as_str()]);
                    }
                    let gateway =
                        ServerProcess::start_at(&order(first), &ws_addr, &gateway_args, &[])
                            .await
                            .with_context(|| format!("cannot start gateway {g}"))?;
                    gateways.push(gateway);
                }
                let fleet = Fleet {
                    ws_url: format!("ws://{ws_addr}{}", odin_server::WS_PATH),
                    // The publisher's node: the last, never the stopped one.
                    nats_url: urls[urls.len() - 1].clone(),
                    jwt_secret: TEST_SECRET.to_owned(),
                    nats: Some(nats),
                    gateways,
                };
                fleet.wait_ready().await?;
                Ok(fleet)
            }
        }
    }

    /// Waits until every gateway reports NATS connected.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        for (g, gateway) in self.gateways.iter().enumerate() {
            gateway
                .endpoint()
                .wait_for_stats(Duration::from_secs(20), |s| s.nats_connected)
                .await
                .with_context(|| format!("gateway {g} did not connect to NATS"))?;
        }
        Ok(())
    }

    /// Every gateway's `/stats`, in order (empty for an external target).
    async fn stats(&self) -> Vec<StatsSnapshot> {
        let mut all = Vec::new();
        for gateway in &self.gateways {
            if let Ok(s) = gateway.endpoint().stats().await {
                all.push(s);
            }
        }
        all
    }

    /// The gateways' CPU and memory, summed.
    fn sample(&self) -> Option<ProcSample> {
        if self.gateways.is_empty() {
            return None;
        }
        let mut sum = ProcSample::default();
        for gateway in &self.gateways {
            let s = sysstat::sample(gateway.pid())?;
            sum.cpu_seconds += s.cpu_seconds;
            sum.rss_bytes += s.rss_bytes;
            sum.peak_rss_bytes += s.peak_rss_bytes;
        }
        Some(sum)
    }

    fn describe(&self, processes: usize) -> String {
        let nats = match &self.nats {
            Some(Nats::Cluster(c)) => format!(", a {}-node NATS cluster", c.len()),
            _ => String::new(),
        };
        match self.gateways.len() {
            0 => format!("{} from {processes} load processes", self.ws_url),
            n => format!(
                "embedded fleet: {n} gateways sharing {} (SO_REUSEPORT), {processes} load processes{nats}",
                self.ws_url
            ),
        }
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
    async fn node_to_stop(&mut self, leader_wanted: bool) -> usize {
        let Some(Nats::Cluster(cluster)) = &mut self.nats else {
            return 0;
        };
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
    /// `None` when the fleet keeps no store (a single NATS server).
    async fn check_stored_prices(&self, totals: &Totals) -> Option<anyhow::Result<(u64, u64)>> {
        let Some(Nats::Cluster(cluster)) = &self.nats else {
            return None;
        };
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
                Ok(Ok(found)) => return Some(Ok(found)),
                Ok(Err(e)) => e,
                Err(_) => anyhow::anyhow!("no answer"),
            };
            if Instant::now() + Duration::from_millis(500) >= deadline {
                return Some(Err(error.context("the store did not answer within 30 s")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn stop_nats_node(&mut self, i: usize) -> Option<anyhow::Result<()>> {
        match &mut self.nats {
            Some(Nats::Cluster(cluster)) => Some(cluster.node(i).stop().await),
            _ => None,
        }
    }

    /// Stops the gateways and NATS, and keeps each gateway's log in `dir`
    /// as `gateway-<g>.log` (its reconnects and last-prices catch-ups).
    async fn shutdown(mut self, dir: &Path) {
        for gateway in &self.gateways {
            let _ = gateway.signal("TERM");
        }
        for (g, gateway) in self.gateways.iter_mut().enumerate() {
            let _ = gateway.wait(Duration::from_secs(10)).await;
            let mut log = gateway.logs().join("\n");
            log.push('\n');
            let path = dir.join(format!("gateway-{g}.log"));
            if let Err(e) = std::fs::write(&path, log) {
                eprintln!("odin-load: cannot write {}: {e}", path.display());
            }
        }
        drop(self.nats.take());
    }
}

/// A free loopback port for the gateways to share.
fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(probe.local_addr()?.port())
}

/// One worker process and its control pipes.
struct Worker {
    index: usize,
    child: Child,
    stdin: ChildStdin,
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    dir: PathBuf,
}

impl Worker {
    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .and(self.stdin.flush().await)
            .with_context(|| format!("worker {} is gone", self.index))
    }

    /// Reads the worker's stdout until its ready line, then keeps draining
    /// it in the background (a full pipe would stall the worker). Returns
    /// when its ramp started and when its users were all in (protocol
    /// milliseconds).
    async fn ready(&mut self) -> anyhow::Result<(f64, f64)> {
        let mut stdout = self.stdout.take().context("readiness read twice")?;
        while let Some(line) = stdout.next_line().await? {
            if let Some(rest) = line.strip_prefix(READY) {
                tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
                let times: Vec<f64> = rest
                    .split_whitespace()
                    .skip(2)
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("bad ready line {line:?}"))?;
                let [started, all_in] = times[..] else {
                    bail!("bad ready line {line:?}");
                };
                return Ok((started, all_in));
            }
        }
        bail!(
            "worker {} exited before its users were in; see {}",
            self.index,
            self.dir.join("worker.log").display()
        )
    }
}

async fn coordinate(
    scenario: &Scenario,
    opts: &RunOptions,
    fleet: &mut Fleet,
) -> anyhow::Result<RunReport> {
    let processes = scenario.processes;
    if processes > 250 {
        bail!("at most 250 load processes (source addresses 127.0.<w+1>.x each)");
    }
    let stats_before = fleet.stats().await;
    let before = fleet.sample();
    let spawned = Instant::now();
    let mut workers = Vec::with_capacity(processes);
    let mut first_user = 0;
    for index in 0..processes {
        let users = scenario.users / processes + usize::from(index < scenario.users % processes);
        let mut part = scenario.clone();
        part.users = users;
        part.first_user = first_user;
        part.processes = 1;
        part.gateways = 1;
        part.ramp_rate = scenario.ramp_rate * users as f64 / scenario.users as f64;
        first_user += users;
        workers.push(spawn_worker(index, &part, opts, fleet).await?);
    }
    let limit = scenario.ramp_time() + opts.connect_timeout + Duration::from_secs(60);
    // The ramp as the workers saw it: from the first one's launch of its
    // users to the last one's last subscribe (process start-up excluded).
    let (mut ramp_from, mut ramp_to) = (f64::INFINITY, 0.0_f64);
    for worker in &mut workers {
        let (from, to) = tokio::time::timeout(limit, worker.ready())
            .await
            .with_context(|| format!("worker {} was not ready within {limit:?}", worker.index))??;
        ramp_from = ramp_from.min(from);
        ramp_to = ramp_to.max(to);
    }
    let ramp_secs = ((ramp_to - ramp_from) / 1000.0).max(0.0);
    let idle = fleet.sample();
    let idle_stats = fleet.stats().await;
    eprintln!(
        "odin-load: every worker's users are in: a ramp of {ramp_secs:.1} s ({:.1} s since the workers started); publishing for {}",
        spawned.elapsed().as_secs_f64(),
        humantime::format_duration(scenario.hold)
    );

    // Every event the publisher makes is younger than this mark.
    let started_ms = odin_protocol::time::now_millis();
    for worker in &mut workers {
        worker.send(&format!("publish {started_ms}")).await?;
    }
    let publish_wall = Instant::now();
    // With a last-prices store (a cluster), the publisher sees each token's
    // latest price stored, and its final flush waits for a store that is
    // electing a leader.
    let confirm = scenario.nats_nodes > 1;
    let config = PublisherConfig {
        nats_url: fleet.nats_url.clone(),
        tokens: scenario.tokens,
        rate: scenario.publish_rate,
        duration: Some(scenario.hold),
        tick: scenario.tick,
        confirm_stored_prices: confirm,
        flush_timeout: if confirm {
            Duration::from_secs(30)
        } else {
            PublisherConfig::default().flush_timeout
        },
        ..PublisherConfig::default()
    };
    let publisher = odin_harness::publisher::PublisherProcess::start(&config).await?;
    let stop_node = async {
        if let Some(after) = scenario.stop_nats_node_after {
            tokio::time::sleep(after).await;
            let node = fleet.node_to_stop(scenario.stop_nats_leader).await;
            eprintln!(
                "odin-load: stopping NATS node {node}, {} into publishing",
                humantime::format_duration(after)
            );
            if let Some(stopped) = fleet.stop_nats_node(node).await {
                stopped.with_context(|| format!("cannot stop NATS node {node}"))?;
                return Ok(Some(node));
            }
        }
        anyhow::Ok(None)
    };
    let (totals, stopped) = tokio::join!(
        publisher.wait(scenario.hold + Duration::from_secs(30)),
        stop_node
    );
    let totals = totals.context("the publisher failed")?;
    let stopped = stopped?;
    let publish_secs = publish_wall.elapsed().as_secs_f64();
    tokio::time::sleep(scenario.drain).await;
    let after = fleet.sample();
    let generator_wall = publish_wall.elapsed();
    let stats_after = fleet.stats().await;
    let store = match fleet.check_stored_prices(&totals).await {
        Some(Ok((checked, stale))) => {
            eprintln!(
                "odin-load: the last-prices store holds the last price of {} of {checked} tokens",
                checked - stale
            );
            Some((checked, stale))
        }
        Some(Err(e)) => {
            eprintln!("odin-load: cannot check the last-prices store: {e:#}");
            Some((0, 0))
        }
        None => None,
    };

    let totals_path = opts.out_dir.join("publisher-totals.json");
    std::fs::write(&totals_path, serde_json::to_vec_pretty(&totals)?)
        .with_context(|| format!("cannot write {}", totals_path.display()))?;
    let totals_path = std::path::absolute(&totals_path)?;
    for worker in &mut workers {
        worker
            .send(&format!("totals {} {publish_secs}", totals_path.display()))
            .await?;
    }
    let mut reports = Vec::with_capacity(processes);
    for mut worker in workers {
        let status = tokio::time::timeout(Duration::from_secs(120), worker.child.wait())
            .await
            .with_context(|| format!("worker {} did not finish", worker.index))??;
        let path = worker.dir.join("report.json");
        let report = crate::baseline::load(&path).with_context(|| {
            format!(
                "worker {} ({status}) left no report; see {}",
                worker.index,
                worker.dir.join("worker.log").display()
            )
        })?;
        reports.push(report);
    }
    let mut report = crate::merge::merge_with_store(reports, store)?;
    report.target = fleet.describe(processes);
    if scenario.nats_second_connection {
        report.target += "; two NATS connections per gateway";
    }
    if let (Some(after), Some(node)) = (scenario.stop_nats_node_after, stopped) {
        let which = if scenario.stop_nats_leader {
            " (the last-prices stream's leader)"
        } else {
            ""
        };
        report.target += &format!(
            "; NATS node {node}{which} stopped {} into publishing",
            humantime::format_duration(after)
        );
    }
    report.scenario = scenario.clone();
    if !fleet.gateways.is_empty() {
        report.server = crate::run::server_summary(
            sum_stats(&stats_before),
            sum_stats(&stats_after),
            crate::run::ServerSamples {
                before_ramp: before,
                publish_start: idle,
                publish_end: after,
            },
            generator_wall,
            report.accounting.delivered.max(1) as f64,
            report.users.live,
        );
        report.server.binary = Some(ServerKind::Odin.binary().to_owned());
        // The memory rules read the gateways' figures, known only now.
        crate::merge::judge(&mut report)?;
    }
    let live = report.users.live.max(1) as f64;
    report.fleet = Some(FleetSummary {
        gateways: fleet.gateways.len(),
        processes,
        connections_per_gateway: idle_stats.iter().map(|s| s.connection_count).collect(),
        ramp_secs,
        connect_rate_per_sec: report.users.live as f64 / ramp_secs.max(1e-9),
        gateway_rss_before_bytes: before.map_or(0, |b| b.rss_bytes),
        gateway_rss_idle_bytes: idle.map_or(0, |b| b.rss_bytes),
        rss_per_idle_connection_bytes: match (before, idle) {
            (Some(b), Some(i)) => (i.rss_bytes as f64 - b.rss_bytes as f64) / live,
            _ => 0.0,
        },
    });
    Ok(report)
}

async fn spawn_worker(
    index: usize,
    part: &Scenario,
    opts: &RunOptions,
    fleet: &Fleet,
) -> anyhow::Result<Worker> {
    let dir = opts.out_dir.join(format!("worker-{index}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let scenario_path = dir.join("scenario.json");
    std::fs::write(&scenario_path, serde_json::to_vec_pretty(part)?)?;
    let log = std::fs::File::create(dir.join("worker.log"))?;
    // 127.0.<index+1>.1–8: the worker's own source addresses.
    let sources: Vec<String> = (1..=SOURCES_PER_WORKER)
        .map(|host| IpAddr::V4(Ipv4Addr::new(127, 0, index as u8 + 1, host)).to_string())
        .collect();
    let exe = std::env::current_exe().context("cannot find odin-load's own binary")?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg("--scenario-json")
        .arg(&scenario_path)
        .arg("--out")
        .arg(&dir)
        .args(["--url", &fleet.ws_url, "--nats-url", &fleet.nats_url])
        .args(["--source-ips", &sources.join(",")])
        .arg("--connect-timeout")
        .arg(humantime::format_duration(opts.connect_timeout).to_string())
        .arg("--max-generator-lag")
        .arg(humantime::format_duration(opts.max_generator_lag).to_string())
        .env("ODIN_JWT_SECRET", &fleet.jwt_secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a load worker")?;
    let stdin = child.stdin.take().context("no stdin pipe")?;
    let stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?).lines();
    Ok(Worker {
        index,
        child,
        stdin,
        stdout: Some(stdout),
        dir,
    })
}

/// Several gateways' `/stats` as one: counters added, latency averaged,
/// peak and uptime the largest, connected only if all are.
fn sum_stats(all: &[StatsSnapshot]) -> Option<StatsSnapshot> {
    let first = all.first()?;
    let mut sum = StatsSnapshot {
        server_id: format!("{} gateways", all.len()),
        ..first.clone()
    };
    for s in &all[1..] {
        sum.uptime_seconds = sum.uptime_seconds.max(s.uptime_seconds);
        sum.connection_count += s.connection_count;
        sum.messages_received += s.messages_received;
        sum.messages_delivered += s.messages_delivered;
        sum.duplicates_dropped += s.duplicates_dropped;
        sum.invalid_events += s.invalid_events;
        sum.conflated += s.conflated;
        sum.slow_consumer_disconnects += s.slow_consumer_disconnects;
        sum.auth_failures += s.auth_failures;
        sum.average_latency += s.average_latency;
        sum.peak_latency = sum.peak_latency.max(s.peak_latency);
        sum.nats_connected &= s.nats_connected;
    }
    sum.average_latency /= all.len() as f64;
    Some(sum)
}

/// A worker's publish phase: says its users are in, takes the publish start
/// from the coordinator, and later the publisher's totals (after the
/// drain). Returns the totals and how long publishing took.
pub(crate) async fn worker_publish_phase(
    ctx: &LoadContext,
    scenario: &Scenario,
    ramp_started_ms: f64,
    lag: &crate::lag::LagMonitor,
) -> (anyhow::Result<Totals>, f64) {
    let live = ctx.subscribed.load(std::sync::atomic::Ordering::Acquire);
    let failed = ctx.failed.load(std::sync::atomic::Ordering::Acquire);
    let all_in_ms = odin_protocol::time::now_millis();
    println!("{READY} {live} {failed} {ramp_started_ms} {all_in_ms}");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut publish_secs = 0.0;
    let result = async {
        loop {
            let Some(line) = lines.next_line().await? else {
                bail!("the coordinator closed the control pipe");
            };
            let mut words = line.split_whitespace();
            match words.next() {
                Some("publish") => {
                    let millis: f64 = words.next().context("publish without a time")?.parse()?;
                    ctx.clock.set_publish_started(millis, scenario.warmup);
                    // Other workers may have ramped until now: only the
                    // measuring part counts for the generator's lag.
                    lag.reset();
                }
                Some("totals") => {
                    let path = words.next().context("totals without a path")?;
                    publish_secs = words.next().context("totals without seconds")?.parse()?;
                    return read_totals(Path::new(path));
                }
                _ => bail!("unknown control line {line:?}"),
            }
        }
    }
    .await;
    (result, publish_secs)
}

fn read_totals(path: &Path) -> anyhow::Result<Totals> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not totals", path.display()))
}
