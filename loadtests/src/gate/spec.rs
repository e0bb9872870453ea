//! The gate file (`fixtures/gate.toml`): which scenario a gate runs, how
//! many pairs, and per metric how much worse the candidate may be.
//!
//! ```toml
//! [gate.release]
//! scenario = "gate"
//! pairs = 3
//! max_pairs = 6
//! [gate.release.checks]
//! cpu-per-delivery = { worse_by = "15%" }   # relative: the pair ratio
//! rss-growth = { worse_by = "32B" }         # absolute: the pair difference
//! loss = { at_most = 0 }                    # every candidate run
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::gate::metric::{GateMetric, Unit};
use crate::thresholds::{parse_bytes, parse_time_micros};

/// The gate file shipped with the repository.
pub const DEFAULT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/gate.toml");

/// The whole file: gates by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateFile {
    /// Gates by name.
    #[serde(default)]
    gate: BTreeMap<String, GateFields>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GateFields {
    description: String,
    scenario: String,
    #[serde(default = "default_pairs")]
    pairs: usize,
    #[serde(default = "default_max_pairs")]
    max_pairs: usize,
    #[serde(default = "default_confidence")]
    confidence: f64,
    checks: BTreeMap<String, CheckFields>,
}

fn default_pairs() -> usize {
    3
}

fn default_max_pairs() -> usize {
    6
}

fn default_confidence() -> f64 {
    0.9
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckFields {
    worse_by: Option<String>,
    at_most: Option<f64>,
}

/// How much worse a metric may get.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum Tolerance {
    /// The candidate/baseline ratio of a pair may exceed 1 by this fraction
    /// (0.15 for `15%`).
    Relative(f64),
    /// The candidate − baseline difference of a pair may be at most this, in
    /// the metric's unit: for figures near zero, where ratios mean nothing.
    Absolute(f64),
    /// Every candidate run must be at most this (correctness counts).
    AtMost(f64),
}

/// One metric and its tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// What is compared.
    pub metric: GateMetric,
    /// How much worse it may get.
    pub tolerance: Tolerance,
}

/// A gate, resolved.
#[derive(Debug, Clone)]
pub struct GateSpec {
    /// Its name in the file.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The scenario (of the scenario file) every run runs.
    pub scenario: String,
    /// Pairs always run.
    pub pairs: usize,
    /// Pairs at most, while a check is undecided.
    pub max_pairs: usize,
    /// Confidence of the interval the verdict reads (0.9: a 90 % interval).
    pub confidence: f64,
    /// What is compared, in the file's order of names.
    pub checks: Vec<Check>,
}

impl GateFile {
    /// Reads and checks a gate file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read gate file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("gate file {} is not valid", path.display()))
    }

    /// Parses and checks the text of a gate file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: GateFile = toml::from_str(text)?;
        for name in file.gate.keys() {
            file.resolve(name)?;
        }
        Ok(file)
    }

    /// The gate called `name`.
    pub fn resolve(&self, name: &str) -> anyhow::Result<GateSpec> {
        let g = self.gate.get(name).with_context(|| {
            let known: Vec<_> = self.gate.keys().map(String::as_str).collect();
            format!("no gate {name:?}; known: {}", known.join(", "))
        })?;
        if g.pairs < 3 {
            bail!("gate {name}: pairs must be at least 3 (fewer cannot tell noise from a change)");
        }
        if g.max_pairs < g.pairs {
            bail!("gate {name}: max_pairs must be at least pairs");
        }
        if !(g.confidence > 0.5 && g.confidence < 1.0) {
            bail!("gate {name}: confidence must be above 0.5 and below 1");
        }
        if g.checks.is_empty() {
            bail!("gate {name}: no checks");
        }
        let checks = g
            .checks
            .iter()
            .map(|(metric, c)| {
                let metric = GateMetric::parse(metric).with_context(|| format!("gate {name}"))?;
                let tolerance = match (&c.worse_by, c.at_most) {
                    (Some(w), None) => parse_worse_by(metric, w)
                        .with_context(|| format!("gate {name}, {metric}: worse_by {w:?}"))?,
                    (None, Some(n)) if n.is_finite() && n >= 0.0 => Tolerance::AtMost(n),
                    (None, Some(_)) => {
                        bail!("gate {name}, {metric}: at_most must be a non-negative number")
                    }
                    _ => bail!("gate {name}, {metric}: give exactly one of worse_by and at_most"),
                };
                Ok(Check { metric, tolerance })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(GateSpec {
            name: name.to_owned(),
            description: g.description.clone(),
            scenario: g.scenario.clone(),
            pairs: g.pairs,
            max_pairs: g.max_pairs,
            confidence: g.confidence,
            checks,
        })
    }

    /// The gates' names.
    pub fn names(&self) -> Vec<&str> {
        self.gate.keys().map(String::as_str).collect()
    }
}

/// `15%` is relative; anything else is absolute in the metric's unit (times
/// need `us`, `ms` or `s`; sizes take `B`, `KiB`, `MiB`).
fn parse_worse_by(metric: GateMetric, text: &str) -> anyhow::Result<Tolerance> {
    let t = text.trim();
    let value = if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().context("not a percentage")?;
        return if p.is_finite() && p >= 0.0 {
            Ok(Tolerance::Relative(p / 100.0))
        } else {
            bail!("a percentage must be non-negative")
        };
    } else {
        match metric.unit() {
            Unit::Micros => {
                if !t.ends_with('s') {
                    bail!("a time needs its unit (us, ms or s)");
                }
                parse_time_micros(t)?
            }
            Unit::Bytes => parse_bytes(t)?,
            Unit::Count => t.parse().context("not a number")?,
        }
    };
    if !(value.is_finite() && value >= 0.0) {
        bail!("must be non-negative");
    }
    Ok(Tolerance::Absolute(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_gate_file_loads() {
        let file = GateFile::load(Path::new(DEFAULT_FILE)).expect("fixtures/gate.toml loads");
        let spec = file.resolve("release").expect("the release gate");
        assert!(spec.pairs >= 3);
        assert!(
            spec.checks
                .iter()
                .any(|c| c.metric == GateMetric::CpuPerDelivery)
        );
        // Its scenario exists in the scenario file.
        let scenarios =
            crate::scenario::ScenarioFile::load(Path::new(crate::scenario::DEFAULT_FILE)).unwrap();
        scenarios.resolve(&spec.scenario).unwrap();
    }

    #[test]
    fn tolerances_parse_by_unit() {
        let file = GateFile::parse(
            r#"
            [gate.g]
            description = "d"
            scenario = "quick"
            [gate.g.checks]
            cpu-per-delivery = { worse_by = "15%" }
            latency-p99 = { worse_by = "2ms" }
            rss-growth = { worse_by = "1KiB" }
            loss = { at_most = 0 }
            "#,
        )
        .unwrap();
        let spec = file.resolve("g").unwrap();
        let by = |m: GateMetric| {
            spec.checks
                .iter()
                .find(|c| c.metric == m)
                .unwrap()
                .tolerance
        };
        assert_eq!(by(GateMetric::CpuPerDelivery), Tolerance::Relative(0.15));
        assert_eq!(by(GateMetric::Latency(99.0)), Tolerance::Absolute(2000.0));
        assert_eq!(by(GateMetric::RssGrowth), Tolerance::Absolute(1024.0));
        assert_eq!(by(GateMetric::Loss), Tolerance::AtMost(0.0));
        assert_eq!((spec.pairs, spec.max_pairs), (3, 6));
    }

    #[test]
    fn bad_gates_are_refused_with_the_reason() {
        let bad = |checks: &str, extra: &str| {
            let text = format!(
                "[gate.g]\ndescription = \"d\"\nscenario = \"quick\"\n{extra}\n[gate.g.checks]\n{checks}\n"
            );
            format!("{:#}", GateFile::parse(&text).unwrap_err())
        };
        assert!(bad("latency-p99 = { worse_by = \"2\" }", "").contains("needs its unit"));
        assert!(bad("loss = { at_most = -1 }", "").contains("non-negative"));
        assert!(bad("loss = {}", "").contains("exactly one"));
        assert!(bad("nope = { at_most = 0 }", "").contains("unknown gate metric"));
        assert!(bad("loss = { at_most = 0 }", "pairs = 2").contains("at least 3"));
    }
}
