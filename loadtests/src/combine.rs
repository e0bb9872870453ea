//! How the parts of one run add up to the whole: several load processes'
//! users, accounting and timelines ([`crate::merge`]), and several
//! gateways' `/stats` ([`crate::fleet`]).
//!
//! Each figure says once, next to its siblings, how it combines: counters
//! add, percentiles keep the worst part's (they do not add up), flags hold
//! only if they hold everywhere. Every impl destructures its type without
//! `..`, so a new field does not compile until it says how it combines.

use odin_protocol::stats::StatsSnapshot;

use crate::report::{Accounting, LatencySummary, TimelinePoint, UsersSummary};

/// A figure of one part of a run that folds into the whole's.
pub trait Combine {
    /// Folds `part` into `self`.
    fn combine(&mut self, part: &Self);
}

/// Folds every part into the first; `None` when there is none.
pub fn combined<T: Combine + Clone>(parts: &[T]) -> Option<T> {
    let (first, rest) = parts.split_first()?;
    let mut whole = first.clone();
    for part in rest {
        whole.combine(part);
    }
    Some(whole)
}

fn worst<T: PartialOrd + Copy>(whole: &mut T, part: T) {
    if part > *whole {
        *whole = part;
    }
}

impl Combine for LatencySummary {
    fn combine(&mut self, part: &Self) {
        let LatencySummary {
            count,
            mean_us,
            p50_us,
            p90_us,
            p95_us,
            p99_us,
            p999_us,
            max_us,
        } = part;
        let total = self.count + count;
        if total > 0 {
            self.mean_us =
                (self.mean_us * self.count as f64 + mean_us * *count as f64) / total as f64;
        }
        self.count = total;
        worst(&mut self.p50_us, *p50_us);
        worst(&mut self.p90_us, *p90_us);
        worst(&mut self.p95_us, *p95_us);
        worst(&mut self.p99_us, *p99_us);
        worst(&mut self.p999_us, *p999_us);
        worst(&mut self.max_us, *max_us);
    }
}

impl Combine for UsersSummary {
    fn combine(&mut self, part: &Self) {
        let UsersSummary {
            wanted,
            live,
            failed,
            reconnects,
            connect_failures,
            connect,
            subscribe,
        } = part;
        self.wanted += wanted;
        self.live += live;
        self.failed += failed;
        self.reconnects += reconnects;
        self.connect_failures += connect_failures;
        self.connect.combine(connect);
        self.subscribe.combine(subscribe);
    }
}

impl Combine for Accounting {
    fn combine(&mut self, part: &Self) {
        let Accounting {
            expected,
            delivered,
            lost,
            duplicates,
            out_of_order,
            before_run,
            final_prices,
            stale_final_prices,
            stored_prices,
            stale_stored_prices,
            throughput_per_sec,
            kinds,
        } = part;
        self.expected += expected;
        self.delivered += delivered;
        self.lost += lost;
        self.duplicates += duplicates;
        self.out_of_order += out_of_order;
        self.before_run += before_run;
        self.final_prices += final_prices;
        self.stale_final_prices += stale_final_prices;
        self.stored_prices += stored_prices;
        self.stale_stored_prices += stale_stored_prices;
        self.throughput_per_sec += throughput_per_sec;
        for kind in kinds {
            if !self.kinds.contains(kind) {
                self.kinds.push(kind.clone());
            }
        }
    }
}

impl Combine for TimelinePoint {
    /// Two parts' points of the same second.
    fn combine(&mut self, part: &Self) {
        let TimelinePoint {
            second: _,
            count,
            p50_us,
            p99_us,
            max_us,
        } = part;
        self.count += count;
        worst(&mut self.p50_us, *p50_us);
        worst(&mut self.p99_us, *p99_us);
        worst(&mut self.max_us, *max_us);
    }
}

impl Combine for StatsSnapshot {
    /// Two gateways' `/stats`: counters added, the average latency weighted
    /// by deliveries, peak and uptime the largest, NATS connected only if
    /// both are; the first's id kept.
    fn combine(&mut self, part: &Self) {
        let StatsSnapshot {
            server_id: _,
            uptime_seconds,
            connection_count,
            messages_received,
            messages_delivered,
            duplicates_dropped,
            invalid_events,
            conflated,
            compressed_connections,
            events_compressed,
            messages_compressed,
            slow_consumer_disconnects,
            auth_failures,
            address_limited,
            tokens_held,
            tokens_evicted,
            tokens_refused,
            tls_reloads,
            tls_reload_failures,
            tls_handshake_failures,
            average_latency,
            peak_latency,
            nats_connected,
        } = part;
        let delivered = self.messages_delivered + messages_delivered;
        if delivered > 0 {
            self.average_latency = (self.average_latency * self.messages_delivered as f64
                + average_latency * *messages_delivered as f64)
                / delivered as f64;
        }
        worst(&mut self.uptime_seconds, *uptime_seconds);
        self.connection_count += connection_count;
        self.messages_received += messages_received;
        self.messages_delivered = delivered;
        self.duplicates_dropped += duplicates_dropped;
        self.invalid_events += invalid_events;
        self.conflated += conflated;
        self.compressed_connections += compressed_connections;
        self.events_compressed += events_compressed;
        self.messages_compressed += messages_compressed;
        self.slow_consumer_disconnects += slow_consumer_disconnects;
        self.auth_failures += auth_failures;
        self.address_limited += address_limited;
        self.tokens_held += tokens_held;
        self.tokens_evicted += tokens_evicted;
        self.tokens_refused += tokens_refused;
        self.tls_reloads += tls_reloads;
        self.tls_reload_failures += tls_reload_failures;
        self.tls_handshake_failures += tls_handshake_failures;
        worst(&mut self.peak_latency, *peak_latency);
        self.nats_connected &= nats_connected;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_percentiles_keep_the_worst_part() {
        let part = |live, p99_us, delivered| {
            (
                UsersSummary {
                    wanted: live,
                    live,
                    connect: LatencySummary {
                        count: live as u64,
                        mean_us: p99_us as f64 / 2.0,
                        p99_us,
                        max_us: p99_us,
                        ..LatencySummary::default()
                    },
                    ..UsersSummary::default()
                },
                Accounting {
                    expected: delivered + 1,
                    delivered,
                    lost: 1,
                    kinds: vec!["price_update".into()],
                    ..Accounting::default()
                },
            )
        };
        let (users, accounting): (Vec<_>, Vec<_>) = [part(10, 4_000, 100), part(30, 1_000, 300)]
            .into_iter()
            .unzip();
        let users = combined(&users).unwrap();
        let accounting = combined(&accounting).unwrap();
        assert_eq!((users.wanted, users.live), (40, 40));
        assert_eq!(users.connect.count, 40);
        assert_eq!(users.connect.p99_us, 4_000);
        assert_eq!(
            users.connect.mean_us,
            (10.0 * 2_000.0 + 30.0 * 500.0) / 40.0
        );
        assert_eq!(
            (accounting.expected, accounting.delivered, accounting.lost),
            (402, 400, 2)
        );
        assert_eq!(accounting.kinds, ["price_update"]);
    }

    #[test]
    fn gateways_stats_add_up_and_are_connected_only_if_every_one_is() {
        let gateway = |delivered, latency, connected, evicted| StatsSnapshot {
            server_id: "g".into(),
            uptime_seconds: 5.0,
            connection_count: 100,
            messages_received: 10,
            messages_delivered: delivered,
            duplicates_dropped: 0,
            invalid_events: 0,
            conflated: 0,
            compressed_connections: 0,
            events_compressed: 0,
            messages_compressed: 0,
            slow_consumer_disconnects: 0,
            auth_failures: 0,
            address_limited: 0,
            tokens_held: 7,
            tokens_evicted: evicted,
            tokens_refused: 0,
            tls_reloads: 0,
            tls_reload_failures: 0,
            tls_handshake_failures: 0,
            average_latency: latency,
            peak_latency: latency * 2.0,
            nats_connected: connected,
        };
        let all = combined(&[gateway(100, 1.0, true, 3), gateway(300, 3.0, false, 4)]).unwrap();
        assert_eq!(all.connection_count, 200);
        assert_eq!(all.messages_delivered, 400);
        assert_eq!(all.tokens_evicted, 7);
        assert_eq!(all.average_latency, 2.5);
        assert_eq!(all.peak_latency, 6.0);
        assert!(!all.nats_connected);
        assert!(combined::<StatsSnapshot>(&[]).is_none());
    }
}
