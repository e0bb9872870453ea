//! One verdict from several load processes: a run beyond one process's file
//! limit is split over processes (each with its own `report.json`), whose
//! histograms and counters merge here into one report.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use crate::combine::Combine;
use crate::histogram::{encode_histogram, latency_histogram};
use crate::judge;
use crate::report::{GooseVerdict, LatencySummary, Outcome, RunReport, TimelinePoint};

/// Merges `reports` (of the same scenario) into one, re-judging the first
/// report's thresholds on the merged figures.
pub fn merge(reports: Vec<RunReport>) -> anyhow::Result<RunReport> {
    merge_with_store(reports, None)
}

/// [`merge`], with what the fleet found in the last-prices store at the end
/// of the run (`(tokens checked, tokens stale)`), judged with the rest.
pub fn merge_with_store(
    reports: Vec<RunReport>,
    store: Option<(u64, u64)>,
) -> anyhow::Result<RunReport> {
    let Some(first) = reports.first().cloned() else {
        bail!("nothing to merge");
    };
    let mut out = first.clone();
    let mut hist = latency_histogram();
    let mut stamped = latency_histogram();
    let mut timeline: BTreeMap<usize, TimelinePoint> = BTreeMap::new();
    out.users = Default::default();
    out.accounting = Default::default();
    out.processes = 0;
    out.latency_unscheduled = 0;
    let mut invalid = Vec::new();
    for r in &reports {
        if r.scenario.name != first.scenario.name {
            bail!(
                "cannot merge scenario {} with {}",
                r.scenario.name,
                first.scenario.name
            );
        }
        hist.add(
            r.histogram()
                .context("a report's histogram is unreadable")?,
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        stamped
            .add(
                r.stamped_histogram()
                    .context("a report's stamped histogram is unreadable")?,
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        out.latency_unscheduled += r.latency_unscheduled;
        out.processes += r.processes;
        out.users.combine(&r.users);
        out.accounting.combine(&r.accounting);
        for p in &r.timeline {
            timeline
                .entry(p.second)
                .and_modify(|e| e.combine(p))
                .or_insert_with(|| p.clone());
        }
        out.generator.cpu_share += r.generator.cpu_share;
        out.generator.lag_p99_us = out.generator.lag_p99_us.max(r.generator.lag_p99_us);
        out.generator.lag_max_us = out.generator.lag_max_us.max(r.generator.lag_max_us);
        if let Outcome::Invalid { reason } = &r.outcome {
            invalid.push(reason.clone());
        }
    }
    if let Some((checked, stale)) = store {
        out.accounting.stored_prices = checked;
        out.accounting.stale_stored_prices = stale;
    }
    out.latency = LatencySummary::of(&hist);
    out.latency_histogram = encode_histogram(&hist);
    out.latency_stamped = LatencySummary::of(&stamped);
    out.latency_stamped_histogram = encode_histogram(&stamped);
    out.timeline = timeline.into_values().collect();
    out.generator.cpu_per_delivery_us = reports
        .iter()
        .map(|r| r.generator.cpu_per_delivery_us * r.accounting.delivered as f64)
        .sum::<f64>()
        / out.accounting.delivered.max(1) as f64;
    out.goose_thresholds =
        merge_goose_verdicts(reports.iter().map(|r| r.goose_thresholds.as_slice()));
    out.baseline.clear();
    out.outcome = if invalid.is_empty() {
        Outcome::Pass
    } else {
        Outcome::Invalid {
            reason: invalid.join("; "),
        }
    };
    judge::report(&mut out)?;
    Ok(out)
}

/// One verdict per Goose rule: every process judged its own Goose metrics
/// against the same rules, so a rule passes when it passed everywhere, and
/// what each process observed is listed in process order.
fn merge_goose_verdicts<'a>(
    per_process: impl IntoIterator<Item = &'a [GooseVerdict]>,
) -> Vec<GooseVerdict> {
    let mut merged: Vec<(GooseVerdict, usize)> = Vec::new();
    for verdict in per_process.into_iter().flatten() {
        match merged.iter_mut().find(|(m, _)| m.rule == verdict.rule) {
            Some((m, count)) => {
                m.passed &= verdict.passed;
                m.observed.push_str(", ");
                m.observed.push_str(&verdict.observed);
                *count += 1;
            }
            None => merged.push((verdict.clone(), 1)),
        }
    }
    merged
        .into_iter()
        .map(|(mut m, count)| {
            if count > 1 {
                m.observed = format!("{count} processes: {}", m.observed);
            }
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_goose_rule_is_judged_once_over_every_process() {
        let verdict = |rule: &str, observed: &str, passed| GooseVerdict {
            rule: rule.into(),
            observed: observed.into(),
            passed,
        };
        let first = [
            verdict("error-rate<=0%", "0%", true),
            verdict("p99<3s", "1ms", true),
        ];
        let second = [
            verdict("error-rate<=0%", "0%", true),
            verdict("p99<3s", "4s", false),
        ];
        let merged = merge_goose_verdicts([&first[..], &second[..]]);
        assert_eq!(
            merged,
            vec![
                verdict("error-rate<=0%", "2 processes: 0%, 0%", true),
                verdict("p99<3s", "2 processes: 1ms, 4s", false),
            ]
        );
    }
}
