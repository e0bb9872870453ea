//! Comparing a run with an earlier one: p99 latency may not grow, and
//! throughput may not fall, by more than a tolerance.

use std::path::Path;

use anyhow::Context;

use crate::report::{Outcome, RunReport};
use crate::thresholds::{Verdict, format_micros};

/// Reads a `report.json` written by an earlier run.
pub fn load(path: &Path) -> anyhow::Result<RunReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read baseline {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not an odin-load report", path.display()))
}

/// Adds the comparison to `report` (and fails it when a comparison fails).
pub fn compare(report: &mut RunReport, baseline: &RunReport, tolerance_percent: f64) {
    let tol = tolerance_percent / 100.0;
    let base_p99 = baseline.latency.p99_us as f64;
    let p99_limit = base_p99 * (1.0 + tol);
    let p99 = report.latency.p99_us as f64;
    let base_tp = baseline.accounting.throughput_per_sec;
    let tp_limit = base_tp * (1.0 - tol);
    let tp = report.accounting.throughput_per_sec;
    report.baseline = vec![
        Verdict {
            rule: format!(
                "p99 latency within {tolerance_percent}% of the baseline ({})",
                format_micros(base_p99)
            ),
            observed: format_micros(p99),
            limit: format!("<={}", format_micros(p99_limit)),
            observed_value: Some(p99),
            passed: p99 <= p99_limit,
        },
        Verdict {
            rule: format!(
                "throughput within {tolerance_percent}% of the baseline ({base_tp:.0}/s)"
            ),
            observed: format!("{tp:.0}/s"),
            limit: format!(">={tp_limit:.0}/s"),
            observed_value: Some(tp),
            passed: tp >= tp_limit,
        },
    ];
    if report.outcome == Outcome::Pass && report.baseline.iter().any(|v| !v.passed) {
        report.outcome = Outcome::Fail;
    }
}
