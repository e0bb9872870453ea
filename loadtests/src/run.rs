//! One scenario from start to verdict: bring the target up, ramp the Goose
//! users, publish for the hold once every user is subscribed, let deliveries
//! drain, then account, judge and report.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use goose::config::GooseConfiguration;
use goose::prelude::*;
use odin_harness::publisher::PublisherProcess;
use odin_publisher::{PublisherConfig, Totals};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::histogram::{encode_histogram, latency_histogram};
use crate::judge::{self, Figures};
use crate::lag::LagMonitor;
use crate::observer::{RunClock, Tracked};
use crate::options::{RunOptions, SetupError};
use crate::report::{
    Accounting, GeneratorSummary, GooseVerdict, LatencySummary, Outcome, PublisherSummary,
    REPORT_VERSION, RunReport, TimelinePoint, UsersSummary,
};
use crate::scenario::Scenario;
use crate::stack::{Stack, Topology};
use crate::summary::{ServerSamples, server_summary};
use crate::sysstat;
use crate::timeline::Timeline;
use crate::user::{LoadContext, METHOD, UserResult};

/// Runs `scenario` and returns its report (the verdict is in
/// [`RunReport::outcome`]).
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunReport, SetupError> {
    let started_at = now_rfc3339();
    let wall = Instant::now();
    crate::limits::ensure_files_for(scenario.users).map_err(SetupError)?;
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create {}", opts.out_dir.display()))
        .map_err(SetupError)?;
    let stack = Stack::start(&opts.target, &Topology::of(scenario))
        .await
        .map_err(SetupError)?;
    let result = run_on(scenario, opts, &stack, started_at, wall).await;
    stack.shutdown(None).await;
    result
}

async fn run_on(
    scenario: &Scenario,
    opts: &RunOptions,
    stack: &Stack,
    started_at: String,
    wall: Instant,
) -> Result<RunReport, SetupError> {
    let token_ids: Vec<String> = (0..scenario.tokens)
        .map(|rank| odin_publisher::universe::token_id(rank).to_string())
        .collect();
    let ctx = Arc::new(LoadContext {
        ws_url: stack.ws_url().to_owned(),
        token: stack.token_source(),
        scenario: scenario.clone(),
        token_ids,
        clock: Arc::new(RunClock::default()),
        timeline: Timeline::new(),
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        clients: Mutex::new(Vec::new()),
        stop: CancellationToken::new(),
        finished: CancellationToken::new(),
        connect_timeout: opts.connect_timeout,
        source_ips: opts.source_ips.clone(),
        tls: stack.tls().cloned(),
    });
    let stats_before = stack.stats().await;
    let server_before = stack.sample();
    let lag_stop = CancellationToken::new();
    let lag = LagMonitor::start(lag_stop.clone());

    let attack = build_attack(scenario, opts, stack, ctx.clone()).map_err(SetupError)?;
    let ramp_started_ms = odin_protocol::time::now_millis();
    let goose = tokio::spawn(attack.execute());
    let progress = opts
        .progress
        .then(|| crate::progress::start(ctx.clone(), scenario.clone()));

    // Publish once every user is in (or has given up).
    let in_at_ramp_end = wait_for_users(&ctx, scenario, opts).await;
    lag.reset();
    let generator_before = sysstat::sample(None).unwrap_or_default();
    let server_at_publish = stack.sample();
    let publish_wall = Instant::now();
    let (publisher_result, publish_secs) = if let Some(link) = &opts.worker {
        crate::worker::publish_phase(link, &ctx, scenario, ramp_started_ms, &lag).await
    } else {
        let totals = publish(scenario, stack, &ctx).await;
        let publish_secs = publish_wall.elapsed().as_secs_f64();
        tokio::time::sleep(scenario.drain).await;
        (totals, publish_secs)
    };
    let generator_after = sysstat::sample(None).unwrap_or_default();
    // Taken while every user is still connected.
    let server_after = stack.sample();
    let generator_wall = publish_wall.elapsed();
    ctx.finished.cancel();

    let goose_result = goose
        .await
        .context("the Goose run panicked")
        .map_err(SetupError)?;
    lag_stop.cancel();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    let results = ctx.collect().await;
    let stats_after = stack.stats().await;
    let totals = match publisher_result {
        Ok(t) => t,
        Err(e) => return Err(SetupError(e.context("the publisher failed"))),
    };

    let (goose_metrics, goose_failed) = match goose_result {
        Ok(m) => (m, Vec::new()),
        Err(GooseError::ThresholdsFailed { failed, metrics }) => (*metrics.0, failed),
        Err(e) => return Err(SetupError(anyhow::anyhow!("Goose failed: {e}"))),
    };

    // Accounting.
    let accounting = account(&results, &totals, publish_secs);
    let mut latency = latency_histogram();
    let mut latency_stamped = latency_histogram();
    for r in &results {
        latency.add(&r.observer.latency).expect("same bounds");
        latency_stamped
            .add(&r.observer.latency_stamped)
            .expect("same bounds");
    }
    let latency_unscheduled = results.iter().map(|r| r.observer.unscheduled).sum();
    let timeline = ctx
        .timeline
        .seconds()
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.is_empty())
        .map(|(second, h)| TimelinePoint {
            second,
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
        })
        .collect();
    let users = users_summary(scenario, &ctx, &results, &goose_metrics);

    let deliveries = accounting.delivered.max(1) as f64;
    let mut server = server_summary(
        stats_before,
        stats_after,
        ServerSamples {
            before_ramp: server_before,
            publish_start: server_at_publish,
            publish_end: server_after,
        },
        generator_wall,
        deliveries,
        users.live,
    );
    server.binary = stack.server_kind().map(|k| k.binary().to_owned());
    let generator = GeneratorSummary {
        cpu_share: sysstat::cpu_share(&generator_before, &generator_after, generator_wall),
        cpu_per_delivery_us: (generator_after.cpu_seconds - generator_before.cpu_seconds).max(0.0)
            * 1e6
            / deliveries,
        lag_p99_us: lag.quantile_us(0.99),
        lag_max_us: lag.max_us(),
        peak_rss_bytes: generator_after.peak_rss_bytes,
    };

    // Verdicts.
    let thresholds = judge::rules(
        &scenario.thresholds,
        &Figures {
            latency: &latency,
            latency_stamped: &latency_stamped,
            accounting: &accounting,
            users: &users,
            server: &server,
        },
    )
    .map_err(SetupError)?;
    let goose_thresholds: Vec<GooseVerdict> = goose_metrics
        .thresholds
        .iter()
        .map(|t| GooseVerdict {
            rule: t.rule.clone(),
            observed: t.observed.clone(),
            passed: t.passed,
        })
        .collect();
    let invalid = invalid_reason(scenario, opts, &users, &generator, &totals, in_at_ramp_end);
    let outcome = match invalid {
        Some(reason) => Outcome::Invalid { reason },
        None if thresholds.iter().all(|v| v.passed)
            && goose_thresholds.iter().all(|v| v.passed)
            && goose_failed.is_empty() =>
        {
            Outcome::Pass
        }
        None => Outcome::Fail,
    };

    Ok(RunReport {
        version: REPORT_VERSION,
        scenario: scenario.clone(),
        started_at,
        duration_secs: wall.elapsed().as_secs_f64(),
        target: stack.describe(),
        processes: 1,
        users,
        publisher: PublisherSummary {
            asked_rate: scenario.publish_rate,
            achieved_rate: totals.achieved_rate,
            elapsed_secs: totals.elapsed_secs,
            events: serde_json::to_value(totals.events).unwrap_or_default(),
            summary: totals.summary_line(),
        },
        accounting,
        latency: LatencySummary::of(&latency),
        latency_histogram: encode_histogram(&latency),
        latency_stamped: LatencySummary::of(&latency_stamped),
        latency_stamped_histogram: encode_histogram(&latency_stamped),
        latency_unscheduled,
        timeline,
        server,
        generator,
        thresholds,
        goose_thresholds,
        baseline: Vec::new(),
        outcome,
        fleet: None,
    })
}

/// The Goose attack: our scenario, with users, ramp and run time from the
/// scenario, reports into the run folder, and any extra Goose flags.
fn build_attack(
    scenario: &Scenario,
    opts: &RunOptions,
    stack: &Stack,
    ctx: Arc<LoadContext>,
) -> anyhow::Result<GooseAttack> {
    let host = format!(
        "http://{}",
        stack
            .ws_url()
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or("127.0.0.1")
    );
    // Goose's run time counts from when every user is started; users wait in
    // their on-stop transaction until publishing and draining are over, so
    // this only has to be long enough for the hold to begin.
    let run_time = (scenario.hold + scenario.drain).as_secs().max(1) + 1;
    let out = opts.out_dir.display().to_string();
    let mut args: Vec<String> = vec![
        "--host".into(),
        host,
        "--users".into(),
        scenario.users.to_string(),
        "--increase-rate".into(),
        format!("{}", scenario.ramp_rate),
        "--run-time".into(),
        format!("{run_time}s"),
        "--report-file".into(),
        format!("{out}/goose-report.html"),
        "--report-file".into(),
        format!("{out}/goose-report.json"),
        "--report-file".into(),
        format!("{out}/goose-report.md"),
        "--no-telnet".into(),
        "--no-print-metrics".into(),
        "--no-reset-metrics".into(),
        "--no-threshold-abort".into(),
        "--quiet".into(),
    ];
    for rule in &scenario.goose_thresholds {
        args.push("--threshold".into());
        args.push(rule.clone());
    }
    args.extend(opts.goose_args.iter().cloned());
    let config = GooseConfiguration::parse_args_default(&args)
        .map_err(|e| anyhow::anyhow!("invalid Goose settings {args:?}: {e}"))?;
    Ok(GooseAttack::initialize_with_config(config)?.register_scenario(crate::user::scenario(ctx)?))
}

/// Waits until every user is subscribed or has failed, or the ramp's time
/// (ramp, connect timeout and 5 s) is up; returns how many were in by then.
async fn wait_for_users(ctx: &LoadContext, scenario: &Scenario, opts: &RunOptions) -> usize {
    let limit = scenario.ramp_time() + opts.connect_timeout + Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let done = ctx.subscribed.load(Ordering::Acquire) + ctx.failed.load(Ordering::Acquire);
        if done >= scenario.users || tokio::time::Instant::now() >= deadline {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the publisher for the hold and returns what it published.
async fn publish(scenario: &Scenario, stack: &Stack, ctx: &LoadContext) -> anyhow::Result<Totals> {
    let config = PublisherConfig {
        nats_url: stack.nats_url().to_owned(),
        tokens: scenario.tokens,
        rate: scenario.publish_rate,
        duration: Some(scenario.hold),
        tick: scenario.tick,
        ..PublisherConfig::default()
    };
    // Every event the publisher makes is younger than this: it belongs to
    // the run. (Marking it after the publisher reports "connected" would race
    // with its first events.)
    ctx.clock
        .set_publish_started(odin_protocol::time::now_millis(), scenario.warmup);
    let publisher = PublisherProcess::start(&config).await?;
    publisher
        .wait(scenario.hold + Duration::from_secs(30))
        .await
}

/// Deliveries against what was published, per user, token and kind.
fn account(results: &[UserResult], totals: &Totals, publish_secs: f64) -> Accounting {
    let counts = |map: &std::collections::BTreeMap<String, u64>| -> HashMap<String, u64> {
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    };
    let published = [
        (Tracked::Price, counts(&totals.price_updates_by_token)),
        (Tracked::Volume, counts(&totals.volume_updates_by_token)),
        (Tracked::Trade, counts(&totals.trades_by_token)),
    ];
    let mut acc = Accounting {
        kinds: vec![
            "price_update".into(),
            "volume_update".into(),
            "trade_executed".into(),
        ],
        ..Accounting::default()
    };
    for r in results.iter().filter(|r| r.live) {
        for (kind, by_token) in &published {
            for (token, delivered) in r.observer.delivered(*kind) {
                let expected = by_token.get(token).copied().unwrap_or(0);
                acc.expected += expected;
                acc.delivered += delivered;
                acc.lost += expected.saturating_sub(delivered);
            }
        }
        for (token, at) in r.observer.last_price_at() {
            if let Some(&last) = totals.last_price_at_by_token.get(token) {
                acc.final_prices += 1;
                if at < last {
                    acc.stale_final_prices += 1;
                }
            }
        }
        acc.duplicates += r.observer.duplicates;
        acc.out_of_order += r.observer.out_of_order;
        acc.before_run += r.observer.before_run;
    }
    acc.throughput_per_sec = if publish_secs > 0.0 {
        acc.delivered as f64 / publish_secs
    } else {
        0.0
    };
    acc
}

fn users_summary(
    scenario: &Scenario,
    ctx: &LoadContext,
    results: &[UserResult],
    goose: &GooseMetrics,
) -> UsersSummary {
    let request = |name: &str| {
        goose
            .requests
            .values()
            .find(|r| r.path == name && r.custom_method == METHOD)
            .map(|r| {
                let t = &r.raw_data;
                LatencySummary {
                    count: t.counter as u64,
                    mean_us: if t.counter == 0 {
                        0.0
                    } else {
                        t.total_time_us as f64 / t.counter as f64
                    },
                    p50_us: t.percentile_us(0.50),
                    p90_us: t.percentile_us(0.90),
                    p95_us: t.percentile_us(0.95),
                    p99_us: t.percentile_us(0.99),
                    p999_us: t.percentile_us(0.999),
                    max_us: t.maximum_time_us,
                }
            })
            .unwrap_or_default()
    };
    UsersSummary {
        wanted: scenario.users,
        live: ctx.subscribed.load(Ordering::Acquire),
        failed: ctx.failed.load(Ordering::Acquire),
        reconnects: results.iter().map(|r| r.counters.reconnects).sum(),
        connect_failures: results.iter().map(|r| r.counters.connect_failures).sum(),
        connect: request("connect"),
        subscribe: request("subscribe"),
    }
}

/// Why the run gives no verdict, if it cannot.
fn invalid_reason(
    scenario: &Scenario,
    opts: &RunOptions,
    users: &UsersSummary,
    generator: &GeneratorSummary,
    totals: &Totals,
    in_at_ramp_end: usize,
) -> Option<String> {
    if users.live == 0 {
        return Some("no user could connect and subscribe".into());
    }
    if in_at_ramp_end < scenario.users {
        return Some(format!(
            "only {in_at_ramp_end} of {} users had connected or failed when the ramp ended \
             ({} by the end of the run)",
            scenario.users,
            users.live + users.failed,
        ));
    }
    let max_lag = opts.max_generator_lag.as_micros() as u64;
    if generator.lag_p99_us > max_lag {
        return Some(format!(
            "the load generator saturated: its scheduling lag p99 was {} (limit {})",
            crate::thresholds::format_micros(generator.lag_p99_us as f64),
            crate::thresholds::format_micros(max_lag as f64)
        ));
    }
    if totals.achieved_rate < scenario.publish_rate * 0.95 {
        return Some(format!(
            "the publisher reached only {:.1} of {} events/s",
            totals.achieved_rate, scenario.publish_rate
        ));
    }
    None
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Target;

    fn scenario(users: usize) -> Scenario {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
        let file = crate::scenario::ScenarioFile::load(&path).expect("the scenario file loads");
        let mut scenario = file.resolve("quick").expect("quick resolves");
        scenario.users = users;
        scenario
    }

    fn opts() -> RunOptions {
        RunOptions {
            target: Target::External {
                ws_url: "ws://127.0.0.1:1/ws".into(),
                http_addr: None,
                nats_url: "nats://127.0.0.1:1".into(),
                jwt_secret: "s".into(),
                ca_file: None,
            },
            out_dir: std::env::temp_dir(),
            connect_timeout: Duration::from_secs(1),
            max_generator_lag: Duration::from_millis(50),
            goose_args: Vec::new(),
            progress: false,
            source_ips: Vec::new(),
            worker: None,
            remote: None,
        }
    }

    #[test]
    fn a_late_ramp_names_the_count_at_its_end_not_the_final_one() {
        let scenario = scenario(100);
        let users = UsersSummary {
            live: 100,
            ..UsersSummary::default()
        };
        let totals = Totals {
            achieved_rate: scenario.publish_rate,
            ..Totals::default()
        };
        let generator = GeneratorSummary::default();
        let reason = invalid_reason(&scenario, &opts(), &users, &generator, &totals, 60);
        assert_eq!(
            reason.as_deref(),
            Some(
                "only 60 of 100 users had connected or failed when the ramp ended \
                 (100 by the end of the run)"
            )
        );
        assert_eq!(
            invalid_reason(&scenario, &opts(), &users, &generator, &totals, 100),
            None
        );
    }
}
