//! Runs beyond one process: several `odin-server` gateways sharing one
//! WebSocket port (`--reuse-port`) and several `odin-load worker` processes,
//! each holding at most [`MAX_USERS_PER_PROCESS`] sockets (the file limit is
//! 20,000 per process) from source addresses of its own, 127.0.<w+1>.1–8.
//! Spread that thin (about 2,000 connections per address at 100,000 users),
//! no address runs short of ephemeral ports, and the kernel's search for a
//! free one on connect stays short (at 17,000 connections from one address
//! it took a quarter of the machine's CPU in the ramp).
//!
//! The coordinator brings NATS and the gateways up ([`crate::stack`]), splits the users over the
//! workers (numbered across workers, so channels spread as in one process),
//! waits until every worker reports its users in, then runs the publisher
//! once for all. Workers learn the publish start and, after the drain, the
//! publisher's totals over a line protocol on their stdin; each judges its
//! share and writes a `report.json`, which [`crate::merge`] folds into one
//! report with one verdict. [`crate::worker`] owns both ends of that protocol.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use odin_publisher::PublisherConfig;

use crate::options::{RunOptions, SetupError};
use crate::report::{FleetSummary, RunReport};
use crate::scenario::{MAX_USERS_PER_PROCESS, Scenario};
use crate::stack::{ServerKind, Stack, Target, Topology, cluster};
use crate::worker::{self, WorkerTarget};

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
    if let Target::Embedded {
        server: ServerKind::Forwarder,
        ..
    } = opts.target
    {
        return Err(SetupError(anyhow::anyhow!(
            "--server forwarder runs one forwarder for one load process: \
             a run over several processes or gateways needs odin-server"
        )));
    }
    let mut stack = Stack::start(&opts.target, &Topology::of(scenario))
        .await
        .map_err(SetupError)?;
    let result = coordinate(scenario, opts, &mut stack).await;
    stack.shutdown(Some(&opts.out_dir)).await;
    let mut report = result.map_err(SetupError)?;
    report.started_at = started_at;
    report.duration_secs = wall.elapsed().as_secs_f64();
    Ok(report)
}

async fn coordinate(
    scenario: &Scenario,
    opts: &RunOptions,
    stack: &mut Stack,
) -> anyhow::Result<RunReport> {
    let processes = scenario.processes;
    if processes > 250 {
        bail!("at most 250 load processes (source addresses 127.0.<w+1>.x each)");
    }
    let stats_before = stack.stats().await;
    let before = stack.sample();
    let spawned = Instant::now();
    let mut workers = Vec::with_capacity(processes);
    let mut first_user = 0;
    let target = WorkerTarget {
        ws_url: stack.ws_url(),
        nats_url: stack.nats_url(),
        jwt_secret: stack.jwt_secret(),
    };
    for index in 0..processes {
        let users = scenario.users / processes + usize::from(index < scenario.users % processes);
        let mut part = scenario.clone();
        part.users = users;
        part.first_user = first_user;
        part.processes = 1;
        part.gateways = 1;
        part.ramp_rate = scenario.ramp_rate * users as f64 / scenario.users as f64;
        first_user += users;
        workers.push(worker::spawn(index, &part, opts, &target).await?);
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
    let idle = stack.sample();
    let idle_stats = stack.stats_each().await;
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
        nats_url: stack.nats_url().to_owned(),
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
            let Some(cluster) = stack.cluster() else {
                return anyhow::Ok(None);
            };
            let node = cluster::node_to_stop(cluster, scenario.stop_nats_leader).await;
            eprintln!(
                "odin-load: stopping NATS node {node}, {} into publishing",
                humantime::format_duration(after)
            );
            cluster
                .node(node)
                .stop()
                .await
                .with_context(|| format!("cannot stop NATS node {node}"))?;
            return Ok(Some(node));
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
    let after = stack.sample();
    let generator_wall = publish_wall.elapsed();
    let stats_after = stack.stats().await;
    let store = match stack.cluster() {
        None => None,
        Some(cluster) => Some(cluster::check_stored_prices(cluster, &totals).await),
    };
    let store = match store {
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
    report.target = format!("{}, {processes} load processes", stack.describe());
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
    if stack.gateway_count() > 0 {
        report.server = crate::summary::server_summary(
            stats_before,
            stats_after,
            crate::summary::ServerSamples {
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
        crate::judge::report(&mut report)?;
    }
    let live = report.users.live.max(1) as f64;
    report.fleet = Some(FleetSummary {
        gateways: stack.gateway_count(),
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
