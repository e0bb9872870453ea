//! The summary printed at the end of a run.

use std::fmt::Write as _;

use crate::render::rows;
use crate::report::{Outcome, RunReport};

/// The terminal summary: figures, then one line per rule, then the verdict.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let title = format!(
        "Odin load test: {} — {} users, {} of {} tokens each, {} price events/s",
        r.scenario.name,
        r.scenario.users,
        r.scenario.subscriptions,
        r.scenario.tokens,
        r.scenario.publish_rate
    );
    let _ = writeln!(
        out,
        "\n{title}\n{}",
        "═".repeat(title.chars().count().min(100))
    );
    for (label, value) in rows::summary_rows(r) {
        let _ = writeln!(out, "  {label:<34} {value}");
    }
    let rows = rows::verdict_rows(r);
    if !rows.is_empty() {
        let w = rows
            .iter()
            .map(|(rule, ..)| rule.len())
            .max()
            .unwrap_or(10)
            .max(10);
        let _ = writeln!(
            out,
            "\n  {:<w$}  {:<18} {:<14} result",
            "threshold", "observed", "limit"
        );
        for (rule, observed, limit, passed) in rows {
            let mark = if passed { "pass" } else { "FAIL" };
            let _ = writeln!(out, "  {rule:<w$}  {observed:<18} {limit:<14} {mark}");
        }
    }
    let verdict = match &r.outcome {
        Outcome::Pass => "PASS: every threshold held".to_owned(),
        Outcome::Fail => "FAIL: a threshold failed (exit 1)".to_owned(),
        Outcome::Invalid { reason } => format!("INVALID RUN, no verdict (exit 2): {reason}"),
    };
    let _ = writeln!(out, "\n  {verdict}");
    out
}
