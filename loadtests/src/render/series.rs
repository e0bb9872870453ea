//! One report for a series of scenarios run in turn (`progressive`): a
//! Markdown table of every scenario's key figures with links to its own
//! folder (`series.md`, also printed), an HTML page of the same
//! (`index.html`), and one JUnit document with a suite per scenario
//! (`junit.xml`), so CI and people read the whole series in one place.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::render::html::{STYLE, escape};
use crate::report::{Outcome, RunReport};
use crate::thresholds::{format_bytes, format_micros};

/// Writes `series.md`, `index.html` and `junit.xml` of `reports` (each in
/// `dir/<scenario>/`) into `dir`.
pub fn write_files(reports: &[RunReport], dir: &Path) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("series.md", markdown(reports))?;
    write("index.html", html(reports))?;
    write("junit.xml", junit(reports))
}

/// The verdict word of an outcome.
pub fn verdict_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Invalid { .. } => "INVALID",
    }
}

const HEADER: [&str; 11] = [
    "scenario",
    "users",
    "deliveries/s",
    "p50",
    "p99",
    "p99.9",
    "lost / dup / reordered",
    "server CPU per delivery",
    "server RSS per user",
    "failed rules",
    "verdict",
];

fn cells(r: &RunReport) -> [String; 11] {
    let failed: Vec<&str> = r
        .thresholds
        .iter()
        .filter(|v| !v.passed)
        .map(|v| v.rule.as_str())
        .chain(
            r.goose_thresholds
                .iter()
                .filter(|g| !g.passed)
                .map(|g| g.rule.as_str()),
        )
        .collect();
    let a = &r.accounting;
    [
        r.scenario.name.clone(),
        r.users.live.to_string() + " of " + &r.scenario.users.to_string(),
        format!("{:.0}", a.throughput_per_sec),
        format_micros(r.latency.p50_us as f64),
        format_micros(r.latency.p99_us as f64),
        format_micros(r.latency.p999_us as f64),
        format!("{} / {} / {}", a.lost, a.duplicates, a.out_of_order),
        r.server
            .cpu_per_delivery_us
            .map_or("-".into(), |v| format!("{v:.2} µs")),
        r.server.rss_per_user_bytes.map_or("-".into(), format_bytes),
        if failed.is_empty() {
            "-".into()
        } else {
            failed.join(", ")
        },
        match &r.outcome {
            Outcome::Invalid { reason } => format!("INVALID: {reason}"),
            o => verdict_word(o).to_owned(),
        },
    ]
}

/// The series as a Markdown table, worst outcome last.
pub fn markdown(reports: &[RunReport]) -> String {
    let mut out = String::from("## Series\n\n");
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for r in reports {
        let _ = writeln!(out, "| {} |", cells(r).join(" | "));
    }
    out.push_str("\nEach scenario's own report is in its folder (`<scenario>/report.html`).\n");
    out
}

/// The series as an HTML page linking every scenario's report.
pub fn html(reports: &[RunReport]) -> String {
    let mut body = String::from("<h1>Odin load series</h1><table><tr>");
    for h in HEADER {
        let _ = write!(body, "<th>{}</th>", escape(h));
    }
    body.push_str("</tr>");
    for r in reports {
        let class = if r.outcome == Outcome::Pass {
            "pass"
        } else {
            "fail"
        };
        let _ = write!(body, "<tr class=\"{class}\">");
        for (i, cell) in cells(r).iter().enumerate() {
            if i == 0 {
                let name = escape(cell);
                let _ = write!(body, "<td><a href=\"{name}/report.html\">{name}</a></td>");
            } else {
                let _ = write!(body, "<td>{}</td>", escape(cell));
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Odin load series</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
}

/// One JUnit document with each scenario's suite.
pub fn junit(reports: &[RunReport]) -> String {
    let mut doc = quick_junit::Report::new("odin-load");
    for r in reports {
        doc.add_test_suite(crate::render::junit::suite(r));
    }
    doc.to_string()
        .expect("a JUnit report serialises to memory")
}
