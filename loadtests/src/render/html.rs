//! The HTML report: one self-contained page (no scripts, no network) with the
//! figures, every rule's result, a latency-by-percentile plot and a
//! latency-over-time plot, linking to Goose's own report in the same folder.

use std::fmt::Write as _;

use crate::render::rows;
use crate::report::{Outcome, RunReport};
use crate::thresholds::format_micros;

/// The report as an HTML page.
pub fn render(r: &RunReport) -> String {
    let mut body = String::new();
    let (class, verdict) = match &r.outcome {
        Outcome::Pass => ("pass", "PASS".to_owned()),
        Outcome::Fail => ("fail", "FAIL".to_owned()),
        Outcome::Invalid { reason } => ("invalid", format!("INVALID RUN — {}", escape(reason))),
    };
    let _ = write!(
        body,
        "<h1>Odin load test: {name}</h1><p class=\"verdict {class}\">{verdict}</p>\
         <p>{users} users, {subs} of {tokens} tokens each, {rate} price events/s for {hold}; \
         started {started} against {target}. <a href=\"goose-report.html\">Goose's report</a> · \
         <a href=\"report.json\">JSON</a> · <a href=\"report.md\">Markdown</a></p>",
        name = escape(&r.scenario.name),
        users = r.scenario.users,
        subs = r.scenario.subscriptions,
        tokens = r.scenario.tokens,
        rate = r.scenario.publish_rate,
        hold = humantime::format_duration(r.scenario.hold),
        started = escape(&r.started_at),
        target = escape(&r.target),
    );
    body.push_str("<h2>Figures</h2><table>");
    for (label, value) in rows::summary_rows(r) {
        let _ = write!(
            body,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(&value)
        );
    }
    body.push_str("</table><h2>Thresholds</h2><table><tr><th>rule</th><th>observed</th><th>limit</th><th>result</th></tr>");
    for (rule, observed, limit, passed) in rows::verdict_rows(r) {
        let _ = write!(
            body,
            "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if passed { "pass" } else { "fail" },
            escape(&rule),
            escape(&observed),
            escape(&limit),
            if passed { "pass" } else { "FAIL" }
        );
    }
    body.push_str("</table>");

    body.push_str("<h2>Latency by percentile</h2>");
    match r.histogram() {
        Ok(h) if !h.is_empty() => {
            let points: Vec<(f64, f64)> = (0..=40)
                .map(|k| {
                    let q = 1.0 - 10f64.powf(-(k as f64) / 10.0);
                    (k as f64 / 10.0, h.value_at_quantile(q) as f64 / 1000.0)
                })
                .collect();
            body.push_str(&line_chart(
                &[("latency", "#2563eb", &points)],
                "percentile",
                "ms",
                |x| format!("{}%", trim_percent(100.0 * (1.0 - 10f64.powf(-x)))),
            ));
        }
        _ => body.push_str("<p>No latency samples.</p>"),
    }

    body.push_str("<h2>Latency over time</h2>");
    if r.timeline.is_empty() {
        body.push_str("<p>No latency samples.</p>");
    } else {
        let series = |f: fn(&crate::report::TimelinePoint) -> u64| -> Vec<(f64, f64)> {
            r.timeline
                .iter()
                .map(|p| (p.second as f64, f(p) as f64 / 1000.0))
                .collect()
        };
        let p50 = series(|p| p.p50_us);
        let p99 = series(|p| p.p99_us);
        let max = series(|p| p.max_us);
        body.push_str(&line_chart(
            &[
                ("p50", "#16a34a", &p50),
                ("p99", "#2563eb", &p99),
                ("max", "#dc2626", &max),
            ],
            "seconds since start",
            "ms",
            |x| format!("{x:.0}"),
        ));
        let rate: Vec<(f64, f64)> = r
            .timeline
            .iter()
            .map(|p| (p.second as f64, p.count as f64))
            .collect();
        body.push_str("<h2>Deliveries per second</h2>");
        body.push_str(&line_chart(
            &[("deliveries/s", "#7c3aed", &rate)],
            "seconds since start",
            "per second",
            |x| format!("{x:.0}"),
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Odin load test: {}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(&r.scenario.name)
    )
}

pub(crate) const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;color:#111}\
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left}\
th{background:#f6f6f6;font-weight:600}tr.fail td{background:#fee2e2}tr.pass td:last-child{color:#15803d}\
.verdict{font-size:1.4rem;font-weight:700;padding:.4rem .8rem;display:inline-block;border-radius:6px}\
.pass.verdict{background:#dcfce7;color:#166534}.fail.verdict{background:#fee2e2;color:#991b1b}\
.invalid.verdict{background:#fef3c7;color:#92400e}svg{background:#fff;border:1px solid #eee}\
.legend span{margin-right:1rem}";

fn trim_percent(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// One line of a chart: name, colour, points.
type Series<'a> = (&'a str, &'a str, &'a [(f64, f64)]);

/// An SVG line chart of `series`, y from zero.
fn line_chart(
    series: &[Series<'_>],
    x_label: &str,
    y_label: &str,
    x_tick: impl Fn(f64) -> String,
) -> String {
    const W: f64 = 900.0;
    const H: f64 = 300.0;
    const L: f64 = 70.0;
    const B: f64 = 40.0;
    const T: f64 = 10.0;
    const R: f64 = 20.0;
    let all = series.iter().flat_map(|(_, _, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
    let sx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
    let sy = |y: f64| T + (1.0 - y / y1) * (H - T - B);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-label=\"{y_label} by {x_label}\">"
    );
    for i in 0..=5 {
        let y = y1 * i as f64 / 5.0;
        let _ = write!(
            svg,
            "<line x1=\"{L}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            sy(y) + 4.0,
            if y_label == "ms" {
                format_micros(y * 1000.0)
            } else {
                format!("{y:.0}")
            },
            yy = sy(y),
        );
    }
    for i in 0..=8 {
        let x = x0 + (x1 - x0) * i as f64 / 8.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            sx(x),
            H - B + 16.0,
            escape(&x_tick(x))
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        (L + W - R) / 2.0,
        H - 4.0,
        escape(x_label)
    );
    for (_, colour, points) in series {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (name, colour, _) in series {
        let _ = write!(
            svg,
            "<span style=\"color:{colour}\">■ {}</span>",
            escape(name)
        );
    }
    svg.push_str("</p>");
    svg
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
