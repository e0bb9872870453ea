//! What the gate compares, read off one run's `report.json`: the server's
//! cost (CPU per delivery, memory per user, memory growth per delivery),
//! latency percentiles, connect and subscribe times, and the correctness
//! counts that must stay zero.

use std::fmt;

use anyhow::{Context, bail};

use crate::report::RunReport;
use crate::thresholds::{format_bytes, format_micros};

/// One figure of a run the gate can compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GateMetric {
    /// Server CPU per delivery over the publish window, µs.
    CpuPerDelivery,
    /// Server RSS growth per connected user, from before the ramp to the end
    /// of the drain, bytes.
    RssPerUser,
    /// Server RSS growth during publishing per delivery, bytes (a leak).
    RssGrowth,
    /// End-to-end latency at a percentile, µs.
    Latency(f64),
    /// Goose's `WS connect` 99th percentile, µs.
    ConnectP99,
    /// Goose's `WS subscribe` 99th percentile, µs.
    SubscribeP99,
    /// Deliveries missing against what was published.
    Loss,
    /// Events a user received twice.
    Duplicates,
    /// Events older than one already received of the same token and kind.
    OutOfOrder,
    /// User tokens that did not end on their last published price.
    StaleFinalPrices,
    /// Users that did not connect and subscribe.
    FailedUsers,
}

/// The unit a metric's values (and tolerances) are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Bytes.
    Bytes,
    /// A count.
    Count,
}

impl GateMetric {
    /// Parses a metric's name as the gate file writes it.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Ok(match name {
            "cpu-per-delivery" => GateMetric::CpuPerDelivery,
            "rss-per-user" => GateMetric::RssPerUser,
            "rss-growth" => GateMetric::RssGrowth,
            "connect-p99" => GateMetric::ConnectP99,
            "subscribe-p99" => GateMetric::SubscribeP99,
            "loss" => GateMetric::Loss,
            "duplicates" => GateMetric::Duplicates,
            "out-of-order" => GateMetric::OutOfOrder,
            "stale-final-prices" => GateMetric::StaleFinalPrices,
            "failed-users" => GateMetric::FailedUsers,
            other => match other.strip_prefix("latency-p") {
                Some(p) => {
                    let p: f64 = p
                        .parse()
                        .with_context(|| format!("{other:?}: the percentile is not a number"))?;
                    if !(p > 0.0 && p < 100.0) {
                        bail!("{other:?}: the percentile must be above 0 and below 100");
                    }
                    GateMetric::Latency(p)
                }
                None => bail!(
                    "unknown gate metric {other:?}; known: cpu-per-delivery, rss-per-user, \
                     rss-growth, latency-pNN, connect-p99, subscribe-p99, loss, duplicates, \
                     out-of-order, stale-final-prices, failed-users"
                ),
            },
        })
    }

    /// The unit of its values.
    pub fn unit(self) -> Unit {
        match self {
            GateMetric::CpuPerDelivery
            | GateMetric::Latency(_)
            | GateMetric::ConnectP99
            | GateMetric::SubscribeP99 => Unit::Micros,
            GateMetric::RssPerUser | GateMetric::RssGrowth => Unit::Bytes,
            GateMetric::Loss
            | GateMetric::Duplicates
            | GateMetric::OutOfOrder
            | GateMetric::StaleFinalPrices
            | GateMetric::FailedUsers => Unit::Count,
        }
    }

    /// Its value in `report`, `None` when the run did not measure it (a
    /// server run elsewhere has no process figures; no latency samples).
    /// Latency is taken from the schedule (`scheduledAt`), or from the
    /// events' stamps with `stamped` (when one side's publisher does not
    /// send a schedule, both sides are compared on their stamps).
    pub fn value(self, report: &RunReport, stamped: bool) -> Option<f64> {
        let server = &report.server;
        let acc = &report.accounting;
        let has_latency = report.latency.count > 0;
        match self {
            GateMetric::CpuPerDelivery => server.cpu_per_delivery_us,
            GateMetric::RssPerUser => server.rss_per_user_bytes,
            GateMetric::RssGrowth => server.rss_growth_per_delivery_bytes,
            GateMetric::Latency(p) => {
                if !has_latency {
                    return None;
                }
                let h = if stamped {
                    report.stamped_histogram().ok()?
                } else {
                    report.histogram().ok()?
                };
                (!h.is_empty()).then(|| h.value_at_quantile(p / 100.0) as f64)
            }
            GateMetric::ConnectP99 => {
                (report.users.connect.count > 0).then_some(report.users.connect.p99_us as f64)
            }
            GateMetric::SubscribeP99 => {
                (report.users.subscribe.count > 0).then_some(report.users.subscribe.p99_us as f64)
            }
            GateMetric::Loss => Some(acc.lost as f64),
            GateMetric::Duplicates => Some(acc.duplicates as f64),
            GateMetric::OutOfOrder => Some(acc.out_of_order as f64),
            GateMetric::StaleFinalPrices => Some(acc.stale_final_prices as f64),
            GateMetric::FailedUsers => {
                Some(report.users.wanted.saturating_sub(report.users.live) as f64)
            }
        }
    }

    /// How a value of this metric reads.
    pub fn format(self, value: f64) -> String {
        match self.unit() {
            Unit::Micros => format_micros(value),
            Unit::Bytes => format_bytes(value),
            Unit::Count => format!("{value:.0}"),
        }
    }
}

impl fmt::Display for GateMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateMetric::CpuPerDelivery => f.write_str("cpu-per-delivery"),
            GateMetric::RssPerUser => f.write_str("rss-per-user"),
            GateMetric::RssGrowth => f.write_str("rss-growth"),
            GateMetric::Latency(p) => write!(f, "latency-p{p}"),
            GateMetric::ConnectP99 => f.write_str("connect-p99"),
            GateMetric::SubscribeP99 => f.write_str("subscribe-p99"),
            GateMetric::Loss => f.write_str("loss"),
            GateMetric::Duplicates => f.write_str("duplicates"),
            GateMetric::OutOfOrder => f.write_str("out-of-order"),
            GateMetric::StaleFinalPrices => f.write_str("stale-final-prices"),
            GateMetric::FailedUsers => f.write_str("failed-users"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for name in [
            "cpu-per-delivery",
            "rss-per-user",
            "rss-growth",
            "latency-p50",
            "latency-p99.9",
            "connect-p99",
            "subscribe-p99",
            "loss",
            "duplicates",
            "out-of-order",
            "stale-final-prices",
            "failed-users",
        ] {
            assert_eq!(GateMetric::parse(name).unwrap().to_string(), name);
        }
        for bad in ["latency-p100", "latency-px", "cpu", ""] {
            assert!(GateMetric::parse(bad).is_err(), "{bad}");
        }
    }
}
