//! When a connection ends by the server's choice and what a version 2
//! client is told first: the connection lifetime (`--max-connection-lifetime`,
//! each connection's own drawn within the jitter, so a fleet connected at
//! once does not reconnect at once) and the suggested reconnect delay of the
//! `reconnect` advisory (a uniform draw over `--reconnect-spread`, so a fleet
//! closed at once by a shutdown does not return at once).
//!
//! Pure policy: the writer asks it for numbers and does the sending.

use std::time::Duration;

use clap::Args;
use odin_protocol::ServerMessage;
use odin_protocol::message::{Reconnect, ReconnectReason};
use odin_protocol::{Nonce, ProtocolVersion};
use rand::Rng;

/// The lifecycle settings (`PROTOCOL.md` §4.6 and §7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// A connection is closed (`4003`) after at most this long; `None`:
    /// never.
    pub max_lifetime: Option<Duration>,
    /// The fraction `j` of the lifetime `L` each connection's own is drawn
    /// below it: uniformly in `[L·(1−j), L]`. Invariant: within `[0, 1]`.
    pub lifetime_jitter: f64,
    /// The window the advisory's `delayMs` is drawn from, uniformly in
    /// `[0, spread]`.
    pub reconnect_spread: Duration,
}

impl Default for Lifecycle {
    /// No lifetime, 10 % jitter, a 5 s spread.
    fn default() -> Self {
        Self {
            max_lifetime: None,
            lifetime_jitter: 0.1,
            reconnect_spread: Duration::from_secs(5),
        }
    }
}

impl Lifecycle {
    /// This connection's lifetime, if connections have one: uniform in
    /// `[L·(1−j), L]`.
    pub fn draw_lifetime<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<Duration> {
        let max = self.max_lifetime?;
        let jitter = self.lifetime_jitter.clamp(0.0, 1.0);
        Some(max.mul_f64(1.0 - jitter * rng.random::<f64>()))
    }

    /// A reconnect delay for one client: uniform in `[0, spread]`, whole
    /// milliseconds.
    pub fn draw_delay_ms<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let spread = u64::try_from(self.reconnect_spread.as_millis()).unwrap_or(u64::MAX);
        rng.random_range(0..=spread)
    }

    /// The advisory a connection speaking `version` gets before the close
    /// `reason` brings, if its version has one (version 1 has none).
    pub fn advisory<R: Rng + ?Sized>(
        &self,
        version: ProtocolVersion,
        reason: ReconnectReason,
        rng: &mut R,
        timestamp: f64,
        nonce: Nonce,
    ) -> Option<ServerMessage> {
        (version >= ProtocolVersion::V2).then(|| {
            ServerMessage::Reconnect(Reconnect {
                reason,
                delay_ms: self.draw_delay_ms(rng),
                timestamp,
                nonce,
            })
        })
    }
}

/// The flags of [`Lifecycle`].
#[derive(Debug, Clone, Args)]
pub struct LifecycleArgs {
    /// Close every connection (code 4003, after a `reconnect` advisory to a
    /// version 2 client) after this long (e.g. `1h`), so long-lived
    /// connections move to new gateways after a deploy. Unset: never.
    #[arg(long, env = "ODIN_MAX_CONNECTION_LIFETIME", value_parser = positive_duration)]
    pub max_connection_lifetime: Option<Duration>,
    /// Each connection's lifetime is drawn uniformly between this fraction
    /// below `--max-connection-lifetime` and it (0 to 1), so connections
    /// made at once are not closed at once.
    #[arg(long, env = "ODIN_CONNECTION_LIFETIME_JITTER", default_value_t = 0.1, value_parser = fraction)]
    pub connection_lifetime_jitter: f64,
    /// The window of the `reconnect` advisory's suggested delay: each
    /// version 2 client gets its own uniform draw in it (e.g. `5s`; `0s`:
    /// reconnect at once).
    #[arg(long, env = "ODIN_RECONNECT_SPREAD", default_value = "5s", value_parser = humantime::parse_duration)]
    pub reconnect_spread: Duration,
}

impl LifecycleArgs {
    /// The settings these flags give.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle {
            max_lifetime: self.max_connection_lifetime,
            lifetime_jitter: self.connection_lifetime_jitter,
            reconnect_spread: self.reconnect_spread,
        }
    }
}

/// A lifetime of zero would close every connection at once.
fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=1.0).contains(&f) {
        return Err("must be between 0 and 1".into());
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn nonce() -> Nonce {
        Nonce::parse("n").unwrap()
    }

    #[test]
    fn lifetimes_lie_within_the_jitter_and_spread_over_it() {
        let policy = Lifecycle {
            max_lifetime: Some(Duration::from_secs(100)),
            lifetime_jitter: 0.2,
            ..Lifecycle::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<Duration> = (0..1000)
            .map(|_| policy.draw_lifetime(&mut rng).unwrap())
            .collect();
        let (min, max) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
        assert!(*min >= Duration::from_secs(80) && *max <= Duration::from_secs(100));
        // Uniform over 20 s: a thousand draws cover nearly all of it.
        assert!(*max - *min > Duration::from_secs(19), "{min:?}..{max:?}");
        assert_eq!(Lifecycle::default().draw_lifetime(&mut rng), None);
    }

    #[test]
    fn delays_spread_over_the_window() {
        let policy = Lifecycle {
            reconnect_spread: Duration::from_millis(2000),
            ..Lifecycle::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<u64> = (0..1000).map(|_| policy.draw_delay_ms(&mut rng)).collect();
        assert!(draws.iter().all(|&d| d <= 2000));
        assert!(*draws.iter().min().unwrap() < 100 && *draws.iter().max().unwrap() > 1900);
        let none = Lifecycle {
            reconnect_spread: Duration::ZERO,
            ..policy
        };
        assert_eq!(none.draw_delay_ms(&mut rng), 0);
    }

    #[test]
    fn only_version_2_gets_an_advisory() {
        let policy = Lifecycle::default();
        let mut rng = StdRng::seed_from_u64(7);
        let v1 = policy.advisory(
            ProtocolVersion::V1,
            ReconnectReason::Shutdown,
            &mut rng,
            1.0,
            nonce(),
        );
        assert_eq!(v1, None);
        let v2 = policy
            .advisory(
                ProtocolVersion::V2,
                ReconnectReason::Lifetime,
                &mut rng,
                1.0,
                nonce(),
            )
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&v2.to_json()).unwrap();
        assert_eq!(json["type"], "reconnect");
        assert_eq!(json["reason"], "lifetime");
        assert!(json["delayMs"].as_u64().unwrap() <= 5000);
    }

    #[test]
    fn the_jitter_flag_is_a_fraction() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        assert!(fraction("1.5").is_err() && fraction("-0.1").is_err() && fraction("x").is_err());
    }
}
