//! The gate's result for people and for CI: a table (terminal and Markdown,
//! `gate.md`), `gate.json`, and the verdict line.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::gate::decide::{CheckResult, Judgement, median};
use crate::gate::metric::GateMetric;
use crate::gate::runner::{GateReport, GateVerdict};
use crate::gate::spec::Tolerance;

/// Writes `gate.json`, `gate.md` and `junit.xml` into `dir`.
pub fn write_files(report: &GateReport, dir: &Path) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "gate.json",
        serde_json::to_string_pretty(report).context("the gate report serialises")?,
    )?;
    write("gate.md", markdown(report))?;
    write("gate.html", html(report))?;
    write("junit.xml", junit(report))
}

/// The gate as one self-contained HTML page: the verdict, the table, and a
/// plot of every pair's change against each metric's tolerance.
pub fn html(report: &GateReport) -> String {
    use crate::render::html::{STYLE, escape};
    let (class, verdict) = match &report.verdict {
        GateVerdict::Pass => ("pass", "PASS"),
        GateVerdict::Regression => ("fail", "REGRESSION"),
        GateVerdict::Invalid { .. } => ("invalid", "INVALID"),
    };
    let mut body = format!(
        "<h1>Odin release gate: {}</h1><p class=\"verdict {class}\">{verdict}</p><p>{}</p>\
         <p>Candidate <code>{}</code> against baseline <code>{}</code>, scenario <code>{}</code>, \
         {} pairs, {:.0} % intervals. <a href=\"gate.json\">JSON</a> · <a href=\"gate.md\">Markdown</a></p>",
        escape(&report.gate),
        escape(&verdict_line(report)),
        escape(&report.candidate_bins.display().to_string()),
        escape(&report.baseline_bins.display().to_string()),
        escape(&report.scenario),
        report.pairs,
        report.confidence * 100.0,
    );
    body.push_str(
        "<h2>Checks</h2><table><tr><th>metric</th><th>may worsen by</th><th>baseline</th>\
         <th>candidate</th><th>change</th><th>interval</th><th>each pair</th><th>verdict</th></tr>",
    );
    for c in &report.checks {
        let cells = cells(c);
        let class = if c.judgement == Judgement::Regression {
            "fail"
        } else {
            "pass"
        };
        body.push_str(&format!("<tr class=\"{class}\">"));
        for cell in cells {
            let _ = write!(body, "<td>{}</td>", escape(&cell.replace("**", "")));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    body.push_str(
        "<h2>Each pair against the tolerance</h2><p>One row per compared metric: each dot is \
         one pair's change as a share of what the metric may worsen by (0: as the baseline; \
         the red line: the tolerance), the bar is the median.</p>",
    );
    body.push_str(&pair_plot(&report.checks));
    body.push_str("<h2>Runs</h2><ul>");
    for r in &report.runs {
        let dir = r.dir.display().to_string();
        let _ = write!(
            body,
            "<li>pair {} {:?}: {}{} — <a href=\"{}/report.html\">{}</a></li>",
            r.pair,
            r.side,
            escape(&r.outcome),
            if r.retried { " (retried)" } else { "" },
            escape(&dir),
            escape(&dir),
        );
    }
    body.push_str("</ul>");
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Odin release gate: {}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(&report.gate)
    )
}

/// An SVG of each compared metric's pair changes in units of its tolerance.
fn pair_plot(checks: &[CheckResult]) -> String {
    use crate::render::html::escape;
    const W: f64 = 900.0;
    const ROW: f64 = 26.0;
    const L: f64 = 150.0;
    const R: f64 = 20.0;
    const LO: f64 = -2.0;
    const HI: f64 = 3.0;
    let rows: Vec<(&CheckResult, f64)> = checks
        .iter()
        .filter_map(|c| match c.tolerance {
            Tolerance::Relative(t) | Tolerance::Absolute(t) if t > 0.0 => Some((c, t)),
            _ => None,
        })
        .collect();
    let h = 30.0 + ROW * rows.len() as f64;
    let sx = |v: f64| L + (v.clamp(LO, HI) - LO) / (HI - LO) * (W - L - R);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {h}\" width=\"100%\" role=\"img\" \
         aria-label=\"each pair's change in units of the tolerance\">"
    );
    for (x, colour, label) in [(0.0, "#999", "baseline"), (1.0, "#dc2626", "tolerance")] {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"14\" y2=\"{1}\" stroke=\"{colour}\"/>\
             <text x=\"{0:.1}\" y=\"11\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
            sx(x),
            h - 4.0
        );
    }
    for (i, (c, t)) in rows.iter().enumerate() {
        let y = 30.0 + ROW * i as f64 + ROW / 2.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            L - 8.0,
            y + 4.0,
            escape(&c.metric)
        );
        let colour = if c.judgement == Judgement::Regression {
            "#dc2626"
        } else {
            "#2563eb"
        };
        for e in &c.excess {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{colour}\" fill-opacity=\"0.6\"/>",
                sx(e / t)
            );
        }
        if c.median.is_finite() {
            let _ = write!(
                svg,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"#111\" stroke-width=\"2\"/>",
                sx(c.median / t),
                y - 8.0,
                y + 8.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The gate as JUnit XML: one test case per check, and one that errors when
/// the gate gave no verdict.
pub fn junit(report: &GateReport) -> String {
    use crate::render::junit::{case, failure, to_xml, validity};
    use quick_junit::{TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new(format!("odin-load gate {}", report.gate));
    suite.set_time(std::time::Duration::from_secs_f64(
        report.duration_secs.max(0.0),
    ));
    let invalid = match &report.verdict {
        GateVerdict::Invalid { reason } => Some(format!("invalid gate, no verdict: {reason}")),
        _ => None,
    };
    suite.add_test_case(case("the gate's runs are valid", validity(invalid)));
    for c in &report.checks {
        let status = match c.judgement {
            Judgement::Regression => failure(row(c)),
            Judgement::Unmeasured => validity(Some("not measured in every run".into())),
            Judgement::Pass | Judgement::Undecided => TestCaseStatus::success(),
        };
        suite.add_test_case(case(&c.metric, status));
    }
    to_xml(suite)
}

/// The verdict in one line.
pub fn verdict_line(report: &GateReport) -> String {
    match &report.verdict {
        GateVerdict::Pass => format!(
            "PASS: no regression beyond tolerance in {} pairs",
            report.pairs
        ),
        GateVerdict::Regression => {
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| c.judgement == Judgement::Regression)
                .map(|c| c.metric.as_str())
                .collect();
            format!(
                "REGRESSION in {} pairs: {}",
                report.pairs,
                failed.join(", ")
            )
        }
        GateVerdict::Invalid { reason } => format!("INVALID (rerun, do not blame): {reason}"),
    }
}

/// The table as Markdown (also what the terminal shows).
pub fn markdown(report: &GateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Gate `{}`: candidate against baseline\n\n{}\n\nScenario `{}`, {} pairs run \
         alternately (A B, B A, …); the change is the median over the pairs of the candidate's \
         ratio to (or, for absolute tolerances, difference from) the baseline run beside it, with \
         a {:.0} % bootstrap interval of that median. Latency counts from the events' {}.\n",
        report.gate,
        report.description,
        report.scenario,
        report.pairs,
        report.confidence * 100.0,
        if report.latency_from == "stamp" {
            "`timestamp` (a side's publisher sends no `scheduledAt`)"
        } else {
            "`scheduledAt` (the publisher's schedule)"
        },
    );
    out.push_str(
        "| metric | may worsen by | baseline | candidate | change | interval | each pair | verdict |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for c in &report.checks {
        let _ = writeln!(out, "{}", row(c));
    }
    let _ = writeln!(out, "\n**{}**", verdict_line(report));
    out.push_str("\nRuns (each folder has report.json, report.html and run.log):\n\n");
    for r in &report.runs {
        let _ = writeln!(
            out,
            "- pair {} {:?}: {}{} — `{}`",
            r.pair,
            r.side,
            r.outcome,
            if r.retried { " (retried)" } else { "" },
            r.dir.display()
        );
    }
    out
}

fn row(c: &CheckResult) -> String {
    format!("| {} |", cells(c).join(" | "))
}

/// The table's cells of one check.
fn cells(c: &CheckResult) -> [String; 8] {
    let metric = GateMetric::parse(&c.metric).ok();
    let fmt = |v: f64| match metric {
        Some(m) if v.is_finite() => m.format(v),
        _ => format!("{v}"),
    };
    let side_median = |values: &[Option<f64>]| {
        let v: Vec<f64> = values.iter().flatten().copied().collect();
        if v.is_empty() {
            "-".to_owned()
        } else {
            fmt(median(&v))
        }
    };
    let signed = |v: f64| -> String {
        match c.tolerance {
            Tolerance::Relative(_) => format!("{:+.1}%", v * 100.0),
            Tolerance::Absolute(_) => {
                let s = fmt(v.abs());
                if v < 0.0 {
                    format!("-{s}")
                } else {
                    format!("+{s}")
                }
            }
            Tolerance::AtMost(_) => fmt(v),
        }
    };
    let (allowed, change, interval) = match c.tolerance {
        Tolerance::AtMost(limit) => (
            format!("at most {}", fmt(limit)),
            format!("max {}", fmt(c.interval.1)),
            "-".to_owned(),
        ),
        Tolerance::Relative(t) => (
            format!("{:.0}%", t * 100.0),
            signed(c.median),
            format!("[{}, {}]", signed(c.interval.0), signed(c.interval.1)),
        ),
        Tolerance::Absolute(t) => (
            format!("+{}", fmt(t)),
            signed(c.median),
            format!("[{}, {}]", signed(c.interval.0), signed(c.interval.1)),
        ),
    };
    let pairs: Vec<String> = c.excess.iter().map(|&e| signed(e)).collect();
    let verdict = match c.judgement {
        Judgement::Pass => "pass",
        Judgement::Regression => "**REGRESSION**",
        Judgement::Undecided => "undecided",
        Judgement::Unmeasured => "not measured",
    };
    [
        c.metric.clone(),
        allowed,
        side_median(&c.baseline),
        side_median(&c.candidate),
        change,
        interval,
        pairs.join(" "),
        verdict.to_owned(),
    ]
}
