//! The figures every renderer shows, as rows: the run's summary as (label,
//! value) pairs and every rule's result, plus the number formats they share.
//! The terminal, Markdown, HTML and step renderers lay these out.

use crate::report::RunReport;
use crate::stack::ServerKind;

pub use crate::thresholds::format_bytes;

/// A count with thousands separators.
pub fn format_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The rows every renderer shows, as (label, value) pairs.
pub fn summary_rows(r: &RunReport) -> Vec<(&'static str, String)> {
    use crate::thresholds::format_micros as t;
    let l = &r.latency;
    let a = &r.accounting;
    let u = &r.users;
    let mut rows = Vec::new();
    if let Some(binary) = &r.server.binary {
        rows.push(("server under test", under_test(binary)));
    }
    rows.extend([
        (
            "users",
            format!(
                "{} live of {} ({} failed, {} reconnects)",
                u.live, u.wanted, u.failed, u.reconnects
            ),
        ),
        (
            "connect / subscribe p99",
            format!(
                "{} / {}",
                t(u.connect.p99_us as f64),
                t(u.subscribe.p99_us as f64)
            ),
        ),
        (
            "publisher",
            format!(
                "{:.1} price events/s (asked {}) for {:.1} s",
                r.publisher.achieved_rate, r.publisher.asked_rate, r.publisher.elapsed_secs
            ),
        ),
        (
            "deliveries",
            format!(
                "{} of {} expected ({:.0}/s)",
                format_count(a.delivered),
                format_count(a.expected),
                a.throughput_per_sec
            ),
        ),
        (
            "lost / duplicated / out of order",
            format!("{} / {} / {}", a.lost, a.duplicates, a.out_of_order),
        ),
        (
            "final prices",
            format!(
                "{} of {} user tokens on the last price published",
                format_count(a.final_prices - a.stale_final_prices),
                format_count(a.final_prices)
            ),
        ),
    ]);
    if a.stored_prices > 0 {
        rows.push((
            "stored last prices",
            format!(
                "{} of {} tokens in the JetStream store on the last price published",
                format_count(a.stored_prices - a.stale_stored_prices),
                format_count(a.stored_prices)
            ),
        ));
    }
    rows.extend([
        (
            "latency p50 / p90 / p99 / p99.9",
            format!(
                "{} / {} / {} / {}",
                t(l.p50_us as f64),
                t(l.p90_us as f64),
                t(l.p99_us as f64),
                t(l.p999_us as f64)
            ),
        ),
        (
            "latency max / mean",
            format!("{} / {}", t(l.max_us as f64), t(l.mean_us)),
        ),
    ]);
    let s = &r.latency_stamped;
    if s.count > 0 {
        let unscheduled = if r.latency_unscheduled > 0 {
            format!(
                "; {} deliveries carried no scheduledAt",
                format_count(r.latency_unscheduled)
            )
        } else {
            String::new()
        };
        rows.push((
            "from the stamp p50 / p99 / max",
            format!(
                "{} / {} / {} (latency above counts from when the schedule had each event due{unscheduled})",
                t(s.p50_us as f64),
                t(s.p99_us as f64),
                t(s.max_us as f64)
            ),
        ));
    }
    if let Some(share) = r.server.cpu_share {
        rows.push((
            "server CPU",
            format!(
                "{:.0}% of a core, {:.2} µs per delivery",
                share * 100.0,
                r.server.cpu_per_delivery_us.unwrap_or_default()
            ),
        ));
    }
    if let Some(after) = &r.server.process_after {
        rows.push((
            "server memory",
            format!(
                "RSS {} (peak {}), {} per user, {} growth per delivery while publishing",
                format_bytes(after.rss_bytes as f64),
                format_bytes(after.peak_rss_bytes as f64),
                format_bytes(r.server.rss_per_user_bytes.unwrap_or_default()),
                format_bytes(r.server.rss_growth_per_delivery_bytes.unwrap_or_default())
            ),
        ));
    }
    rows.push((
        "load generator",
        format!(
            "{:.0}% of a core, {:.2} µs per delivery, lag p99 {}",
            r.generator.cpu_share * 100.0,
            r.generator.cpu_per_delivery_us,
            t(r.generator.lag_p99_us as f64)
        ),
    ));
    if let Some(f) = &r.fleet {
        rows.push((
            "fleet",
            format!(
                "{} gateways on one port, {} load processes; connections per gateway {:?}",
                f.gateways, f.processes, f.connections_per_gateway
            ),
        ));
        rows.push((
            "ramp",
            format!(
                "{} users in {:.1} s: {:.0} new connections/s (upgrade, JWT, subscribe)",
                format_count(r.users.live as u64),
                f.ramp_secs,
                f.connect_rate_per_sec
            ),
        ));
        rows.push((
            "gateway memory, idle users",
            format!(
                "RSS {:.1} → {:.1} MiB: {:.1} KiB per connected, subscribed user",
                f.gateway_rss_before_bytes as f64 / 1048576.0,
                f.gateway_rss_idle_bytes as f64 / 1048576.0,
                f.rss_per_idle_connection_bytes / 1024.0
            ),
        ));
    }
    if r.server.stats_after.is_none()
        && r.server.binary.as_deref() == Some(ServerKind::Forwarder.binary())
    {
        rows.push((
            "server /stats",
            "n/a (the bare forwarder keeps none)".to_owned(),
        ));
    }
    if let Some(s) = &r.server.stats_after {
        rows.push((
            "server /stats",
            format!(
                "{} received, {} delivered, {} dup dropped, {} conflated, {} slow consumers",
                format_count(s.messages_received),
                format_count(s.messages_delivered),
                s.duplicates_dropped,
                s.conflated,
                s.slow_consumer_disconnects
            ),
        ));
    }
    rows
}

/// What the "server under test" row says of `binary`.
fn under_test(binary: &str) -> String {
    if binary == ServerKind::Forwarder.binary() {
        format!(
            "{binary}, the bare forwarder (no auth, no de-dup): the benchmark's reference point"
        )
    } else {
        binary.to_owned()
    }
}

/// Every rule's result as (rule, observed, limit, passed), ours, Goose's
/// and the baseline's.
pub fn verdict_rows(r: &RunReport) -> Vec<(String, String, String, bool)> {
    let mut rows: Vec<_> = r
        .thresholds
        .iter()
        .chain(&r.baseline)
        .map(|v| {
            (
                v.rule.clone(),
                v.observed.clone(),
                v.limit.clone(),
                v.passed,
            )
        })
        .collect();
    rows.extend(r.goose_thresholds.iter().map(|g| {
        (
            format!("goose: {}", g.rule),
            g.observed.clone(),
            String::new(),
            g.passed,
        )
    }));
    rows
}
