//! Unit tests of the settings: flags, `ODIN_*` variables and the checks
//! that refuse bad combinations.

use super::*;
use crate::auth::MIN_SECRET_BYTES;

#[test]
fn command_line_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn refuses_to_start_without_a_secret_outside_dev_mode() {
    let cli = Cli::try_parse_from(["odin-server"]).unwrap();
    let err = cli.server.into_config().unwrap_err();
    assert!(matches!(err, ConfigError::MissingSecret));
    let cli = Cli::try_parse_from(["odin-server", "--dev"]).unwrap();
    assert!(cli.server.jwt.uses_dev_secret());
    assert!(cli.server.into_config().is_ok());
}

#[test]
fn the_nats_ping_interval_defaults_to_5s_and_must_be_positive() {
    let config = |extra: &[&str]| {
        let mut args = vec!["odin-server", "--dev"];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args).map(|cli| cli.server.into_config().unwrap())
    };
    assert_eq!(
        config(&[]).unwrap().nats_ping_interval,
        Duration::from_secs(5)
    );
    let quick = config(&["--nats-ping-interval", "300ms"]).unwrap();
    assert_eq!(quick.nats_ping_interval, Duration::from_millis(300));
    assert!(config(&["--nats-ping-interval", "0s"]).is_err());
}

#[test]
fn the_event_window_reaches_back_by_the_age_and_ahead_by_the_skew() {
    let window = EventLimits {
        max_age: Duration::from_secs(3600),
        max_ahead: Duration::from_secs(60),
        ..EventLimits::default()
    };
    let now = 1_800_000_000_000.0;
    assert_eq!(window.off_by_ms(now, now), None);
    assert_eq!(window.off_by_ms(now - 3_600_000.0, now), None);
    assert_eq!(window.off_by_ms(now + 60_000.0, now), None);
    assert_eq!(window.off_by_ms(now - 3_600_001.0, now), Some(1.0));
    assert_eq!(window.off_by_ms(now + 60_002.0, now), Some(2.0));
    assert!(window.off_by_ms(1.0, now).is_some());
    let cli = Cli::try_parse_from([
        "odin-server",
        "--dev",
        "--max-event-age",
        "10m",
        "--max-clock-skew",
        "0s",
        "--max-event-bytes",
        "1000",
    ])
    .unwrap();
    assert_eq!(
        cli.server.into_config().unwrap().event_limits,
        EventLimits {
            max_bytes: 1000,
            max_age: Duration::from_secs(600),
            max_ahead: Duration::ZERO
        }
    );
}

#[test]
fn refuses_a_short_secret_outside_dev_mode() {
    let config = |args: &[&str]| {
        let mut all = vec!["odin-server"];
        all.extend(args);
        Cli::try_parse_from(all).unwrap().server.into_config()
    };
    let short = "x".repeat(MIN_SECRET_BYTES - 1);
    let long = "x".repeat(MIN_SECRET_BYTES);
    let err = config(&["--jwt-secret", &short]).unwrap_err();
    assert!(matches!(err, ConfigError::ShortSecret(31)), "{err}");
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(config(&["--jwt-secret", &long]).is_ok());
    assert!(
        config(&["--jwt-secret", "s", "--dev"]).is_ok(),
        "development mode takes any"
    );
}

#[test]
fn the_last_prices_store_is_off_unless_named() {
    let config = |args: &[&str]| {
        let mut all = vec!["odin-server", "--dev"];
        all.extend(args);
        Cli::try_parse_from(all).unwrap().server.into_config()
    };
    assert_eq!(config(&[]).unwrap().last_prices, None);
    assert_eq!(
        config(&["--last-prices-stream", ""]).unwrap().last_prices,
        None
    );
    let on = config(&[
        "--last-prices-stream",
        "ODIN_LAST",
        "--last-prices-replicas",
        "3",
    ])
    .unwrap()
    .last_prices
    .unwrap();
    assert_eq!((on.stream.as_str(), on.replicas), ("ODIN_LAST", 3));
    assert_eq!(on.load_timeout, Duration::from_secs(10));
    assert!(matches!(
        config(&["--last-prices-stream", "a.b"]),
        Err(ConfigError::LastPricesStream)
    ));
}

#[test]
fn the_lifetime_is_off_by_default_and_its_flags_are_checked() {
    let config = |extra: &[&str]| {
        let mut args = vec!["odin-server", "--dev"];
        args.extend_from_slice(extra);
        Cli::try_parse_from(args).map(|cli| cli.server.into_config().unwrap())
    };
    let default = config(&[]).unwrap().lifecycle;
    assert_eq!(default, crate::lifecycle::Lifecycle::default());
    assert_eq!(default.max_lifetime, None);
    assert_eq!(default.reconnect_spread, Duration::from_secs(5));
    let set = config(&[
        "--max-connection-lifetime",
        "1h",
        "--connection-lifetime-jitter",
        "0.25",
        "--reconnect-spread",
        "0s",
    ])
    .unwrap()
    .lifecycle;
    assert_eq!(set.max_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!(set.lifetime_jitter, 0.25);
    assert_eq!(set.reconnect_spread, Duration::ZERO);
    for bad in [
        ["--max-connection-lifetime", "0s"],
        ["--connection-lifetime-jitter", "1.5"],
        ["--connection-lifetime-jitter", "NaN"],
        ["--reconnect-spread", "soon"],
    ] {
        let err = config(&bad).unwrap_err().to_string();
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
}
