//! The gate's statistics: one metric's pairs of runs → a judgement.
//!
//! Each pair (a baseline run and a candidate run, back to back) gives one
//! *excess*: the ratio − 1 for a relative tolerance, the difference for an
//! absolute one. The verdict reads the median excess and a percentile
//! bootstrap interval of that median:
//!
//! - **regression** when the median exceeds the tolerance *and* the whole
//!   interval lies above zero (the candidate is worse with confidence, and
//!   by more than allowed at its best estimate);
//! - **pass** when the interval's top is within the tolerance, or the median
//!   is within half of it (tail metrics such as connect p99 have intervals
//!   far wider than any tolerance; more pairs would not move a median that
//!   far);
//! - otherwise **undecided** (the median is past half the tolerance but the
//!   interval still reaches zero: a close call): the runner adds a pair, and
//!   at its last pair a still-undecided check passes (no evidence of a
//!   regression beyond the tolerance).
//!
//! With three pairs the bootstrap interval of the median is the smallest to
//! the largest excess, so a regression needs all three pairs worse and the
//! middle one past the tolerance: a sign test's logic, and the median keeps
//! one wild run from deciding. The bootstrap draws from a fixed seed, so the
//! same runs always give the same verdict.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::gate::spec::{Check, Tolerance};

/// Resamples of the bootstrap.
const RESAMPLES: usize = 4000;
/// The bootstrap's seed: verdicts are repeatable.
const SEED: u64 = 0x0D1_6A7E;

/// What one check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Judgement {
    /// Within tolerance.
    Pass,
    /// Worse than allowed.
    Regression,
    /// Not yet clear: run another pair.
    Undecided,
    /// A run did not measure it: no verdict.
    Unmeasured,
}

/// One check over every pair so far.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The metric's name.
    pub metric: String,
    /// Its tolerance.
    pub tolerance: Tolerance,
    /// The baseline's values, pair by pair (`None`: not measured).
    pub baseline: Vec<Option<f64>>,
    /// The candidate's values, pair by pair.
    pub candidate: Vec<Option<f64>>,
    /// Each pair's excess: ratio − 1 (relative), difference (absolute) or
    /// the candidate's value (`at_most`).
    pub excess: Vec<f64>,
    /// The median excess.
    pub median: f64,
    /// The interval of the median excess (bootstrap, at the gate's
    /// confidence; for `at_most`, the candidate's smallest and largest).
    pub interval: (f64, f64),
    /// The conclusion.
    pub judgement: Judgement,
}

/// Judges `check` on `pairs` of (baseline, candidate) values;
/// `last_round` turns an undecided check into a pass.
pub fn judge(
    check: &Check,
    pairs: &[(Option<f64>, Option<f64>)],
    confidence: f64,
    last_round: bool,
) -> CheckResult {
    let baseline: Vec<_> = pairs.iter().map(|p| p.0).collect();
    let candidate: Vec<_> = pairs.iter().map(|p| p.1).collect();
    let mut result = CheckResult {
        metric: check.metric.to_string(),
        tolerance: check.tolerance,
        baseline,
        candidate,
        excess: Vec::new(),
        median: f64::NAN,
        interval: (f64::NAN, f64::NAN),
        judgement: Judgement::Unmeasured,
    };
    if let Tolerance::AtMost(limit) = check.tolerance {
        let Some(values) = result
            .candidate
            .iter()
            .copied()
            .collect::<Option<Vec<f64>>>()
        else {
            return result;
        };
        if values.is_empty() {
            return result;
        }
        result.median = median(&values);
        result.interval = (
            values.iter().copied().fold(f64::INFINITY, f64::min),
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        result.judgement = if result.interval.1 > limit {
            Judgement::Regression
        } else {
            Judgement::Pass
        };
        result.excess = values;
        return result;
    }
    let Some(excess) = pairs
        .iter()
        .map(|&(b, c)| Some(excess(check.tolerance, b?, c?)))
        .collect::<Option<Vec<f64>>>()
    else {
        return result;
    };
    if excess.is_empty() {
        return result;
    }
    let allowed = match check.tolerance {
        Tolerance::Relative(t) | Tolerance::Absolute(t) => t,
        Tolerance::AtMost(_) => unreachable!("handled above"),
    };
    result.median = median(&excess);
    result.interval = bootstrap_median_interval(&excess, confidence);
    result.judgement = if result.median > allowed && result.interval.0 > 0.0 {
        Judgement::Regression
    } else if result.interval.1 <= allowed || result.median <= allowed / 2.0 || last_round {
        Judgement::Pass
    } else {
        Judgement::Undecided
    };
    result.excess = excess;
    result
}

/// One pair's excess: how much worse the candidate is.
fn excess(tolerance: Tolerance, baseline: f64, candidate: f64) -> f64 {
    match tolerance {
        Tolerance::Relative(_) if baseline > 0.0 => candidate / baseline - 1.0,
        // A ratio to nothing: no worse when the candidate is no larger.
        Tolerance::Relative(_) if candidate <= baseline => 0.0,
        Tolerance::Relative(_) => f64::INFINITY,
        Tolerance::Absolute(_) | Tolerance::AtMost(_) => candidate - baseline,
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The percentile bootstrap interval of the median of `values`.
fn bootstrap_median_interval(values: &[f64], confidence: f64) -> (f64, f64) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let n = values.len();
    let mut sample = vec![0.0; n];
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            for s in sample.iter_mut() {
                *s = values[rng.random_range(0..n)];
            }
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| medians[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    (at(tail), at(1.0 - tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::metric::GateMetric;

    fn check(tolerance: Tolerance) -> Check {
        Check {
            metric: GateMetric::CpuPerDelivery,
            tolerance,
        }
    }

    fn pairs(ratios: &[f64]) -> Vec<(Option<f64>, Option<f64>)> {
        ratios
            .iter()
            .map(|r| (Some(10.0), Some(10.0 * r)))
            .collect()
    }

    #[test]
    fn a_clear_regression_is_caught_in_three_pairs() {
        let r = judge(
            &check(Tolerance::Relative(0.15)),
            &pairs(&[1.22, 1.19, 1.25]),
            0.9,
            false,
        );
        assert_eq!(r.judgement, Judgement::Regression);
        assert!((r.median - 0.22).abs() < 1e-9);
    }

    #[test]
    fn one_wild_pair_does_not_decide() {
        // One pair 60 % worse, the median 10 %: past half the tolerance but
        // the interval reaches below zero, so another pair is asked for.
        let c = check(Tolerance::Relative(0.15));
        let r = judge(&c, &pairs(&[1.1, 1.6, 0.98]), 0.9, false);
        assert_eq!(r.judgement, Judgement::Undecided);
        let r = judge(&c, &pairs(&[1.1, 1.6, 0.98]), 0.9, true);
        assert_eq!(r.judgement, Judgement::Pass);
        // With the median at zero, the wild pair changes nothing.
        let r = judge(&c, &pairs(&[1.0, 1.6, 0.98]), 0.9, false);
        assert_eq!(r.judgement, Judgement::Pass);
    }

    #[test]
    fn noise_within_tolerance_passes_at_once() {
        let r = judge(
            &check(Tolerance::Relative(0.15)),
            &pairs(&[1.04, 0.97, 1.08]),
            0.9,
            false,
        );
        assert_eq!(r.judgement, Judgement::Pass);
    }

    #[test]
    fn worse_in_every_pair_but_within_tolerance_passes() {
        let r = judge(
            &check(Tolerance::Relative(0.15)),
            &pairs(&[1.05, 1.1, 1.2, 1.08, 1.12]),
            0.9,
            true,
        );
        assert_eq!(r.judgement, Judgement::Pass);
    }

    #[test]
    fn absolute_tolerances_read_differences() {
        let c = check(Tolerance::Absolute(32.0));
        let p = [
            (Some(2.0), Some(130.0)),
            (Some(-1.0), Some(120.0)),
            (Some(3.0), Some(140.0)),
        ];
        let r = judge(&c, &p, 0.9, false);
        assert_eq!(r.judgement, Judgement::Regression);
        assert_eq!(r.median, 128.0);
        let p = [
            (Some(2.0), Some(5.0)),
            (Some(-1.0), Some(-3.0)),
            (Some(3.0), Some(1.0)),
        ];
        assert_eq!(judge(&c, &p, 0.9, false).judgement, Judgement::Pass);
    }

    #[test]
    fn at_most_fails_on_any_candidate_run() {
        let c = check(Tolerance::AtMost(0.0));
        let p = [
            (Some(0.0), Some(0.0)),
            (Some(0.0), Some(11.0)),
            (Some(0.0), Some(0.0)),
        ];
        assert_eq!(judge(&c, &p, 0.9, false).judgement, Judgement::Regression);
        let p = [(Some(5.0), Some(0.0)); 3];
        assert_eq!(judge(&c, &p, 0.9, false).judgement, Judgement::Pass);
    }

    #[test]
    fn a_missing_figure_gives_no_verdict() {
        let c = check(Tolerance::Relative(0.1));
        let p = [
            (Some(1.0), None),
            (Some(1.0), Some(1.0)),
            (Some(1.0), Some(1.0)),
        ];
        assert_eq!(judge(&c, &p, 0.9, true).judgement, Judgement::Unmeasured);
    }

    #[test]
    fn the_interval_is_repeatable_and_brackets_the_median() {
        let v = [0.1, -0.05, 0.2, 0.07, 0.01, 0.3];
        let a = bootstrap_median_interval(&v, 0.9);
        assert_eq!(a, bootstrap_median_interval(&v, 0.9));
        let m = median(&v);
        assert!(a.0 <= m && m <= a.1, "{a:?} {m}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
