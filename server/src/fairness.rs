//! Fairness per source address: no one address may take every connection
//! slot, open connections as fast as it likes, or guess tokens at full
//! speed. Three budgets, each a flag that `0` turns off:
//!
//! - open connections per address (`--max-connections-per-address`),
//!   counting sockets in the handshake as well as admitted connections;
//! - new connections per address and second, a token bucket
//!   (`--connect-rate-per-address`, `--connect-burst-per-address`);
//! - failed authentications per address and second, a token bucket
//!   (`--auth-failures-per-address`, `--auth-failure-burst-per-address`):
//!   an address that runs it dry is refused before its tokens are checked
//!   until the bucket has refilled.
//!
//! The defaults are far above what an office behind one NAT address does;
//! behind a reverse proxy every client has the proxy's address, so turn them
//! off there and limit at the proxy. IPv6 addresses count by their /64: one
//! host usually holds a whole /64.
//!
//! [`ConnectionCounts`] is also what the HTTP listener's caps count with
//! ([`crate::http_guard`]).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;

/// Where a connection comes from, as the budgets count it: an IPv4 address
/// (IPv4-mapped IPv6 included), or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(v4) => v4.fmt(f),
            Source::V6Prefix(prefix) => {
                let net = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{net}/64")
            }
        }
    }
}

/// Open connections, in all and per source; shared by the slots it hands
/// out.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionCounts(Arc<Mutex<Counts>>);

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_source: HashMap<Source, usize>,
}

impl ConnectionCounts {
    /// Takes a slot for a connection from `source`, or `None` when there are
    /// already `max_total` in all or `max_per_source` from it.
    pub(crate) fn try_take(
        &self,
        source: Source,
        max_total: usize,
        max_per_source: usize,
    ) -> Option<CountedConnection> {
        let mut counts = self.0.lock();
        let from_source = counts.per_source.get(&source).copied().unwrap_or(0);
        if counts.total >= max_total || from_source >= max_per_source {
            return None;
        }
        counts.total += 1;
        *counts.per_source.entry(source).or_insert(0) += 1;
        Some(CountedConnection {
            counts: self.clone(),
            source,
        })
    }

    /// Connections open from `source`.
    #[cfg(test)]
    fn from(&self, source: Source) -> usize {
        self.0.lock().per_source.get(&source).copied().unwrap_or(0)
    }

    /// Whether no connection is counted (and no source remembered).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        let counts = self.0.lock();
        counts.total == 0 && counts.per_source.is_empty()
    }
}

/// One open connection's place in the counts; given back on drop.
#[derive(Debug)]
pub(crate) struct CountedConnection {
    counts: ConnectionCounts,
    source: Source,
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock();
        counts.total -= 1;
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

/// A token bucket: so many per second, after a burst of so many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Refill per second.
    pub per_second: NonZeroU32,
    /// The bucket's size.
    pub burst: NonZeroU32,
}

impl Rate {
    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The per-address budgets of the WebSocket port; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimits {
    /// Open connections (handshaking or admitted) from one address at most.
    pub max_connections: Option<usize>,
    /// New connections from one address.
    pub connect_rate: Option<Rate>,
    /// Failed authentications from one address.
    pub auth_failures: Option<Rate>,
}

impl AddressLimits {
    /// No per-address budget: for tests and load runs, whose thousands of
    /// clients all come from one loopback address.
    pub const OFF: AddressLimits = AddressLimits {
        max_connections: None,
        connect_rate: None,
        auth_failures: None,
    };
}

impl Default for AddressLimits {
    fn default() -> Self {
        AddressLimitArgs::default().limits()
    }
}

/// The flags of [`AddressLimits`]; each `0` turns its budget off.
#[derive(Debug, Clone, Args)]
pub struct AddressLimitArgs {
    /// Open WebSocket connections (handshaking or admitted) from one source
    /// address at most (an IPv6 address counts by its /64); more are
    /// answered `503` (`address_busy`). 0: no cap.
    #[arg(
        long,
        env = "ODIN_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1_000
    )]
    pub max_connections_per_address: u32,
    /// New WebSocket connections per second from one source address,
    /// sustained; more are answered `429` (`connect_rate_limited`). 0: no
    /// limit.
    #[arg(long, env = "ODIN_CONNECT_RATE_PER_ADDRESS", default_value_t = 100)]
    pub connect_rate_per_address: u32,
    /// New WebSocket connections from one source address in a burst.
    #[arg(long, env = "ODIN_CONNECT_BURST_PER_ADDRESS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_burst_per_address: u32,
    /// Failed authentications per second from one source address,
    /// sustained; once the burst is spent, the address's upgrades are
    /// answered `429` (`auth_rate_limited`) without checking their tokens
    /// until the budget refills. 0: no limit.
    #[arg(long, env = "ODIN_AUTH_FAILURES_PER_ADDRESS", default_value_t = 10)]
    pub auth_failures_per_address: u32,
    /// Failed authentications from one source address in a burst.
    #[arg(long, env = "ODIN_AUTH_FAILURE_BURST_PER_ADDRESS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_burst_per_address: u32,
}

impl Default for AddressLimitArgs {
    fn default() -> Self {
        Self {
            max_connections_per_address: 1_000,
            connect_rate_per_address: 100,
            connect_burst_per_address: 500,
            auth_failures_per_address: 10,
            auth_failure_burst_per_address: 100,
        }
    }
}

impl AddressLimitArgs {
    /// The budgets these flags set.
    pub fn limits(&self) -> AddressLimits {
        let rate = |per_second: u32, burst: u32| {
            Some(Rate {
                per_second: NonZeroU32::new(per_second)?,
                burst: NonZeroU32::new(burst.max(1)).expect("at least one"),
            })
        };
        AddressLimits {
            max_connections: (self.max_connections_per_address > 0)
                .then(|| usize::try_from(self.max_connections_per_address).unwrap_or(usize::MAX)),
            connect_rate: rate(
                self.connect_rate_per_address,
                self.connect_burst_per_address,
            ),
            auth_failures: rate(
                self.auth_failures_per_address,
                self.auth_failure_burst_per_address,
            ),
        }
    }
}

/// Why a new connection was turned away at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TurnedAway {
    /// Its address has its share of open connections.
    Connections,
    /// Its address opens connections too fast; it may try again after this.
    ConnectRate(Duration),
}

/// How many budget checks pass between two sweeps of the buckets' tables
/// (which forget addresses whose buckets are full again).
const SWEEP_EVERY: u32 = 4096;

/// The WebSocket port's per-address budgets, shared by the accept loop and
/// every upgrade.
pub(crate) struct AddressFairness {
    limits: AddressLimits,
    open: ConnectionCounts,
    connects: Option<DefaultKeyedRateLimiter<Source>>,
    failures: Option<DefaultKeyedRateLimiter<Source>>,
    /// Addresses whose failed authentications spent their budget, and when
    /// they may try again.
    barred: Mutex<HashMap<Source, Instant>>,
    checks: AtomicU32,
}

impl AddressFairness {
    pub(crate) fn new(limits: AddressLimits) -> Self {
        let bucket = |rate: Option<Rate>| rate.map(|r| governor::RateLimiter::keyed(r.quota()));
        Self {
            limits,
            open: ConnectionCounts::default(),
            connects: bucket(limits.connect_rate),
            failures: bucket(limits.auth_failures),
            barred: Mutex::default(),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts a new connection from `ip` against its address's budgets: its
    /// place among the open connections (held until dropped), or why it is
    /// turned away.
    pub(crate) fn connect(&self, ip: IpAddr) -> Result<CountedConnection, TurnedAway> {
        let source = Source::from(ip);
        self.sweep_now_and_then();
        if let Some(connects) = &self.connects
            && let Err(not_until) = connects.check_key(&source)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(TurnedAway::ConnectRate(wait));
        }
        let per_source = self.limits.max_connections.unwrap_or(usize::MAX);
        self.open
            .try_take(source, usize::MAX, per_source)
            .ok_or(TurnedAway::Connections)
    }

    /// How long `ip`'s address must still wait before its tokens are
    /// checked again, when its failed authentications spent their budget.
    pub(crate) fn auth_barred(&self, ip: IpAddr) -> Option<Duration> {
        self.failures.as_ref()?;
        let source = Source::from(ip);
        let mut barred = self.barred.lock();
        let until = *barred.get(&source)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            barred.remove(&source);
            return None;
        }
        Some(left)
    }

    /// Records a failed authentication from `ip`; once its address's budget
    /// is spent, the address is barred until the bucket has a token again.
    pub(crate) fn auth_failed(&self, ip: IpAddr) {
        let Some(failures) = &self.failures else {
            return;
        };
        let source = Source::from(ip);
        if let Err(not_until) = failures.check_key(&source) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut barred = self.barred.lock();
            if barred.len() >= 1024 {
                let now = Instant::now();
                barred.retain(|_, until| *until > now);
            }
            barred.insert(source, Instant::now() + wait);
        }
    }

    /// Every [`SWEEP_EVERY`] checks, forgets the addresses whose buckets are
    /// full again, so the tables hold only addresses active of late.
    fn sweep_now_and_then(&self) {
        if !self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            return;
        }
        for bucket in [&self.connects, &self.failures].into_iter().flatten() {
            bucket.retain_recent();
            bucket.shrink_to_fit();
        }
    }

    /// Connections open from `ip`'s address.
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        self.open.from(Source::from(ip))
    }
}

/// Whole seconds to put in `Retry-After` for a wait of `wait` (at least 1).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8));

    fn limits(
        max: Option<usize>,
        connect: Option<(u32, u32)>,
        auth: Option<(u32, u32)>,
    ) -> AddressLimits {
        let rate = |(per_second, burst): (u32, u32)| Rate {
            per_second: NonZeroU32::new(per_second).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        };
        AddressLimits {
            max_connections: max,
            connect_rate: connect.map(rate),
            auth_failures: auth.map(rate),
        }
    }

    #[test]
    fn counts_cap_in_all_and_per_source_and_free_on_drop() {
        let counts = ConnectionCounts::default();
        let (a, b) = (Source::from(HOME), Source::from(OTHER));
        let a1 = counts.try_take(a, 3, 2).expect("first from a");
        let a2 = counts.try_take(a, 3, 2).expect("second from a");
        assert!(counts.try_take(a, 3, 2).is_none(), "a is at its cap");
        let b1 = counts.try_take(b, 3, 2).expect("b has its own cap");
        assert!(
            counts.try_take(b, 3, 2).is_none(),
            "the total cap is reached"
        );
        drop(a1);
        let b2 = counts.try_take(b, 3, 2).expect("a slot came back");
        drop((a2, b1, b2));
        assert!(counts.is_empty());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        assert_eq!(Source::from(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::from(mapped), Source::from(HOME));
    }

    #[test]
    fn an_address_gets_its_share_of_connections_and_others_keep_theirs() {
        let fairness = AddressFairness::new(limits(Some(2), None, None));
        let first = fairness.connect(HOME).unwrap();
        let _second = fairness.connect(HOME).unwrap();
        assert_eq!(fairness.connect(HOME).unwrap_err(), TurnedAway::Connections);
        let _other = fairness.connect(OTHER).unwrap();
        drop(first);
        assert_eq!(fairness.open_from(HOME), 1);
        let _again = fairness.connect(HOME).unwrap();
    }

    #[test]
    fn connects_beyond_the_burst_wait_for_the_bucket() {
        let fairness = AddressFairness::new(limits(None, Some((1, 3)), None));
        let held: Vec<_> = (0..3).map(|_| fairness.connect(HOME).unwrap()).collect();
        match fairness.connect(HOME) {
            Err(TurnedAway::ConnectRate(wait)) => {
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_secs(1),
                    "{wait:?}"
                );
            }
            other => panic!("expected a rate refusal, got {other:?}"),
        }
        assert!(
            fairness.connect(OTHER).is_ok(),
            "another address has its own bucket"
        );
        drop(held);
    }

    #[test]
    fn failed_authentications_bar_an_address_once_its_budget_is_spent() {
        let fairness = AddressFairness::new(limits(None, None, Some((1, 2))));
        fairness.auth_failed(HOME);
        fairness.auth_failed(HOME);
        assert_eq!(fairness.auth_barred(HOME), None, "within the burst");
        fairness.auth_failed(HOME);
        let left = fairness.auth_barred(HOME).expect("barred");
        assert!(left <= Duration::from_secs(1), "{left:?}");
        assert_eq!(fairness.auth_barred(OTHER), None);
    }

    #[test]
    fn zero_turns_each_budget_off() {
        let off = AddressLimitArgs {
            max_connections_per_address: 0,
            connect_rate_per_address: 0,
            auth_failures_per_address: 0,
            ..AddressLimitArgs::default()
        }
        .limits();
        assert_eq!(off, limits(None, None, None));
        let fairness = AddressFairness::new(off);
        let held: Vec<_> = (0..5_000)
            .map(|_| fairness.connect(HOME).unwrap())
            .collect();
        for _ in 0..1_000 {
            fairness.auth_failed(HOME);
        }
        assert_eq!(fairness.auth_barred(HOME), None);
        drop(held);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
