//! The Markdown report, for a pull request or a chat message.

use std::fmt::Write as _;

use crate::render::rows;
use crate::report::{Outcome, RunReport};

/// The report in Markdown.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    let badge = match &r.outcome {
        Outcome::Pass => "✅ **PASS**".to_owned(),
        Outcome::Fail => "❌ **FAIL**".to_owned(),
        Outcome::Invalid { reason } => format!("⚠️ **INVALID RUN** — {reason}"),
    };
    let _ = writeln!(out, "# Odin load test: `{}`\n\n{badge}\n", r.scenario.name);
    let _ = writeln!(
        out,
        "{} users, {} of {} tokens each, {} price events/s for {}; started {} against {}; {} load process(es).\n",
        r.scenario.users,
        r.scenario.subscriptions,
        r.scenario.tokens,
        r.scenario.publish_rate,
        humantime::format_duration(r.scenario.hold),
        r.started_at,
        r.target,
        r.processes,
    );
    let _ = writeln!(out, "| figure | value |\n| --- | --- |");
    for (label, value) in rows::summary_rows(r) {
        let _ = writeln!(out, "| {label} | {value} |");
    }
    let rows = rows::verdict_rows(r);
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "\n| threshold | observed | limit | result |\n| --- | --- | --- | --- |"
        );
        for (rule, observed, limit, passed) in rows {
            let mark = if passed { "pass" } else { "**FAIL**" };
            let _ = writeln!(out, "| `{rule}` | {observed} | {limit} | {mark} |");
        }
    }
    out
}
