//! The process's file descriptors, shared out once at start-up: a reserve
//! for NATS, the listeners and the log; a share for the HTTP port; the rest
//! for WebSocket sockets (in the handshake or admitted). Each listener turns
//! away at accept what would take another's share, so an attack on one port
//! can exhaust neither the other port nor `/health` and NATS.

use crate::http_guard::HttpLimits;

/// Descriptors kept out of every share: NATS connections, the two
/// listeners, the log, the ingest thread's runtime, and some slack.
pub const RESERVE: usize = 64;

/// How the open-file limit is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorPlan {
    /// The open-file limit planned for.
    pub limit: usize,
    /// WebSocket sockets (handshaking or admitted) at most.
    pub websocket: usize,
    /// The HTTP port's limits, within its share: the configured caps,
    /// lowered where the limit is small.
    pub http: HttpLimits,
}

impl DescriptorPlan {
    /// The plan for `limit` open files and the configured HTTP caps: HTTP
    /// gets at most an eighth of what is not reserved, one source address
    /// at most a quarter of HTTP's share, and WebSocket sockets the rest.
    pub fn new(limit: u64, http: HttpLimits) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let usable = limit.saturating_sub(RESERVE).max(2);
        let http_total = http.max_connections.min((usable / 8).max(1));
        let per_address = http.max_per_address.min((http_total / 4).max(1));
        Self {
            limit,
            websocket: usable - http_total,
            http: HttpLimits {
                max_connections: http_total,
                max_per_address: per_address,
                ..http
            },
        }
    }
}

/// The process's open-file limit, after raising the soft limit to the hard
/// one (as servers do at start); 1,024 when it cannot be read.
pub fn open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit; planning for 1024");
            1024
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_limit_keeps_the_configured_caps() {
        let plan = DescriptorPlan::new(20_000, HttpLimits::default());
        assert_eq!(plan.http.max_connections, 1024);
        assert_eq!(plan.http.max_per_address, 256);
        assert_eq!(plan.websocket, 20_000 - RESERVE - 1024);
    }

    #[test]
    fn a_small_limit_gives_every_listener_a_share() {
        let plan = DescriptorPlan::new(600, HttpLimits::default());
        assert_eq!(plan.http.max_connections, 67, "an eighth of 536");
        assert_eq!(plan.http.max_per_address, 16, "a quarter of HTTP's share");
        assert_eq!(plan.websocket, 536 - 67);
        assert_eq!(
            plan.http.idle_timeout,
            HttpLimits::default().idle_timeout,
            "deadlines are kept"
        );
        let tiny = DescriptorPlan::new(10, HttpLimits::default());
        assert!(
            tiny.websocket >= 1 && tiny.http.max_connections >= 1 && tiny.http.max_per_address >= 1
        );
    }
}
