//! The result of one run as data: everything the terminal summary, the JSON,
//! Markdown and HTML reports, the baseline comparison and the merge of
//! several load processes read.

use hdrhistogram::Histogram;
use odin_protocol::stats::StatsSnapshot;
use serde::{Deserialize, Serialize};

use crate::histogram::{decode_histogram, latency_histogram};
use crate::scenario::Scenario;
use crate::sysstat::ProcSample;
use crate::thresholds::Verdict;

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Every threshold passed (exit 0).
    Pass,
    /// At least one threshold failed (exit 1).
    Fail,
    /// The run could not give a verdict (exit 2): the load generator
    /// saturated, or connections could not be opened for reasons of its own.
    Invalid {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// The process exit code of this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::Invalid { .. } => 2,
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencySummary {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// One second of the latency timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePoint {
    /// Seconds since the run started.
    pub second: usize,
    /// Deliveries in that second.
    pub count: u64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Largest, µs.
    pub max_us: u64,
}

/// Users and their connections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsersSummary {
    /// Users the scenario asked for.
    pub wanted: usize,
    /// Users that connected and subscribed.
    pub live: usize,
    /// Users whose first connect or subscribe failed.
    pub failed: usize,
    /// Reconnections after a first connection.
    pub reconnects: u64,
    /// Connection attempts that failed (first ones and reconnects).
    pub connect_failures: u64,
    /// Connect time percentiles from Goose's `WS connect` request, µs.
    pub connect: LatencySummary,
    /// Subscribe time percentiles from Goose's `WS subscribe` request, µs.
    pub subscribe: LatencySummary,
}

/// Deliveries against what the publisher published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accounting {
    /// Deliveries the users should have had (events of their tokens).
    pub expected: u64,
    /// Deliveries they had (unique, in the run).
    pub delivered: u64,
    /// `expected − delivered` when positive.
    pub lost: u64,
    /// Events a user received twice.
    pub duplicates: u64,
    /// Events older than one already received of the same token and kind.
    pub out_of_order: u64,
    /// Snapshots of prices from before the run (not counted above).
    pub before_run: u64,
    /// (user, token) pairs whose token had a price published in the run:
    /// each should end on that token's last published price.
    #[serde(default)]
    pub final_prices: u64,
    /// Of those, pairs whose user ended on an older price (or none).
    #[serde(default)]
    pub stale_final_prices: u64,
    /// Tokens whose price the JetStream last-prices store was checked for
    /// at the end of a fleet run (the tokens priced in the run); 0 when the
    /// run has no store.
    #[serde(default)]
    pub stored_prices: u64,
    /// Of those, tokens the store holds an older price for (or none).
    #[serde(default)]
    pub stale_stored_prices: u64,
    /// Deliveries per second over the publishing time.
    pub throughput_per_sec: f64,
    /// Which kinds the accounting covers.
    pub kinds: Vec<String>,
}

/// What the publisher reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublisherSummary {
    /// Price events per second asked for.
    pub asked_rate: f64,
    /// Price events per second achieved.
    pub achieved_rate: f64,
    /// How long it published, seconds.
    pub elapsed_secs: f64,
    /// Events published, by kind.
    pub events: serde_json::Value,
    /// Its one-line summary.
    pub summary: String,
}

/// The server's figures over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSummary {
    /// The binary under test (`odin-server`, or `odin-forwarder`, the bare
    /// forwarder) for embedded runs; `None` for a server run elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// `/stats` before the users connected.
    pub stats_before: Option<StatsSnapshot>,
    /// `/stats` after the run.
    pub stats_after: Option<StatsSnapshot>,
    /// Process readings before and after (embedded runs only).
    pub process_before: Option<ProcSample>,
    /// Process readings after.
    pub process_after: Option<ProcSample>,
    /// CPU used during the run as a share of one core.
    pub cpu_share: Option<f64>,
    /// Server CPU per delivery, µs.
    pub cpu_per_delivery_us: Option<f64>,
    /// RSS growth per connected user, bytes.
    pub rss_per_user_bytes: Option<f64>,
    /// RSS growth from the start of publishing to the end of the drain,
    /// per delivery, bytes: what a leak per message shows as (every user is
    /// connected throughout, so a steady server stays near zero).
    #[serde(default)]
    pub rss_growth_per_delivery_bytes: Option<f64>,
}

/// The load generator's own cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorSummary {
    /// CPU used during the run as a share of one core.
    pub cpu_share: f64,
    /// CPU per delivered message, µs.
    pub cpu_per_delivery_us: f64,
    /// 99th percentile of its runtime's scheduling lag, µs.
    pub lag_p99_us: u64,
    /// Largest scheduling lag, µs.
    pub lag_max_us: u64,
    /// Peak RSS, bytes.
    pub peak_rss_bytes: u64,
}

/// One Goose threshold's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GooseVerdict {
    /// The rule.
    pub rule: String,
    /// What Goose observed.
    pub observed: String,
    /// Whether it passed.
    pub passed: bool,
}

/// One run, complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Format version of this file.
    pub version: u32,
    /// The scenario as run (after overrides).
    pub scenario: Scenario,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// Wall time of the whole run, seconds.
    pub duration_secs: f64,
    /// What was tested: `embedded` or the URL.
    pub target: String,
    /// How many load processes contributed (more than one after a merge).
    pub processes: usize,
    /// Users.
    pub users: UsersSummary,
    /// The publisher.
    pub publisher: PublisherSummary,
    /// Loss accounting.
    pub accounting: Accounting,
    /// End-to-end latency from when each event was due by the publisher's
    /// schedule (`scheduledAt`): a stalled publisher or generator cannot hide
    /// its queueing here (coordinated omission).
    pub latency: LatencySummary,
    /// The merged latency histogram, HdrHistogram V2, base64.
    pub latency_histogram: String,
    /// End-to-end latency from each event's `timestamp` (when the publisher
    /// actually made it).
    #[serde(default)]
    pub latency_stamped: LatencySummary,
    /// Its merged histogram, HdrHistogram V2, base64.
    #[serde(default)]
    pub latency_stamped_histogram: String,
    /// Timed deliveries whose event carried no `scheduledAt` (a publisher
    /// that does not say): their scheduled latency is the stamped one.
    #[serde(default)]
    pub latency_unscheduled: u64,
    /// Latency per second.
    pub timeline: Vec<TimelinePoint>,
    /// The server.
    pub server: ServerSummary,
    /// The generator.
    pub generator: GeneratorSummary,
    /// Our rules.
    pub thresholds: Vec<Verdict>,
    /// Goose's rules.
    pub goose_thresholds: Vec<GooseVerdict>,
    /// Comparison with a baseline run, when asked for.
    pub baseline: Vec<Verdict>,
    /// The verdict.
    pub outcome: Outcome,
    /// Gateways and load processes of a run over several processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSummary>,
}

/// What a run over several processes adds to its report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    /// Gateways started (0 for an external target).
    pub gateways: usize,
    /// Load processes.
    pub processes: usize,
    /// Connections each gateway held once every user was in.
    pub connections_per_gateway: Vec<u64>,
    /// From the first worker's start until every worker had its users in.
    pub ramp_secs: f64,
    /// Users live ÷ `ramp_secs`: new connections (upgrade, JWT check and
    /// subscribe) per second over the ramp.
    pub connect_rate_per_sec: f64,
    /// Gateways' resident memory before any user, bytes (all gateways).
    pub gateway_rss_before_bytes: u64,
    /// The same once every user was in, before publishing.
    pub gateway_rss_idle_bytes: u64,
    /// (idle − before) ÷ connections: memory per connected, subscribed,
    /// idle client.
    pub rss_per_idle_connection_bytes: f64,
}

/// Current format version of [`RunReport`].
pub const REPORT_VERSION: u32 = 1;

/// The JSON Schema of `report.json` (`odin-load schema`; committed as
/// `docs/report.schema.json` for tools that read reports).
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RunReport);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

impl RunReport {
    /// The merged latency histogram.
    pub fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        decode_histogram(&self.latency_histogram)
    }

    /// The merged histogram of the stamped latency (empty in reports written
    /// before it was kept).
    pub fn stamped_histogram(&self) -> anyhow::Result<Histogram<u64>> {
        if self.latency_stamped_histogram.is_empty() {
            return Ok(latency_histogram());
        }
        decode_histogram(&self.latency_stamped_histogram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::encode_histogram;

    #[test]
    fn the_committed_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/report.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == json_schema(),
            "{} is not the schema of RunReport: regenerate it with \
             `target/debug/odin-load schema > docs/report.schema.json`",
            path.display()
        );
    }

    #[test]
    fn histograms_survive_the_report() {
        let mut h = latency_histogram();
        for v in [10u64, 200, 3000, 45_000] {
            h.record(v).unwrap();
        }
        let back = decode_histogram(&encode_histogram(&h)).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back.max(), h.max());
        assert_eq!(LatencySummary::of(&back), LatencySummary::of(&h));
    }
}
