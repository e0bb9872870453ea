//! Pass/fail rules on a run's own figures (latency, loss, duplicates, …), as
//! data: `latency-p99<5ms`, `loss<=0`, `connect-success>=100%`.
//!
//! Goose judges its request rules itself (connect and subscribe times, error
//! rate); these cover what only the load users see.

use std::fmt;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    /// End-to-end latency at a percentile (0 < p < 100), in microseconds,
    /// from when the publisher's schedule had the event due (`scheduledAt`):
    /// what a user would believe, stalls of the publisher included.
    LatencyPercentile(f64),
    /// End-to-end latency at a percentile from the event's `timestamp` (when
    /// the publisher actually made it), in microseconds.
    LatencyStampedPercentile(f64),
    /// Mean end-to-end latency, in microseconds.
    LatencyAvg,
    /// Largest end-to-end latency, in microseconds.
    LatencyMax,
    /// Share of users that connected and subscribed, in percent.
    ConnectSuccess,
    /// Deliveries missing against what was published (count).
    Loss,
    /// Deliveries missing, in percent of those expected.
    LossRate,
    /// Events a user received twice (count).
    Duplicates,
    /// Events that arrived before an older one of the same token and kind.
    OutOfOrder,
    /// Users' tokens whose last price received is older than the token's
    /// last one published (count).
    StaleFinalPrices,
    /// Tokens whose price in the JetStream last-prices store is older than
    /// the last one published, at the end of a fleet run (count).
    StaleStoredPrices,
    /// Deliveries per second during the hold.
    Throughput,
    /// Reconnections during the run (count).
    Reconnects,
    /// Server RSS growth per connected user, from before the ramp to the
    /// end of the drain with every user connected, in bytes (embedded runs).
    RssPerUser,
    /// Server RSS growth during publishing per delivery, in bytes: a leak
    /// detector, near zero for a server that keeps its memory flat under a
    /// steady load (embedded runs).
    RssGrowth,
}

impl Metric {
    fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "latency-avg" => Metric::LatencyAvg,
            "latency-max" => Metric::LatencyMax,
            "connect-success" => Metric::ConnectSuccess,
            "loss" => Metric::Loss,
            "loss-rate" => Metric::LossRate,
            "duplicates" => Metric::Duplicates,
            "out-of-order" => Metric::OutOfOrder,
            "stale-final-prices" => Metric::StaleFinalPrices,
            "stale-stored-prices" => Metric::StaleStoredPrices,
            "throughput" => Metric::Throughput,
            "reconnects" => Metric::Reconnects,
            "rss-per-user" => Metric::RssPerUser,
            "rss-growth" => Metric::RssGrowth,
            other if other.starts_with("latency-stamped-p") => {
                let p = parse_percentile(other, "latency-stamped-p")?;
                Metric::LatencyStampedPercentile(p)
            }
            other => match other.strip_prefix("latency-p") {
                Some(_) => Metric::LatencyPercentile(parse_percentile(other, "latency-p")?),
                None => bail!(
                    "unknown metric {other:?}; known: latency-pNN, latency-stamped-pNN, latency-avg, latency-max, \
                     connect-success, loss, loss-rate, duplicates, out-of-order, stale-final-prices, \
                     stale-stored-prices, throughput, reconnects, rss-per-user, rss-growth"
                ),
            },
        })
    }

    fn is_time(self) -> bool {
        matches!(
            self,
            Metric::LatencyPercentile(_)
                | Metric::LatencyStampedPercentile(_)
                | Metric::LatencyAvg
                | Metric::LatencyMax
        )
    }

    fn is_bytes(self) -> bool {
        matches!(self, Metric::RssPerUser | Metric::RssGrowth)
    }

    fn is_percent(self) -> bool {
        matches!(self, Metric::ConnectSuccess | Metric::LossRate)
    }

    /// How a value of this metric reads.
    pub fn format(self, value: f64) -> String {
        if self.is_time() {
            format_micros(value)
        } else if self.is_percent() {
            format!("{value:.2}%")
        } else if self.is_bytes() {
            format_bytes(value)
        } else if self == Metric::Throughput {
            format!("{value:.0}/s")
        } else {
            format!("{value:.0}")
        }
    }
}

/// The percentile of a metric name `<prefix><p>`, above 0 and below 100.
fn parse_percentile(name: &str, prefix: &str) -> anyhow::Result<f64> {
    let p: f64 = name[prefix.len()..]
        .parse()
        .with_context(|| format!("{name:?}: the percentile is not a number"))?;
    if !(p > 0.0 && p < 100.0) {
        bail!("{name:?}: the percentile must be above 0 and below 100");
    }
    Ok(p)
}

/// Microseconds as a short human time.
pub fn format_micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2}s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}µs")
    }
}

/// Bytes as a short human figure (`512 B`, `7.4 KiB`, `12.0 MiB`);
/// negative values (memory given back) keep their sign.
pub fn format_bytes(bytes: f64) -> String {
    let abs = bytes.abs();
    if abs >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", bytes / (1u64 << 30) as f64)
    } else if abs >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
    } else if abs >= 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{bytes:.0} B")
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Op {
    fn passes(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Less => observed < limit,
            Op::LessOrEqual => observed <= limit,
            Op::Greater => observed > limit,
            Op::GreaterOrEqual => observed >= limit,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Less => "<",
            Op::LessOrEqual => "<=",
            Op::Greater => ">",
            Op::GreaterOrEqual => ">=",
        }
    }
}

/// One rule, such as `latency-p99<5ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The text it was parsed from.
    pub text: String,
    /// What it measures.
    pub metric: Metric,
    /// How it compares.
    pub op: Op,
    /// The limit, in the metric's unit (µs for times, percent, count, /s).
    pub limit: f64,
}

impl Rule {
    /// Parses `<metric><op><value>`; times take `us`, `ms` or `s` (bare
    /// numbers are milliseconds), sizes `B`, `KiB` or `MiB` (bare numbers are
    /// bytes), percentages an optional `%`.
    pub fn parse(text: &str) -> anyhow::Result<Rule> {
        let t = text.trim();
        let at = t.find(['<', '>']).with_context(|| {
            format!("{t:?}: expected <metric><op><value>, e.g. latency-p99<5ms")
        })?;
        let (name, rest) = t.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::LessOrEqual, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::GreaterOrEqual, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Less, v)
        } else {
            (Op::Greater, &rest[1..])
        };
        let metric = Metric::parse(name.trim())?;
        let value = value.trim();
        let limit = if metric.is_time() {
            parse_time_micros(value).with_context(|| format!("{t:?}: bad time {value:?}"))?
        } else if metric.is_bytes() {
            parse_bytes(value).with_context(|| format!("{t:?}: bad size {value:?}"))?
        } else {
            let v = value.strip_suffix('%').unwrap_or(value).trim();
            let v = v.strip_suffix("/s").unwrap_or(v);
            let n: f64 = v
                .parse()
                .with_context(|| format!("{t:?}: {value:?} is not a number"))?;
            if metric.is_percent() && !(0.0..=100.0).contains(&n) {
                bail!("{t:?}: a percentage must be between 0 and 100");
            }
            n
        };
        if !limit.is_finite() || limit < 0.0 {
            bail!("{t:?}: the limit must be a non-negative number");
        }
        Ok(Rule {
            text: t.to_owned(),
            metric,
            op,
            limit,
        })
    }

    /// Judges the rule against `observed` (in the metric's unit).
    pub fn judge(&self, observed: Option<f64>) -> Verdict {
        let passed = observed.is_some_and(|o| self.op.passes(o, self.limit));
        Verdict {
            rule: self.text.clone(),
            observed: observed.map_or_else(|| "no samples".into(), |o| self.metric.format(o)),
            limit: format!("{}{}", self.op.as_str(), self.metric.format(self.limit)),
            observed_value: observed,
            passed,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

pub(crate) fn parse_time_micros(v: &str) -> anyhow::Result<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us").or_else(|| v.strip_suffix("µs")) {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        (v, 1000.0)
    };
    Ok(num.trim().parse::<f64>()? * factor)
}

pub(crate) fn parse_bytes(v: &str) -> anyhow::Result<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("MiB") {
        (n, 1024.0 * 1024.0)
    } else if let Some(n) = v.strip_suffix("KiB") {
        (n, 1024.0)
    } else if let Some(n) = v.strip_suffix('B') {
        (n, 1.0)
    } else {
        (v, 1.0)
    };
    Ok(num.trim().parse::<f64>()? * factor)
}

/// The result of judging one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verdict {
    /// The rule's text.
    pub rule: String,
    /// What was observed, formatted.
    pub observed: String,
    /// The limit with its operator, formatted.
    pub limit: String,
    /// What was observed, in the metric's unit.
    pub observed_value: Option<f64>,
    /// Whether it passed.
    pub passed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        let r = Rule::parse("latency-p99<5ms").unwrap();
        assert_eq!(
            (r.metric, r.op, r.limit),
            (Metric::LatencyPercentile(99.0), Op::Less, 5000.0)
        );
        assert_eq!(Rule::parse("latency-p99.9<=1s").unwrap().limit, 1_000_000.0);
        assert_eq!(Rule::parse("latency-max<250us").unwrap().limit, 250.0);
        assert_eq!(
            Rule::parse("latency-stamped-p99.9<2ms").unwrap().metric,
            Metric::LatencyStampedPercentile(99.9)
        );
        assert_eq!(Rule::parse("latency-avg<2").unwrap().limit, 2000.0);
        assert_eq!(Rule::parse("connect-success>=100%").unwrap().limit, 100.0);
        assert_eq!(Rule::parse("loss<=0").unwrap().op, Op::LessOrEqual);
        assert_eq!(
            Rule::parse("stale-final-prices<=0").unwrap().metric,
            Metric::StaleFinalPrices
        );
        assert_eq!(Rule::parse("throughput>=90000/s").unwrap().limit, 90000.0);
        let r = Rule::parse("rss-per-user<64KiB").unwrap();
        assert_eq!((r.metric, r.limit), (Metric::RssPerUser, 65536.0));
        assert_eq!(Rule::parse("rss-growth<=16B").unwrap().limit, 16.0);
        assert_eq!(Rule::parse("rss-growth<=2MiB").unwrap().limit, 2097152.0);
        assert_eq!(Rule::parse("rss-growth<8").unwrap().limit, 8.0);
        for bad in [
            "latency-p100<1ms",
            "latency-stamped-p0<1ms",
            "nope<1",
            "loss",
            "loss<=x",
            "connect-success>=120%",
            "loss<-1",
            "rss-per-user<1GB",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn judges_with_the_operator_and_fails_without_samples() {
        let r = Rule::parse("latency-p99<5ms").unwrap();
        assert!(r.judge(Some(4999.0)).passed);
        assert!(!r.judge(Some(5000.0)).passed);
        let v = r.judge(None);
        assert!(!v.passed);
        assert_eq!(v.observed, "no samples");
        assert!(Rule::parse("loss<=0").unwrap().judge(Some(0.0)).passed);
    }
}
