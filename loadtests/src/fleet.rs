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
//! publisher's totals over the worker protocol (their pipes); each judges its
//! share and writes a `report.json`, which [`crate::merge`] folds into one
//! report with one verdict. [`crate::worker`] owns both ends of that protocol.
//!
//! With [`RunOptions::remote`] the workers are not started here: they run
//! anywhere (other hosts, containers), join the run over NATS and are told
//! their share there; the coordinator then runs the same steps.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use odin_publisher::PublisherConfig;

use crate::options::{RunOptions, SetupError};
use crate::report::{FleetSummary, RunReport};
use crate::scenario::{MAX_USERS_PER_PROCESS, Scenario};
use crate::stack::{ServerKind, Stack, Target, Topology, cluster};
use crate::worker::bus::{self, Desk, Subjects};
use crate::worker::message::ToWorker;
use crate::worker::{self, ShareTerms, WorkerEnd};

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
    if opts.remote.is_some() && matches!(opts.target, Target::Embedded { .. }) {
        return Err(SetupError(anyhow::anyhow!(
            "--remote-workers needs --url: workers on other hosts load gateways they can reach, \
             not ones this run starts on its loopback"
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
    let processes = opts.remote.as_ref().map_or(scenario.processes, |r| r.count);
    if opts.remote.is_none() && processes > 250 {
        bail!("at most 250 load processes (source addresses 127.0.<w+1>.x each)");
    }
    let stats_before = stack.stats().await;
    let before = stack.sample();
    let spawned = Instant::now();
    // The desk answers late workers (refusing them) until the run is over.
    let (mut workers, _desk) = start_workers(scenario, opts, stack, processes).await?;
    let limit = scenario.ramp_time() + opts.connect_timeout + Duration::from_secs(60);
    // The ramp as the workers saw it: from the first one's launch of its
    // users to the last one's last subscribe (process start-up excluded).
    let (mut ramp_from, mut ramp_to) = (f64::INFINITY, 0.0_f64);
    for worker in &mut workers {
        let ready = tokio::time::timeout(limit, worker.ready())
            .await
            .with_context(|| format!("{} was not ready within {limit:?}", worker.name()))??;
        if let Some(clock) = ready.clock {
            eprintln!(
                "odin-load: {}: {} users in; its clock is {:+.3} ms off ours, within {:.3} ms ({})",
                worker.name(),
                ready.live,
                clock.offset_ms,
                clock.round_trip_ms / 2.0,
                if clock.applied {
                    "its latencies are corrected by it"
                } else {
                    "taken as none"
                }
            );
        }
        ramp_from = ramp_from.min(ready.ramp_started_ms);
        ramp_to = ramp_to.max(ready.all_in_ms);
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
        worker.send(&ToWorker::Publish { started_ms }).await?;
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
    let message = ToWorker::Totals {
        totals: Box::new(totals),
        publish_secs,
    };
    for worker in &mut workers {
        worker.send(&message).await?;
    }
    let mut reports = Vec::with_capacity(processes);
    for worker in &mut workers {
        let report = tokio::time::timeout(Duration::from_secs(120), worker.report())
            .await
            .with_context(|| format!("{} sent no report within 120 s", worker.name()))??;
        if let WorkerEnd::Remote(remote) = worker {
            // Kept beside the merged report, as a local worker's folder is.
            let dir = opts.out_dir.join(format!("worker-{}", remote.index));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
        }
        reports.push(report);
    }
    let mut report = crate::merge::merge_with_store(reports, store)?;
    report.target = match &opts.remote {
        None => format!("{}, {processes} load processes", stack.describe()),
        Some(remote) => format!(
            "{}, {processes} load workers joined over NATS (run {})",
            remote.ws_urls.join(" "),
            remote.run_id
        ),
    };
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
    if let Some(remote) = &opts.remote {
        // What ran, not what the scenario file says for a run of its own.
        report.scenario.processes = processes;
        report.scenario.gateways = remote.ws_urls.len();
    }
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

/// The run's workers: local processes started here, or (with
/// [`RunOptions::remote`]) workers that join over NATS, each told its share.
/// With remote workers, also the desk that keeps answering joins.
async fn start_workers(
    scenario: &Scenario,
    opts: &RunOptions,
    stack: &Stack,
    count: usize,
) -> anyhow::Result<(Vec<WorkerEnd>, Option<Desk>)> {
    let local_url = [stack.ws_url().to_owned()];
    let terms = ShareTerms {
        ws_urls: opts.remote.as_ref().map_or(&local_url[..], |r| &r.ws_urls),
        jwt_secret: stack.jwt_secret(),
        connect_timeout: opts.connect_timeout,
        max_generator_lag: opts.max_generator_lag,
    };
    let shares = worker::shares(scenario, count, &terms);
    let Some(remote) = &opts.remote else {
        let mut workers = Vec::with_capacity(count);
        for share in &shares {
            let dir = opts.out_dir.join(format!("worker-{}", share.index));
            let local = worker::pipes::spawn(share, &dir, stack.nats_url()).await?;
            workers.push(WorkerEnd::Local(local));
        }
        return Ok((workers, None));
    };
    let url = remote.control_nats.as_deref().unwrap_or(stack.nats_url());
    let subjects = Subjects::of(&remote.run_id)?;
    let deadline = tokio::time::Instant::now() + remote.join_timeout;
    let client = bus::connect(url, deadline).await?;
    let mut desk = Desk::open(&client, &subjects, shares).await?;
    eprintln!(
        "odin-load: waiting up to {} for {count} load workers on {url} (as this host reaches it): \
         start each with `odin-load worker --nats <that NATS as the worker reaches it> --run {}`",
        humantime::format_duration(remote.join_timeout),
        remote.run_id
    );
    let workers = desk
        .wait_for_all(remote.join_timeout)
        .await
        .with_context(|| format!("run {} on {url}", remote.run_id))?;
    Ok((
        workers.into_iter().map(WorkerEnd::Remote).collect(),
        Some(desk),
    ))
}
