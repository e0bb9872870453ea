//! Runs a gate: the scenario in alternating pairs of child `odin-load run`
//! processes (A B, B A, A B, …), each side with its own binaries through
//! `ODIN_BIN_DIR`, until every check is decided or the pairs run out.
//!
//! Both sides are measured by the same load generator (this executable), so
//! only the server and publisher under test differ between them. A run that
//! comes back invalid (the generator lagged, the publisher missed its rate)
//! is run once more before the whole gate is called invalid.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::gate::decide::{CheckResult, Judgement, judge};
use crate::gate::spec::GateSpec;
use crate::report::{Outcome, RunReport};

/// How a gate is run besides its spec.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// The scenario file the spec's scenario is in.
    pub scenario_file: PathBuf,
    /// Folder of the baseline's `odin-server` and `odin-publisher`.
    pub baseline_bins: PathBuf,
    /// Folder of the candidate's.
    pub candidate_bins: PathBuf,
    /// Where the gate's files and every run's folder go.
    pub out_dir: PathBuf,
    /// The `odin-load` that runs both sides (the gate's own executable).
    pub load_exe: PathBuf,
    /// Extra flags for every `odin-load run` (scenario overrides).
    pub run_args: Vec<String>,
}

/// Which binaries a run used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The reference (the last release).
    Baseline,
    /// The change under test.
    Candidate,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Candidate => "candidate",
        }
    }
}

/// One load run of the gate.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Pair number, from 1.
    pub pair: usize,
    /// Which side.
    pub side: Side,
    /// Its folder (report.json, run.log).
    pub dir: PathBuf,
    /// `pass`, `fail` or `invalid` by the scenario's own thresholds.
    pub outcome: String,
    /// Whether it is the second try after an invalid run.
    pub retried: bool,
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum GateVerdict {
    /// No check found a regression (exit 0).
    Pass,
    /// At least one did (exit 1).
    Regression,
    /// No verdict (exit 2): a run stayed invalid, or a figure was missing.
    Invalid {
        /// Why.
        reason: String,
    },
}

impl GateVerdict {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            GateVerdict::Pass => 0,
            GateVerdict::Regression => 1,
            GateVerdict::Invalid { .. } => 2,
        }
    }
}

/// A whole gate, as `gate.json` holds it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    /// The gate's name.
    pub gate: String,
    /// What it is for.
    pub description: String,
    /// The scenario every run ran.
    pub scenario: String,
    /// The baseline's binaries.
    pub baseline_bins: PathBuf,
    /// The candidate's.
    pub candidate_bins: PathBuf,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// Wall time, seconds.
    pub duration_secs: f64,
    /// Pairs run.
    pub pairs: usize,
    /// Confidence of the intervals.
    pub confidence: f64,
    /// Where latency counts from: `schedule` (`scheduledAt`), or `stamp`
    /// when a side's publisher sends no schedule (an older baseline).
    pub latency_from: String,
    /// Every run, in order.
    pub runs: Vec<RunRecord>,
    /// Every check after the last pair.
    pub checks: Vec<CheckResult>,
    /// The verdict.
    pub verdict: GateVerdict,
}

/// Runs the gate; `Err` is a setup error (exit 3): missing binaries, or a
/// run that could not start.
pub fn run(spec: &GateSpec, opts: &GateOptions) -> anyhow::Result<GateReport> {
    let wall = std::time::Instant::now();
    for dir in [&opts.baseline_bins, &opts.candidate_bins] {
        for bin in ["odin-server", "odin-publisher"] {
            let path = dir.join(bin);
            if !path.is_file() {
                bail!(
                    "{} is missing (a bins folder holds odin-server and odin-publisher)",
                    path.display()
                );
            }
        }
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create {}", opts.out_dir.display()))?;
    let mut report = GateReport {
        gate: spec.name.clone(),
        description: spec.description.clone(),
        scenario: spec.scenario.clone(),
        baseline_bins: opts.baseline_bins.clone(),
        candidate_bins: opts.candidate_bins.clone(),
        started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        duration_secs: 0.0,
        pairs: 0,
        confidence: spec.confidence,
        latency_from: "schedule".into(),
        runs: Vec::new(),
        checks: Vec::new(),
        verdict: GateVerdict::Pass,
    };
    let mut pairs: Vec<(RunReport, RunReport)> = Vec::new();
    for pair in 1..=spec.max_pairs {
        // A B, then B A: a drift of the machine within a pair falls on
        // either side equally often.
        let order = if pair % 2 == 1 {
            [Side::Baseline, Side::Candidate]
        } else {
            [Side::Candidate, Side::Baseline]
        };
        let mut baseline = None;
        let mut candidate = None;
        for side in order {
            let run = match run_side(spec, opts, pair, side, &mut report.runs)? {
                Ok(r) => r,
                Err(reason) => {
                    report.pairs = pairs.len();
                    report.verdict = GateVerdict::Invalid { reason };
                    report.duration_secs = wall.elapsed().as_secs_f64();
                    return Ok(report);
                }
            };
            match side {
                Side::Baseline => baseline = Some(run),
                Side::Candidate => candidate = Some(run),
            }
        }
        pairs.push((
            baseline.expect("ran both sides"),
            candidate.expect("ran both sides"),
        ));
        if pair < spec.pairs {
            continue;
        }
        let last = pair == spec.max_pairs;
        let stamped = pairs
            .iter()
            .any(|(b, c)| b.latency_unscheduled > 0 || c.latency_unscheduled > 0);
        report.latency_from = if stamped { "stamp" } else { "schedule" }.into();
        report.checks = judge_all(spec, &pairs, last, stamped);
        let undecided = report
            .checks
            .iter()
            .filter(|c| c.judgement == Judgement::Undecided)
            .count();
        eprintln!(
            "gate: after {pair} pairs: {}",
            if undecided == 0 {
                "every check decided".to_owned()
            } else {
                format!("{undecided} check(s) undecided, another pair")
            }
        );
        if undecided == 0 {
            break;
        }
    }
    report.pairs = pairs.len();
    report.verdict = verdict(&report.checks);
    report.duration_secs = wall.elapsed().as_secs_f64();
    Ok(report)
}

fn judge_all(
    spec: &GateSpec,
    pairs: &[(RunReport, RunReport)],
    last: bool,
    stamped: bool,
) -> Vec<CheckResult> {
    spec.checks
        .iter()
        .map(|check| {
            let values: Vec<_> = pairs
                .iter()
                .map(|(b, c)| {
                    (
                        check.metric.value(b, stamped),
                        check.metric.value(c, stamped),
                    )
                })
                .collect();
            judge(check, &values, spec.confidence, last)
        })
        .collect()
}

fn verdict(checks: &[CheckResult]) -> GateVerdict {
    let unmeasured: Vec<&str> = checks
        .iter()
        .filter(|c| c.judgement == Judgement::Unmeasured)
        .map(|c| c.metric.as_str())
        .collect();
    if checks.iter().any(|c| c.judgement == Judgement::Regression) {
        GateVerdict::Regression
    } else if !unmeasured.is_empty() {
        GateVerdict::Invalid {
            reason: format!("not measured in every run: {}", unmeasured.join(", ")),
        }
    } else {
        GateVerdict::Pass
    }
}

/// One side's run of a pair, tried again once when it is invalid.
/// `Ok(Err(reason))` when it stayed invalid.
fn run_side(
    spec: &GateSpec,
    opts: &GateOptions,
    pair: usize,
    side: Side,
    runs: &mut Vec<RunRecord>,
) -> anyhow::Result<Result<RunReport, String>> {
    let mut last_reason = String::new();
    for retried in [false, true] {
        let dir = opts.out_dir.join(format!(
            "pair-{pair:02}-{}{}",
            side.name(),
            if retried { "-retry" } else { "" }
        ));
        let report = run_once(spec, opts, side, &dir)?;
        let outcome = match &report.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Invalid { .. } => "invalid",
        };
        eprintln!(
            "gate: pair {pair} {:<9} {outcome:<7} cpu/delivery {:>7}  p50 {:>8}  p99 {:>8}  rss/user {:>9}  ({})",
            side.name(),
            report
                .server
                .cpu_per_delivery_us
                .map_or("-".into(), |v| format!("{v:.2}µs")),
            crate::thresholds::format_micros(report.latency.p50_us as f64),
            crate::thresholds::format_micros(report.latency.p99_us as f64),
            report
                .server
                .rss_per_user_bytes
                .map_or("-".into(), crate::thresholds::format_bytes),
            dir.display(),
        );
        runs.push(RunRecord {
            pair,
            side,
            dir,
            outcome: outcome.to_owned(),
            retried,
        });
        match report.outcome {
            Outcome::Invalid { reason } => last_reason = reason,
            _ => return Ok(Ok(report)),
        }
    }
    Ok(Err(format!(
        "the {} run of pair {pair} was invalid twice: {last_reason}",
        side.name()
    )))
}

/// Runs `odin-load run` once with `side`'s binaries into `dir`.
fn run_once(
    spec: &GateSpec,
    opts: &GateOptions,
    side: Side,
    dir: &Path,
) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("run.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let bins = match side {
        Side::Baseline => &opts.baseline_bins,
        Side::Candidate => &opts.candidate_bins,
    };
    let status = Command::new(&opts.load_exe)
        .arg("run")
        .arg(&spec.scenario)
        .arg("--scenario-file")
        .arg(&opts.scenario_file)
        .arg("--out")
        .arg(dir)
        .arg("--no-progress")
        .args(&opts.run_args)
        .env("ODIN_BIN_DIR", std::path::absolute(bins)?)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start {}", opts.load_exe.display()))?;
    // 0 pass, 1 fail, 2 invalid: each leaves a report. Anything else is
    // a run that could not even start.
    if !matches!(status.code(), Some(0..=2)) {
        bail!(
            "the {} run failed to start ({status}); see {}",
            side.name(),
            log_path.display()
        );
    }
    crate::baseline::load(&dir.join("report.json"))
}
