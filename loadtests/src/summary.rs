//! The server's figures of a run, from `/stats` and the process samples
//! taken around it: shared by a single process's run and the fleet's
//! coordinator (which sums its gateways first).

use std::time::Duration;

use crate::report::ServerSummary;
use crate::sysstat;

/// The server process sampled at three points of a run.
pub(crate) struct ServerSamples {
    /// Before the first user connects: the base of memory growth.
    pub(crate) before_ramp: Option<sysstat::ProcSample>,
    /// When publishing starts: the base of CPU, so connection set-up (the
    /// JWT check, the upgrade) is not charged to deliveries.
    pub(crate) publish_start: Option<sysstat::ProcSample>,
    /// When publishing and the drain end, every user still connected.
    pub(crate) publish_end: Option<sysstat::ProcSample>,
}

/// The server's figures of a run: `/stats` around it, CPU over the publish
/// window (per delivery), memory growth since before the ramp (per user) and
/// over the publish window (per delivery).
pub(crate) fn server_summary(
    stats_before: Option<odin_protocol::stats::StatsSnapshot>,
    stats_after: Option<odin_protocol::stats::StatsSnapshot>,
    samples: ServerSamples,
    wall: Duration,
    deliveries: f64,
    users: usize,
) -> ServerSummary {
    let ServerSamples {
        before_ramp: before,
        publish_start,
        publish_end: after,
    } = samples;
    let (cpu_share, cpu_per_delivery_us) = match (&publish_start, &after) {
        (Some(b), Some(a)) => (
            Some(sysstat::cpu_share(b, a, wall)),
            Some((a.cpu_seconds - b.cpu_seconds).max(0.0) * 1e6 / deliveries),
        ),
        _ => (None, None),
    };
    let rss_per_user_bytes = match (&before, &after) {
        (Some(b), Some(a)) if users > 0 => {
            Some((a.rss_bytes as f64 - b.rss_bytes as f64) / users as f64)
        }
        _ => None,
    };
    let rss_growth_per_delivery_bytes = match (&publish_start, &after) {
        (Some(b), Some(a)) => Some((a.rss_bytes as f64 - b.rss_bytes as f64) / deliveries),
        _ => None,
    };
    ServerSummary {
        binary: None,
        stats_before,
        stats_after,
        process_before: before,
        process_after: after,
        cpu_share,
        cpu_per_delivery_us,
        rss_per_user_bytes,
        rss_growth_per_delivery_bytes,
    }
}
