//! Judging a run: reading each rule's metric off the run's figures and
//! setting the outcome. One judge for a single process's run, for the merge
//! of several processes' reports, and for the fleet once the gateways' own
//! figures are in.

use anyhow::Context;

use crate::report::{Accounting, Outcome, RunReport, ServerSummary, UsersSummary};
use crate::thresholds::{Metric, Rule, Verdict};

/// A run's figures that rules are judged on.
pub(crate) struct Figures<'a> {
    /// Latency from the schedule (`scheduledAt`).
    pub(crate) latency: &'a hdrhistogram::Histogram<u64>,
    /// Latency from the events' `timestamp`.
    pub(crate) latency_stamped: &'a hdrhistogram::Histogram<u64>,
    pub(crate) accounting: &'a Accounting,
    pub(crate) users: &'a UsersSummary,
    pub(crate) server: &'a ServerSummary,
}

/// What a rule's metric observed in this run.
fn observe(metric: Metric, figures: &Figures<'_>) -> Option<f64> {
    let Figures {
        latency,
        latency_stamped,
        accounting: acc,
        users,
        server,
    } = figures;
    let has_latency = !latency.is_empty();
    match metric {
        Metric::LatencyPercentile(p) => {
            has_latency.then(|| latency.value_at_quantile(p / 100.0) as f64)
        }
        Metric::LatencyStampedPercentile(p) => (!latency_stamped.is_empty())
            .then(|| latency_stamped.value_at_quantile(p / 100.0) as f64),
        Metric::LatencyAvg => has_latency.then(|| latency.mean()),
        Metric::LatencyMax => has_latency.then(|| latency.max() as f64),
        Metric::ConnectSuccess => Some(users.live as f64 * 100.0 / users.wanted.max(1) as f64),
        Metric::Loss => (acc.expected > 0).then_some(acc.lost as f64),
        Metric::LossRate => {
            (acc.expected > 0).then(|| acc.lost as f64 * 100.0 / acc.expected as f64)
        }
        Metric::Duplicates => Some(acc.duplicates as f64),
        Metric::OutOfOrder => Some(acc.out_of_order as f64),
        Metric::StaleFinalPrices => (acc.final_prices > 0).then_some(acc.stale_final_prices as f64),
        Metric::StaleStoredPrices => {
            (acc.stored_prices > 0).then_some(acc.stale_stored_prices as f64)
        }
        Metric::Throughput => Some(acc.throughput_per_sec),
        Metric::Reconnects => Some(users.reconnects as f64),
        Metric::RssPerUser => server.rss_per_user_bytes,
        Metric::RssGrowth => server.rss_growth_per_delivery_bytes,
    }
}

/// Judges each rule of `thresholds` (a scenario's rule texts) on `figures`.
pub(crate) fn rules(thresholds: &[String], figures: &Figures<'_>) -> anyhow::Result<Vec<Verdict>> {
    thresholds
        .iter()
        .map(|text| {
            let rule = Rule::parse(text)?;
            Ok(rule.judge(observe(rule.metric, figures)))
        })
        .collect()
}

/// Judges `report`'s scenario thresholds on its merged figures (again, once
/// the fleet has put the gateways' own figures in `report.server`) and sets
/// the outcome from them; an invalid run stays invalid.
pub fn report(report: &mut RunReport) -> anyhow::Result<()> {
    let hist = report
        .histogram()
        .context("the merged histogram is unreadable")?;
    let stamped = report
        .stamped_histogram()
        .context("the merged stamped histogram is unreadable")?;
    report.thresholds = rules(
        &report.scenario.thresholds,
        &Figures {
            latency: &hist,
            latency_stamped: &stamped,
            accounting: &report.accounting,
            users: &report.users,
            server: &report.server,
        },
    )?;
    if !matches!(report.outcome, Outcome::Invalid { .. }) {
        report.outcome = if report.thresholds.iter().all(|v| v.passed)
            && report.goose_thresholds.iter().all(|g| g.passed)
        {
            Outcome::Pass
        } else {
            Outcome::Fail
        };
    }
    Ok(())
}
