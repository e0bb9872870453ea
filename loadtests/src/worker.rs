//! The load worker protocol, both ends: a worker is one `odin-load worker`
//! process of a run over several ([`crate::fleet`]); the coordinator starts
//! it ([`spawn`]) with its share of the scenario, and the worker's run
//! ([`crate::run`]) hands its publish phase to [`publish_phase`].
//!
//! Worker → coordinator (stdout): `odin-worker: ready <live> <failed>
//! <ramp-start-millis> <all-in-millis>`.
//! Coordinator → worker (stdin): `publish <millis>`, then
//! `totals <path> <publish-seconds>`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use odin_publisher::Totals;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::lag::LagMonitor;
use crate::options::RunOptions;
use crate::scenario::Scenario;
use crate::user::LoadContext;

/// Source addresses per worker.
const SOURCES_PER_WORKER: u8 = 8;

/// The line a worker prints once its users are in.
const READY: &str = "odin-worker: ready";

/// Where a worker's users connect and its publisher's NATS is.
pub(crate) struct WorkerTarget<'a> {
    /// `ws://host:port/ws`.
    pub(crate) ws_url: &'a str,
    /// The NATS the coordinator's publisher publishes to.
    pub(crate) nats_url: &'a str,
    /// The secret the users' tokens are signed with.
    pub(crate) jwt_secret: &'a str,
}

/// One worker process and its control pipes.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) child: Child,
    stdin: ChildStdin,
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    pub(crate) dir: PathBuf,
}

impl Worker {
    /// Sends one control line.
    pub(crate) async fn send(&mut self, line: &str) -> anyhow::Result<()> {
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
    pub(crate) async fn ready(&mut self) -> anyhow::Result<(f64, f64)> {
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

/// Starts worker `index` (this binary's `worker` command) on its share
/// `part` of the scenario, its users connecting to `to`.
pub(crate) async fn spawn(
    index: usize,
    part: &Scenario,
    opts: &RunOptions,
    to: &WorkerTarget<'_>,
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
        .args(["--url", to.ws_url, "--nats-url", to.nats_url])
        .args(["--source-ips", &sources.join(",")])
        .arg("--connect-timeout")
        .arg(humantime::format_duration(opts.connect_timeout).to_string())
        .arg("--max-generator-lag")
        .arg(humantime::format_duration(opts.max_generator_lag).to_string())
        .env("ODIN_JWT_SECRET", to.jwt_secret)
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

/// A worker's publish phase: says its users are in, takes the publish start
/// from the coordinator, and later the publisher's totals (after the
/// drain). Returns the totals and how long publishing took.
pub(crate) async fn publish_phase(
    ctx: &LoadContext,
    scenario: &Scenario,
    ramp_started_ms: f64,
    lag: &LagMonitor,
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
