//! `odin-load soak` (`make load-soak`): does the server give back what a
//! client or a token took once they are gone?
//!
//! Every other scenario holds its users for the whole run, so a leak per
//! connection or per token never shows. The soak starts the embedded stack
//! (its own NATS, the `odin-server` release binary as a child process, with a
//! small token table, `--max-tokens 2000` by default, and a de-dup window of
//! a minute, `--dedup-window 60s`, so that it fills within the warm-up) and
//! for `--duration`
//! (10 minutes by default) churns it:
//!
//! - **tokens**: a publisher sends `--rate` price events a second (300)
//!   over `--tokens-per-generation` ids (500) that move to a new generation
//!   every `--generation-period` (10 s): 50 new tokens a second, so the table
//!   fills within a minute and then evicts as fast as it gains;
//! - **connections and subscriptions**: `--clients` tasks (300) each loop
//!   until the deadline: connect, subscribe to 1–4 tokens of the current
//!   generation, read for 0.5–5 s, unsubscribe one and subscribe two others,
//!   ping 3 times in 10, read 0.2–1.5 s, leave by a close handshake or by
//!   dropping the socket (half each). One cycle in 33 is a half-open
//!   connection (a request head never finished, dropped after 0.5–3 s) and
//!   one in 33 a bad token (must be `401`). About 80 handshakes and 450
//!   subscription changes a second with the defaults.
//!
//! Every `--sample-every` (5 s) it reads the server's RSS (`/proc/<pid>/status`
//! through [`crate::sysstat`]), its open descriptors (`/proc/<pid>/fd`) and
//! `/stats`; after the churn it waits for the server to settle and reads
//! them again. The verdict ([`verdict`]) is that RSS is flat after the
//! warm-up (a fifth of the run, at most 2 minutes): the mean of the last
//! window (a fifth, at most 1 minute) at most 8 MiB or 15% above the mean
//! of the window right after the warm-up, and (on runs with at least 5
//! minutes after the warm-up) a least-squares slope of at most 60 MiB an
//! hour; descriptors never above start-up + clients + 64, and back within 8
//! of start-up once the churn stopped; the token table turned over. With the
//! defaults the two windows' middles are 420 s apart, about 34,000
//! handshakes: a leak of 1 KiB per connection shows as ~33 MiB of growth and
//! ~280 MiB/h of slope, and the 8 MiB allowance is crossed by ~250 bytes per
//! connection.
//!
//! The samples print as a table while the run goes; `soak.json` (samples,
//! counters, figures, verdict) goes into the run folder. Exit 0 pass, 1 a
//! check failed, 3 setup error.

pub mod churn;
pub mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use odin_server::auth::{AuthConfig, mint_token};
use serde::Serialize;
use tokio::time::Instant;

use crate::stack::{ServerKind, Stack, Target, Topology};
use churn::{Churn, Counters};
use verdict::{Check, FdFigures, MemoryFigures, Sample, Thresholds};

/// `odin-load soak`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the churn runs (e.g. `10m`, `90s`).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent simulated clients.
    #[arg(long, default_value_t = 300)]
    pub clients: usize,
    /// Price events published per second.
    #[arg(long, default_value_t = 300.0)]
    pub rate: f64,
    /// Token ids of one generation.
    #[arg(long, default_value_t = 500)]
    pub tokens_per_generation: u64,
    /// How often the publisher moves to a new generation of token ids.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub generation_period: Duration,
    /// The server's token budget (`--max-tokens`).
    #[arg(long, default_value_t = 2000)]
    pub max_tokens: u64,
    /// The server's de-dup window (`--dedup-window`); it must fill within
    /// the warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,
    /// How often the server is sampled.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// Override: the start of the run left out of the memory checks
    /// (default a fifth of the run, at most 2 minutes).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Override: RSS growth always allowed, in MiB.
    #[arg(long)]
    pub rss_growth_mib: Option<f64>,
    /// Override: RSS slope allowed, in MiB an hour.
    #[arg(long)]
    pub rss_slope_mib_per_hour: Option<f64>,
    /// Extra flag for odin-server; repeatable (`--server-arg=--max-queue-bytes=65536`).
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// Folder for the run's files (default `runs/<time>-soak`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What `soak.json` holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SoakReport<'a> {
    duration_seconds: f64,
    clients: usize,
    rate: f64,
    tokens_per_generation: u64,
    generation_period_seconds: f64,
    max_tokens: u64,
    thresholds: Thresholds,
    samples: &'a [Sample],
    settled: Option<Sample>,
    totals: Totals,
    memory: MemoryFigures,
    fds: FdFigures,
    checks: &'a [Check],
    errors: Vec<String>,
    passed: bool,
}

/// The churn's counters at the end.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    connects: u64,
    clean_closes: u64,
    drops: u64,
    half_open: u64,
    refused: u64,
    subscription_changes: u64,
    pings: u64,
    frames: u64,
    published: u64,
    errors: u64,
}

impl Totals {
    fn of(c: &Counters) -> Totals {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            connects: r(&c.connects),
            clean_closes: r(&c.clean_closes),
            drops: r(&c.drops),
            half_open: r(&c.half_open),
            refused: r(&c.refused),
            subscription_changes: r(&c.subscription_changes),
            pings: r(&c.pings),
            frames: r(&c.frames),
            published: r(&c.published),
            errors: r(&c.errors),
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs the soak; the exit code is its verdict's.
pub async fn run(args: SoakArgs) -> ExitCode {
    match soak(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("odin-load soak: setup error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// Reads the server once.
async fn sample(stack: &Stack, pid: u32, t: f64, counters: &Counters) -> anyhow::Result<Sample> {
    let proc = crate::sysstat::sample(Some(pid)).context("the server's /proc is gone")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .context("cannot list the server's descriptors")?
        .count() as u64;
    let stats = stack.stats().await.context("no /stats from the server")?;
    Ok(Sample {
        t_seconds: t,
        rss_bytes: proc.rss_bytes,
        fds,
        connections: stats.connection_count,
        tokens_held: stats.tokens_held,
        tokens_evicted: stats.tokens_evicted,
        messages_delivered: stats.messages_delivered,
        connects: counters.connects.load(Ordering::Relaxed),
        connects_per_second: 0.0,
        subscription_changes: counters.subscription_changes.load(Ordering::Relaxed),
        published: counters.published.load(Ordering::Relaxed),
    })
}

fn header() {
    println!(
        "{:>7} {:>9} {:>6} {:>6} {:>7} {:>9} {:>11} {:>10} {:>10}",
        "t (s)",
        "RSS MiB",
        "fds",
        "conns",
        "tokens",
        "evicted",
        "delivered",
        "connects",
        "connects/s"
    );
}

fn row(s: &Sample) {
    println!(
        "{:>7.0} {:>9.1} {:>6} {:>6} {:>7} {:>9} {:>11} {:>10} {:>10.1}",
        s.t_seconds,
        s.rss_bytes as f64 / MIB,
        s.fds,
        s.connections,
        s.tokens_held,
        s.tokens_evicted,
        s.messages_delivered,
        s.connects,
        s.connects_per_second
    );
}

async fn soak(args: SoakArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.duration >= Duration::from_secs(30),
        "--duration must be at least 30s"
    );
    anyhow::ensure!(
        args.clients > 0 && args.rate > 0.0,
        "--clients and --rate must be positive"
    );
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(':', "");
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{stamp}-soak")));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    // Every client holds at most one socket; the load tool's own limit must
    // allow them all (the server's is set by Stack from the count).
    crate::limits::ensure_files_for(args.clients)?;

    // The ingest's de-dup window holds every nonce of the last
    // `--dedup-window` (5 minutes by default: 90,000 at 300 events/s, still
    // filling, with its table's steps, 3 minutes after a 2-minute warm-up).
    // A minute fills within the warm-up, so what grows after it is not the
    // working set.
    let mut server_args = vec![
        "--max-tokens".to_owned(),
        args.max_tokens.to_string(),
        "--dedup-window".to_owned(),
        format!("{}s", args.dedup_window.as_secs().max(1)),
    ];
    server_args.extend(args.server_args.iter().cloned());
    let target = Target::Embedded {
        server: ServerKind::Odin,
        server_args,
    };
    let stack = Stack::start(&target, &Topology::single(args.clients)).await?;
    let result = drive(&args, &stack, &out).await;
    stack.shutdown(None).await;
    result
}

async fn drive(args: &SoakArgs, stack: &Stack, out: &std::path::Path) -> anyhow::Result<bool> {
    let pid = stack
        .server_pid()
        .context("the embedded server has no pid")?;
    let mut th = Thresholds::for_duration(args.duration.as_secs_f64());
    if let Some(w) = args.warmup {
        th.warmup_seconds = w.as_secs_f64();
    }
    if let Some(m) = args.rss_growth_mib {
        th.rss_growth_mib = m;
    }
    if let Some(s) = args.rss_slope_mib_per_hour {
        th.rss_slope_mib_per_hour = s;
    }
    let wrong = AuthConfig::with_secret("not-the-servers-secret-0123456789abcdef");
    let deadline = Instant::now() + args.duration;
    let churn = Arc::new(Churn {
        ws_url: stack.ws_url().to_owned(),
        token: stack.token_source(),
        bad_token: mint_token(&wrong, "soak-intruder", Duration::from_secs(3600)),
        generation: AtomicU64::new(0),
        tokens_per_generation: args.tokens_per_generation.max(1),
        deadline,
        counters: Counters::default(),
    });
    println!(
        "odin-load soak: {} against {} (pid {pid}), {} clients, {} price events/s over {} new token ids every {:?}, --max-tokens {}; output {}",
        humantime::format_duration(args.duration),
        stack.describe(),
        args.clients,
        args.rate,
        args.tokens_per_generation,
        args.generation_period,
        args.max_tokens,
        out.display()
    );
    let start = Instant::now();
    let first = sample(stack, pid, 0.0, &churn.counters).await?;
    let fd_start = first.fds;
    header();
    row(&first);

    let publisher = tokio::spawn(churn::publish(
        churn.clone(),
        stack.nats_url().to_owned(),
        args.rate,
        args.generation_period,
    ));
    let clients: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(churn::client(churn.clone())))
        .collect();

    let mut samples = vec![first];
    let mut next = start + args.sample_every;
    while next <= deadline + Duration::from_millis(50) {
        tokio::time::sleep_until(next).await;
        let t = start.elapsed().as_secs_f64();
        let mut s = sample(stack, pid, t, &churn.counters).await?;
        let prev = samples.last().expect("the first sample");
        s.connects_per_second = (s.connects - prev.connects) as f64 / (t - prev.t_seconds);
        row(&s);
        samples.push(s);
        next += args.sample_every;
    }
    let end_seconds = samples.last().map_or(0.0, |s| s.t_seconds);

    // Everything stops by itself at the deadline; give it a little longer.
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    match tokio::time::timeout(Duration::from_secs(10), publisher).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.context("the soak publisher failed")),
        Ok(Err(e)) => anyhow::bail!("the soak publisher panicked: {e}"),
        Err(_) => anyhow::bail!("the soak publisher did not stop"),
    }
    // Settle: the server notices the last dropped sockets and half-open
    // requests (its handshake deadline), then its descriptors come back.
    let settle_until = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = sample(stack, pid, start.elapsed().as_secs_f64(), &churn.counters).await?;
        if (s.connections == 0 && s.fds <= fd_start + th.fd_end_margin)
            || Instant::now() >= settle_until
        {
            break s;
        }
    };
    println!("settled:");
    row(&settled);

    let memory = verdict::memory(&samples, end_seconds, &th);
    let fds = FdFigures {
        start: fd_start,
        peak: samples.iter().map(|s| s.fds).max().unwrap_or(fd_start),
        end: settled.fds,
    };
    let mut checks = verdict::judge(
        &memory,
        &fds,
        args.clients as u64,
        end_seconds - th.warmup_seconds,
        settled.tokens_evicted,
        &th,
    );
    checks.push(Check {
        name: "connections after the churn".into(),
        passed: Some(settled.connections == 0),
        detail: format!("{} open (must be 0)", settled.connections),
    });
    let totals = Totals::of(&churn.counters);
    // A few failed cycles under load are noise; many mean the churn did
    // not happen as described.
    let error_limit = (totals.connects / 100).max(10);
    checks.push(Check {
        name: "churn errors".into(),
        passed: Some(totals.errors <= error_limit),
        detail: format!(
            "{} unexpected (at most {error_limit}); {} handshakes, {} closes, {} drops, {} half-open, {} refused (401), {} subscription changes, {} pings, {} published",
            totals.errors,
            totals.connects,
            totals.clean_closes,
            totals.drops,
            totals.half_open,
            totals.refused,
            totals.subscription_changes,
            totals.pings,
            totals.published
        ),
    });
    let passed = checks.iter().all(|c| c.passed != Some(false));
    println!();
    for c in &checks {
        let mark = match c.passed {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "info",
        };
        println!("{mark}  {}: {}", c.name, c.detail);
    }
    let errors = churn.counters.first_errors.lock().clone();
    for e in &errors {
        println!("      error: {e}");
    }
    let report = SoakReport {
        duration_seconds: args.duration.as_secs_f64(),
        clients: args.clients,
        rate: args.rate,
        tokens_per_generation: args.tokens_per_generation,
        generation_period_seconds: args.generation_period.as_secs_f64(),
        max_tokens: args.max_tokens,
        thresholds: th,
        samples: &samples,
        settled: Some(settled),
        totals,
        memory,
        fds,
        checks: &checks,
        errors,
        passed,
    };
    let path = out.join("soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "\n{}: soak.json in {}",
        if passed { "PASS" } else { "FAIL" },
        out.display()
    );
    Ok(passed)
}
