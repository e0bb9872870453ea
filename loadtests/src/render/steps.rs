//! The summary of a stepped run (`[step.<name>]`): one row per rate with
//! what a fan-out benchmark compares (deliveries/s, latency, loss, CPU per
//! delivery on both sides, server memory, verdict), the highest rate at
//! which every threshold held, and, when asked for, odin-server against the
//! bare forwarder at the first rate.

use std::fmt::Write;

use crate::render::rows::{format_bytes, format_count};
use crate::report::{Outcome, RunReport};
use crate::steps::{ForwarderComparison, StepSummary, ceiling};
use crate::thresholds::format_micros;

/// The table as Markdown, which reads as well in a terminal as in a pull
/// request; then the forwarder comparison, if there is one.
pub fn render(
    name: &str,
    reports: &[RunReport],
    comparison: Option<&ForwarderComparison>,
) -> String {
    let mut out = String::new();
    let users = reports.first().map_or(0, |r| r.scenario.users);
    let (subs, tokens) = reports
        .first()
        .map_or((0, 0), |r| (r.scenario.subscriptions, r.scenario.tokens));
    let _ = writeln!(
        out,
        "Stepped run {name}: {users} users, {subs} of {tokens} tokens each\n"
    );
    let _ = writeln!(
        out,
        "| rate/s | deliveries/s | p50 | p99 | p99.9 | max | lost | dup | server µs/dlv | generator µs/dlv | gen lag p99 | server RSS | verdict |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in reports {
        let rss = r
            .server
            .process_after
            .map_or("-".to_owned(), |p| format_bytes(p.peak_rss_bytes as f64));
        let server_cpu = r
            .server
            .cpu_per_delivery_us
            .map_or("-".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} |",
            r.scenario.publish_rate,
            format_count(r.accounting.throughput_per_sec.round() as u64),
            format_micros(r.latency.p50_us as f64),
            format_micros(r.latency.p99_us as f64),
            format_micros(r.latency.p999_us as f64),
            format_micros(r.latency.max_us as f64),
            format_count(r.accounting.lost),
            format_count(r.accounting.duplicates),
            server_cpu,
            r.generator.cpu_per_delivery_us,
            format_micros(r.generator.lag_p99_us as f64),
            rss,
            verdict(&r.outcome),
        );
    }
    out.push('\n');
    match ceiling(reports) {
        Some(r) => {
            let _ = writeln!(
                out,
                "Highest sustained: {} price events/s, {} deliveries/s, p99 {} (every threshold held).",
                r.scenario.publish_rate,
                format_count(r.accounting.throughput_per_sec.round() as u64),
                format_micros(r.latency.p99_us as f64),
            );
        }
        None => {
            let _ = writeln!(out, "No step held every threshold.");
        }
    }
    if let Some(c) = comparison {
        out.push('\n');
        out.push_str(&render_comparison(c));
    }
    out
}

/// odin-server's first step and the bare forwarder's run side by side, and
/// the one line of issue #8.
pub fn render_comparison(c: &ForwarderComparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Bare forwarder on the same run, at {} price events/s (folders `{}/` and `{}/`):\n",
        c.rate, c.odin.folder, c.forwarder.folder
    );
    let _ = writeln!(
        out,
        "| server | deliveries/s | p50 | p99 | lost | server CPU | server µs/dlv | server RSS | verdict |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    let numbered = !c.repeats.is_empty();
    for (n, (odin, forwarder)) in c.pairs().enumerate() {
        for (who, s) in [("odin-server", odin), ("bare forwarder", forwarder)] {
            let who = if numbered {
                format!("{who} ({})", n + 1)
            } else {
                who.to_owned()
            };
            let _ = writeln!(out, "{}", comparison_row(&who, s));
        }
    }
    let _ = writeln!(out, "\n{}", c.line());
    if let Some(caveat) = c.caveat() {
        let _ = writeln!(out, "(Doubtful: {caveat}.)");
    }
    out
}

fn comparison_row(who: &str, s: &StepSummary) -> String {
    format!(
        "| {who} | {} | {} | {} | {} | {} | {} | {} | {} |",
        format_count(s.deliveries_per_sec.round() as u64),
        format_micros(s.latency.p50_us as f64),
        format_micros(s.latency.p99_us as f64),
        format_count(s.lost),
        s.server_cpu_share
            .map_or("-".to_owned(), |v| format!("{:.0}%", v * 100.0)),
        s.server_cpu_per_delivery_us
            .map_or("-".to_owned(), |v| format!("{v:.2}")),
        s.server_peak_rss_bytes
            .map_or("-".to_owned(), |b| format_bytes(b as f64)),
        verdict(&s.outcome),
    )
}

fn verdict(o: &Outcome) -> String {
    match o {
        Outcome::Pass => "pass".to_owned(),
        Outcome::Fail => "FAIL".to_owned(),
        Outcome::Invalid { reason } => format!("INVALID: {reason}"),
    }
}
