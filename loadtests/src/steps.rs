//! A stepped run (`[step.<name>]`) as data: one summary per step, the
//! highest rate that held, and, with `compare_forwarder`, odin-server against
//! the bare forwarder at the first rate on the same run. Written as
//! `report.json` in the stepped run's folder (each step's full report is in
//! its own sub-folder); `render::steps` makes the table people read.

use serde::{Deserialize, Serialize};

use crate::report::{LatencySummary, Outcome, RunReport};

/// Current format version of [`StepsReport`].
pub const STEPS_REPORT_VERSION: u32 = 1;

/// One stepped run, complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepsReport {
    /// Format version of this file.
    pub version: u32,
    /// The stepped run's name (`fanout`, `ceiling`, …).
    pub name: String,
    /// The scenario every step runs.
    pub scenario: String,
    /// Its users.
    pub users: usize,
    /// Token channels per user.
    pub subscriptions: usize,
    /// Simulated tokens.
    pub tokens: usize,
    /// Every step run, by rising rate.
    pub steps: Vec<StepSummary>,
    /// The highest rate at which every threshold held (with every step
    /// below it holding too).
    pub ceiling_rate: Option<f64>,
    /// odin-server against the bare forwarder at the first rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarder_comparison: Option<ForwarderComparison>,
}

impl StepsReport {
    /// The report of stepped run `name` of `scenario`, from its steps'
    /// reports (each in the sub-folder named after its scenario).
    pub fn new(
        name: &str,
        scenario: &str,
        reports: &[RunReport],
        forwarder_comparison: Option<ForwarderComparison>,
    ) -> Self {
        let first = reports.first();
        Self {
            version: STEPS_REPORT_VERSION,
            name: name.to_owned(),
            scenario: scenario.to_owned(),
            users: first.map_or(0, |r| r.scenario.users),
            subscriptions: first.map_or(0, |r| r.scenario.subscriptions),
            tokens: first.map_or(0, |r| r.scenario.tokens),
            steps: reports.iter().map(StepSummary::of).collect(),
            ceiling_rate: ceiling(reports).map(|r| r.scenario.publish_rate),
            forwarder_comparison,
        }
    }
}

/// The figures of one step a fan-out benchmark compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    /// Price events per second asked for.
    pub rate: f64,
    /// The step's folder, relative to the stepped run's (its scenario name).
    pub folder: String,
    /// The binary under test (embedded runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The step's verdict.
    pub outcome: Outcome,
    /// Deliveries per second over the publishing time.
    pub deliveries_per_sec: f64,
    /// Deliveries the users had.
    pub delivered: u64,
    /// Deliveries they should have had.
    pub expected: u64,
    /// `expected − delivered` when positive.
    pub lost: u64,
    /// Events a user received twice.
    pub duplicates: u64,
    /// End-to-end latency.
    pub latency: LatencySummary,
    /// Server CPU per delivery, µs (embedded runs).
    pub server_cpu_per_delivery_us: Option<f64>,
    /// Server CPU as a share of one core (embedded runs).
    pub server_cpu_share: Option<f64>,
    /// Server peak RSS, bytes (embedded runs).
    pub server_peak_rss_bytes: Option<u64>,
    /// The load generator's CPU per delivery, µs.
    pub generator_cpu_per_delivery_us: f64,
    /// The load generator's scheduling lag p99, µs.
    pub generator_lag_p99_us: u64,
}

impl StepSummary {
    /// The summary of one step's report.
    pub fn of(r: &RunReport) -> Self {
        Self {
            rate: r.scenario.publish_rate,
            folder: r.scenario.name.clone(),
            server: r.server.binary.clone(),
            outcome: r.outcome.clone(),
            deliveries_per_sec: r.accounting.throughput_per_sec,
            delivered: r.accounting.delivered,
            expected: r.accounting.expected,
            lost: r.accounting.lost,
            duplicates: r.accounting.duplicates,
            latency: r.latency.clone(),
            server_cpu_per_delivery_us: r.server.cpu_per_delivery_us,
            server_cpu_share: r.server.cpu_share,
            server_peak_rss_bytes: r.server.process_after.map(|p| p.peak_rss_bytes),
            generator_cpu_per_delivery_us: r.generator.cpu_per_delivery_us,
            generator_lag_p99_us: r.generator.lag_p99_us,
        }
    }
}

/// odin-server and the bare forwarder under the same load on the same run:
/// issue #8 asks odin-server's CPU per delivery to be within 15 % of the
/// forwarder's. One pair of runs on this noisy machine can differ by 20 %
/// either way, so `compare_pairs` alternates more pairs and the figures
/// compared are the medians.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwarderComparison {
    /// Price events per second of both runs.
    pub rate: f64,
    /// odin-server's step (the first pair).
    pub odin: StepSummary,
    /// The bare forwarder's run right after it.
    pub forwarder: StepSummary,
    /// Further pairs, odin-server then the forwarder each, in run order.
    #[serde(default)]
    pub repeats: Vec<ComparisonPair>,
    /// Median of odin-server's CPU per delivery over every pair.
    #[serde(default)]
    pub odin_median_us: Option<f64>,
    /// Median of the forwarder's CPU per delivery over every pair.
    #[serde(default)]
    pub forwarder_median_us: Option<f64>,
    /// How much more CPU per delivery odin-server needs than the forwarder
    /// (medians), in percent; `None` when a figure is missing.
    pub odin_over_forwarder_percent: Option<f64>,
}

/// One more odin-server run and the forwarder's run after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComparisonPair {
    /// odin-server's run.
    pub odin: StepSummary,
    /// The forwarder's run.
    pub forwarder: StepSummary,
}

impl ForwarderComparison {
    /// Compares odin-server's runs with the forwarder's, pair by pair: the
    /// first of each is the stepped run's first step and the forwarder's
    /// run after it. Both slices hold at least one report.
    pub fn new(odin: &[RunReport], forwarder: &[RunReport]) -> Self {
        Self::of_summaries(
            odin.iter().map(StepSummary::of).collect(),
            forwarder.iter().map(StepSummary::of).collect(),
        )
    }

    /// [`ForwarderComparison::new`] from the runs' summaries.
    pub fn of_summaries(odin: Vec<StepSummary>, forwarder: Vec<StepSummary>) -> Self {
        let odin_median_us = median(odin.iter().map(|s| s.server_cpu_per_delivery_us));
        let forwarder_median_us = median(forwarder.iter().map(|s| s.server_cpu_per_delivery_us));
        let percent = match (odin_median_us, forwarder_median_us) {
            (Some(o), Some(f)) if f > 0.0 => Some((o - f) * 100.0 / f),
            _ => None,
        };
        let repeats = odin
            .iter()
            .zip(&forwarder)
            .skip(1)
            .map(|(o, f)| ComparisonPair {
                odin: o.clone(),
                forwarder: f.clone(),
            })
            .collect();
        Self {
            rate: odin[0].rate,
            odin: odin[0].clone(),
            forwarder: forwarder[0].clone(),
            repeats,
            odin_median_us,
            forwarder_median_us,
            odin_over_forwarder_percent: percent,
        }
    }

    /// Every pair, the first included, in run order.
    pub fn pairs(&self) -> impl Iterator<Item = (&StepSummary, &StepSummary)> {
        std::iter::once((&self.odin, &self.forwarder))
            .chain(self.repeats.iter().map(|p| (&p.odin, &p.forwarder)))
    }

    /// The one line the benchmark is about: `server CPU per delivery at 100
    /// events/s: odin-server X µs, bare forwarder Y µs, odin +Z %`.
    pub fn line(&self) -> String {
        let us = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2} µs"));
        let percent = self
            .odin_over_forwarder_percent
            .map_or("n/a".to_owned(), |p| format!("{p:+.0} %"));
        let pairs = 1 + self.repeats.len();
        let of = if pairs > 1 {
            format!(" (medians of {pairs} alternating runs each)")
        } else {
            String::new()
        };
        format!(
            "server CPU per delivery at {} events/s: odin-server {}, bare forwarder {}, odin {percent}{of}",
            self.rate,
            us(self.odin_median_us),
            us(self.forwarder_median_us),
        )
    }

    /// Why the comparison may not be trusted: a run that did not pass (a
    /// saturated generator or lost events measure something else).
    pub fn caveat(&self) -> Option<String> {
        let word = |o: &Outcome| match o {
            Outcome::Pass => None,
            Outcome::Fail => Some("failed a threshold".to_owned()),
            Outcome::Invalid { reason } => Some(format!("was invalid ({reason})")),
        };
        let parts: Vec<String> = self
            .pairs()
            .flat_map(|(o, f)| [("odin-server", o), ("the bare forwarder", f)])
            .filter_map(|(who, s)| word(&s.outcome).map(|w| format!("{who}'s run {w}")))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The highest-rate step that passed, when the steps below it passed too
/// (a pass above a failure is luck, not a ceiling).
pub fn ceiling(reports: &[RunReport]) -> Option<&RunReport> {
    reports
        .iter()
        .take_while(|r| r.outcome == Outcome::Pass)
        .last()
}

/// The median of the values present (the mean of the middle two for an
/// even count); `None` when there is none.
fn median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.flatten().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(cpu: Option<f64>) -> StepSummary {
        StepSummary {
            rate: 100.0,
            folder: "fanout-100".into(),
            server: Some("odin-server".into()),
            outcome: Outcome::Pass,
            deliveries_per_sec: 100_000.0,
            delivered: 10,
            expected: 10,
            lost: 0,
            duplicates: 0,
            latency: LatencySummary::default(),
            server_cpu_per_delivery_us: cpu,
            server_cpu_share: Some(0.5),
            server_peak_rss_bytes: Some(1 << 20),
            generator_cpu_per_delivery_us: 5.0,
            generator_lag_p99_us: 100,
        }
    }

    #[test]
    fn the_line_says_how_much_more_odin_needs() {
        let mut c =
            ForwarderComparison::of_summaries(vec![summary(Some(5.75))], vec![summary(Some(5.0))]);
        assert_eq!(
            c.line(),
            "server CPU per delivery at 100 events/s: odin-server 5.75 µs, bare forwarder 5.00 µs, odin +15 %"
        );
        assert_eq!(c.caveat(), None);
        c.forwarder_median_us = None;
        c.odin_over_forwarder_percent = None;
        c.forwarder.outcome = Outcome::Fail;
        assert!(
            c.line().ends_with("bare forwarder n/a, odin n/a"),
            "{}",
            c.line()
        );
        assert_eq!(
            c.caveat().as_deref(),
            Some("the bare forwarder's run failed a threshold")
        );
    }

    #[test]
    fn several_pairs_compare_their_medians() {
        let odin = [6.4, 6.8, 6.5].map(|v| summary(Some(v))).to_vec();
        let mut forwarder = [6.2, 6.0, 7.9].map(|v| summary(Some(v))).to_vec();
        forwarder[1].outcome = Outcome::Fail;
        let c = ForwarderComparison::of_summaries(odin, forwarder);
        assert_eq!(
            (c.odin_median_us, c.forwarder_median_us),
            (Some(6.5), Some(6.2))
        );
        assert_eq!(c.repeats.len(), 2);
        assert_eq!(c.pairs().count(), 3);
        assert!(
            c.line().ends_with(
                "odin-server 6.50 µs, bare forwarder 6.20 µs, odin +5 % (medians of 3 alternating runs each)"
            ),
            "{}",
            c.line()
        );
        assert_eq!(
            c.caveat().as_deref(),
            Some("the bare forwarder's run failed a threshold")
        );
    }

    #[test]
    fn the_median_skips_missing_figures() {
        assert_eq!(median([None, None].into_iter()), None);
        assert_eq!(median([Some(3.0), None, Some(1.0)].into_iter()), Some(2.0));
        assert_eq!(
            median([Some(3.0), Some(9.0), Some(1.0)].into_iter()),
            Some(3.0)
        );
    }
}
