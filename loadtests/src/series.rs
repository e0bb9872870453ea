//! Running a planned [`Series`]: each scenario in turn on a fresh stack
//! (one process, or the fleet when the scenario asks for several), the
//! cool-downs between, the baseline comparison, the bare forwarder's runs
//! for a stepped run's comparison, and the reports of each run and of the
//! whole.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::baseline;
use crate::options::{RemoteWorkers, RunOptions, SetupError};
use crate::plan::Series;
use crate::render::{self, terminal};
use crate::report::{Outcome, RunReport};
use crate::scenario::Scenario;
use crate::stack::{ServerKind, Target};
use crate::steps::{ForwarderComparison, StepsReport};

/// How a series runs besides its scenarios and target.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// What was asked for: a scenario, `progressive` or a stepped run.
    pub name: String,
    /// The series' folder; each run of several gets a sub-folder.
    pub out_dir: PathBuf,
    /// How long a user may take to connect and subscribe.
    pub connect_timeout: Duration,
    /// Generator scheduling lag (p99) beyond which a run is invalid.
    pub max_generator_lag: Duration,
    /// Extra Goose flags.
    pub goose_args: Vec<String>,
    /// Print a progress line every second.
    pub progress: bool,
    /// An earlier run to compare the run of the same scenario with.
    pub baseline: Option<RunReport>,
    /// How much worse than the baseline p99 and throughput may be, percent.
    pub baseline_tolerance: f64,
    /// Workers that join over NATS instead of local worker processes.
    pub remote: Option<RemoteWorkers>,
}

/// Runs every scenario of `series` against `target` in turn, with the
/// series' cool-downs between, and writes and prints each one's reports,
/// then the step table or the series' summary. Returns the exit code: the
/// worst outcome's, or for a stepped run 0 when its first step held.
pub async fn run_series(
    series: &Series,
    target: &Target,
    opts: &SeriesOptions,
) -> Result<u8, SetupError> {
    let cooldown = series.cooldown;
    let series_dir = &opts.out_dir;
    let mut reports: Vec<RunReport> = Vec::new();
    let mut comparison: Option<ForwarderComparison> = None;
    for (i, scenario) in series.scenarios.iter().enumerate() {
        if i > 0 {
            eprintln!("cooling down for {}", humantime::format_duration(cooldown));
            tokio::time::sleep(cooldown).await;
        }
        // A stepped run's folder holds its own report.json: every step
        // goes into a sub-folder, even a single one.
        let out_dir = if series.scenarios.len() > 1 || series.stepped {
            series_dir.join(&scenario.name)
        } else {
            series_dir.clone()
        };
        let report = run_one(scenario, target, &out_dir, opts, opts.baseline.as_ref()).await?;
        let passed = report.outcome == Outcome::Pass;
        reports.push(report);
        if i == 0 && series.compare_forwarder {
            let pairs = series.compare_pairs;
            comparison =
                compare_with_forwarder(&reports[0], pairs, target, series_dir, cooldown, opts)
                    .await?;
        }
        if series.stop_at_first_miss && !passed && i + 1 < series.scenarios.len() {
            eprintln!(
                "odin-load: {} did not hold its thresholds; the steps above it are skipped \
                 (run_every_rate = true runs them all)",
                series.scenarios[i].name
            );
            break;
        }
    }
    if series.stepped {
        let table = render::steps::render(&opts.name, &reports, comparison.as_ref());
        println!("\n{table}");
        if let Err(e) = std::fs::write(series_dir.join("steps.md"), &table) {
            return Err(SetupError(anyhow::anyhow!("cannot write steps.md: {e}")));
        }
        let steps = StepsReport::new(&opts.name, &series.base, &reports, comparison);
        let json = serde_json::to_string_pretty(&steps).expect("a steps report serialises");
        if let Err(e) = std::fs::write(series_dir.join("report.json"), json) {
            return Err(SetupError(anyhow::anyhow!("cannot write report.json: {e}")));
        }
        println!(
            "  table: {}/steps.md (and report.json)",
            series_dir.display()
        );
        // A stepped run measures; it fails only when not even its first
        // step held (or could be judged).
        return Ok(match crate::steps::ceiling(&reports) {
            Some(_) => 0,
            None => reports[0].outcome.exit_code().max(1) as u8,
        });
    }
    if reports.len() > 1 {
        println!("\n{}", render::series::markdown(&reports));
        render::series::write_files(&reports, series_dir).map_err(SetupError)?;
        println!(
            "  series: {}/series.md, index.html, junit.xml",
            series_dir.display()
        );
    }
    // The worst outcome decides: invalid (2) over fail (1) over pass (0).
    Ok(reports
        .iter()
        .map(|r| r.outcome.exit_code() as u8)
        .max()
        .unwrap_or(0))
}

/// Runs one scenario against `target` into `out_dir`, compares it with the
/// baseline when it is the same scenario, writes its folder and prints its
/// summary; `Err` is the exit code of a setup error.
async fn run_one(
    scenario: &Scenario,
    target: &Target,
    out_dir: &Path,
    opts: &SeriesOptions,
    baseline: Option<&RunReport>,
) -> Result<RunReport, SetupError> {
    let run_opts = RunOptions {
        target: target.clone(),
        out_dir: out_dir.to_path_buf(),
        connect_timeout: opts.connect_timeout,
        max_generator_lag: opts.max_generator_lag,
        goose_args: opts.goose_args.clone(),
        progress: opts.progress,
        source_ips: Vec::new(),
        worker: None,
        remote: opts.remote.clone(),
    };
    let against = match target {
        Target::Embedded { server, .. } => server.binary(),
        Target::External { .. } => "a running server",
    };
    eprintln!(
        "odin-load: {} — {} users, {} of {} tokens, {} price events/s, hold {}, against {against}",
        scenario.name,
        scenario.users,
        scenario.subscriptions,
        scenario.tokens,
        scenario.publish_rate,
        humantime::format_duration(scenario.hold)
    );
    let several = scenario.processes > 1
        || scenario.gateways > 1
        || scenario.nats_nodes > 1
        || opts.remote.is_some();
    let mut report = if several {
        crate::fleet::run(scenario, &run_opts).await?
    } else {
        crate::run::run(scenario, &run_opts).await?
    };
    if let Some(b) = baseline
        && b.scenario.name == scenario.name
    {
        baseline::compare(&mut report, b, opts.baseline_tolerance);
    }
    render::write_run_folder(&report, out_dir).map_err(SetupError)?;
    print!("{}", terminal::render(&report));
    println!(
        "  reports: {}/report.html (and report.json, report.md, goose-report.html)",
        out_dir.display()
    );
    Ok(report)
}

/// The bare forwarder under `odin`'s scenario, right after it (a cool-down
/// between), for the comparison of the fan-out benchmark; then `pairs − 1` more
/// odin-server and forwarder runs, alternating. `Ok(None)` when there is
/// nothing to compare with: odin-server is not what the steps ran.
async fn compare_with_forwarder(
    odin: &RunReport,
    pairs: usize,
    target: &Target,
    series_dir: &Path,
    cooldown: Duration,
    opts: &SeriesOptions,
) -> Result<Option<ForwarderComparison>, SetupError> {
    let Target::Embedded {
        server: ServerKind::Odin,
        server_args,
    } = target
    else {
        eprintln!(
            "odin-load: compare_forwarder skipped: it compares an embedded odin-server \
             with the bare forwarder, and this run is neither"
        );
        return Ok(None);
    };
    // odin-server's flags mean nothing to the forwarder.
    let forwarder_target = Target::Embedded {
        server: ServerKind::Forwarder,
        server_args: Vec::new(),
    };
    let odin_target = Target::Embedded {
        server: ServerKind::Odin,
        server_args: server_args.clone(),
    };
    let base = odin.scenario.name.clone();
    let mut odin_runs = vec![odin.clone()];
    let mut forwarder_runs = Vec::with_capacity(pairs);
    for pair in 1..=pairs {
        let suffix = if pair == 1 {
            String::new()
        } else {
            format!("-{pair}")
        };
        if pair > 1 {
            let mut scenario = odin.scenario.clone();
            scenario.name = format!("{base}-odin{suffix}");
            scenario.description = format!("odin-server again under {base}'s load, pair {pair}");
            tokio::time::sleep(cooldown).await;
            let dir = series_dir.join(&scenario.name);
            odin_runs.push(run_one(&scenario, &odin_target, &dir, opts, None).await?);
        }
        eprintln!(
            "odin-load: the bare forwarder at {} price events/s next (pair {pair} of {pairs}), \
             for the comparison; cooling down for {}",
            odin.scenario.publish_rate,
            humantime::format_duration(cooldown)
        );
        tokio::time::sleep(cooldown).await;
        let mut scenario = odin.scenario.clone();
        scenario.name = format!("{base}-forwarder{suffix}");
        scenario.description =
            format!("the bare forwarder under {base}'s load, for the comparison");
        let dir = series_dir.join(&scenario.name);
        forwarder_runs.push(run_one(&scenario, &forwarder_target, &dir, opts, None).await?);
    }
    Ok(Some(ForwarderComparison::new(&odin_runs, &forwarder_runs)))
}
