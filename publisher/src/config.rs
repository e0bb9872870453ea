//! The publisher's settings: one clap struct, every setting a flag and an
//! `ODIN_*` environment variable (flags win), per `PROTOCOL.md` §7.
//!
//! [`PublisherConfig::validate`] is the single place that checks values, so a
//! config built in code (tests, the harness) is held to the same rules as one
//! parsed from the command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use odin_protocol::Subjects;

use crate::error::ConfigError;
use crate::schedule::Pacing;

/// Default NATS URL (`PROTOCOL.md` §7).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Most tokens a run may simulate.
pub const MAX_TOKENS: usize = 1_000_000;
/// Highest `--rate` accepted (far above what one process can publish).
pub const MAX_RATE: f64 = 100_000_000.0;

/// How the binary writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Settings of one publisher run.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "odin-publisher",
    version,
    about = "Odin's market simulator: publishes realistic price, trade, volume, batch and market events to NATS at an exact rate, and records or replays them.",
    after_help = "Every setting is also read from the environment variable shown; a flag wins over its variable. \
On SIGINT/SIGTERM the publisher stops, flushes NATS and prints its totals. \
`--rate` counts trade price updates (each trade also publishes a trade_executed); scheduler events come on top, once per --tick."
)]
pub struct PublisherConfig {
    /// NATS server to publish to.
    #[arg(long, env = "ODIN_NATS_URL", default_value = DEFAULT_NATS_URL, value_name = "URL")]
    pub nats_url: String,

    /// First part of every subject (`<prefix>.token.<id>.price`, …).
    #[arg(long, env = "ODIN_SUBJECT_PREFIX", default_value = odin_protocol::subject::DEFAULT_PREFIX, value_name = "PREFIX")]
    pub subject_prefix: String,

    /// How many tokens to simulate (BTC, ETH, … then TKN0031, TKN0032, …).
    #[arg(long, env = "ODIN_TOKENS", default_value_t = 100, value_name = "N")]
    pub tokens: usize,

    /// Trade price events per second, all tokens together.
    #[arg(
        long,
        env = "ODIN_RATE",
        default_value_t = 100.0,
        value_name = "R",
        allow_negative_numbers = true
    )]
    pub rate: f64,

    /// Stop after this long (e.g. `30s`, `5m`); default: run until stopped.
    #[arg(long, env = "ODIN_DURATION", value_name = "D", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Time between scheduler ticks (batch_update, volume_update, market_stats).
    #[arg(long, env = "ODIN_TICK", default_value = "5s", value_name = "D", value_parser = parse_duration)]
    pub tick: Duration,

    /// Seed of the simulation: the same seed gives the same event sequence
    /// (nonces and timestamps aside). Default: a random seed, logged.
    #[arg(long, env = "ODIN_SEED", value_name = "N")]
    pub seed: Option<u64>,

    /// Derive nonces and trade ids from the seed too, so two runs with one
    /// seed publish identical bodies (a doubled publisher). Off by default:
    /// nonces stay unique across restarts and concurrent publishers.
    #[arg(long, env = "ODIN_DETERMINISTIC_NONCES", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub deterministic_nonces: bool,

    /// Fraction of messages re-published right away with the same nonce and
    /// bytes, to exercise de-duplication (0 to 1).
    #[arg(
        long,
        env = "ODIN_DUP_RATIO",
        default_value_t = 0.0,
        value_name = "P",
        allow_negative_numbers = true
    )]
    pub dup_ratio: f64,

    /// How trades are spread in time: exactly even, or Poisson arrivals.
    #[arg(long, env = "ODIN_PACING", value_enum, default_value_t = Pacing::Uniform)]
    pub pacing: Pacing,

    /// Zipf exponent of trading activity by token rank (0: all tokens alike).
    #[arg(
        long,
        env = "ODIN_SKEW",
        default_value_t = 1.0,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub skew: f64,

    /// Multiplier of every token's (realistic, annualised) volatility.
    #[arg(
        long,
        env = "ODIN_VOLATILITY",
        default_value_t = 1.0,
        value_name = "X",
        allow_negative_numbers = true
    )]
    pub volatility: f64,

    /// Most tokens in one batch_update message; more tokens are split over
    /// several messages so none exceeds NATS's payload limit.
    #[arg(
        long,
        env = "ODIN_BATCH_SIZE",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub batch_size: usize,

    /// When the publisher falls further behind its schedule than this (e.g.
    /// NATS was down), it skips the missed slots instead of bursting them.
    #[arg(long, env = "ODIN_MAX_LAG", default_value = "1s", value_name = "D", value_parser = parse_duration)]
    pub max_lag: Duration,

    /// Write every published message, with its subject and schedule time, to
    /// this JSON-lines file.
    #[arg(long, env = "ODIN_RECORD", value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Publish a recording instead of simulating, with fresh timestamps and
    /// nonces (simulation settings are then ignored).
    #[arg(long, env = "ODIN_REPLAY", value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// Replay speed: 2 plays a recording twice as fast.
    #[arg(
        long,
        env = "ODIN_SPEED",
        default_value_t = 1.0,
        value_name = "X",
        allow_negative_numbers = true
    )]
    pub speed: f64,

    /// Give up when NATS cannot be reached for this long at start.
    #[arg(long, env = "ODIN_CONNECT_TIMEOUT", default_value = "5s", value_name = "D", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// How long to wait for NATS to take the last messages when stopping.
    #[arg(long, env = "ODIN_FLUSH_TIMEOUT", default_value = "5s", value_name = "D", value_parser = parse_duration)]
    pub flush_timeout: Duration,

    /// Messages the NATS client buffers while the connection is down; past
    /// that, publishing waits (and then skips, see --max-lag).
    #[arg(
        long,
        env = "ODIN_NATS_BUFFER",
        default_value_t = 65_536,
        value_name = "N"
    )]
    pub nats_buffer: usize,

    /// Publish every price_update through JetStream and send a price again,
    /// while it is its token's latest, until the last-prices store (the
    /// stream of `odin-server --last-prices-stream`) confirms it: the store
    /// then ends on every token's latest price even when a NATS cluster
    /// loses the stream's leader. Needs that stream; the final flush waits
    /// (up to --flush-timeout) for the store.
    #[arg(long, env = "ODIN_CONFIRM_STORED_PRICES", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub confirm_stored_prices: bool,

    /// Print the final totals as one JSON line on stdout instead of a
    /// human-readable line.
    #[arg(long, env = "ODIN_TOTALS_JSON", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub totals_json: bool,

    /// Also write the final totals as JSON to this file.
    #[arg(long, env = "ODIN_TOTALS_FILE", value_name = "PATH")]
    pub totals_file: Option<PathBuf>,

    /// Log format (logs go to stderr; the level comes from RUST_LOG, default info).
    #[arg(long, env = "ODIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

impl Default for PublisherConfig {
    /// The defaults of the command line, without reading the environment.
    fn default() -> Self {
        Self {
            nats_url: DEFAULT_NATS_URL.to_owned(),
            subject_prefix: odin_protocol::subject::DEFAULT_PREFIX.to_owned(),
            tokens: 100,
            rate: 100.0,
            duration: None,
            tick: Duration::from_secs(5),
            seed: None,
            deterministic_nonces: false,
            dup_ratio: 0.0,
            pacing: Pacing::Uniform,
            skew: 1.0,
            volatility: 1.0,
            batch_size: 1000,
            max_lag: Duration::from_secs(1),
            record: None,
            replay: None,
            speed: 1.0,
            connect_timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(5),
            nats_buffer: 65_536,
            confirm_stored_prices: false,
            totals_json: false,
            totals_file: None,
            log_format: LogFormat::Human,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        reason: reason.into(),
    }
}

impl PublisherConfig {
    /// Checks every value and their combinations; the error names the flag.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.subjects()?;
        self.nats_url
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| invalid("--nats-url", format!("{e} (got {:?})", self.nats_url)))?;
        if self.tokens == 0 || self.tokens > MAX_TOKENS {
            return Err(invalid(
                "--tokens",
                format!("must be 1 to {MAX_TOKENS} (got {})", self.tokens),
            ));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(invalid(
                "--rate",
                format!(
                    "must be a positive number of events per second, at most {MAX_RATE} (got {})",
                    self.rate
                ),
            ));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(invalid("--duration", "must be longer than 0"));
        }
        if self.tick < Duration::from_millis(10) {
            return Err(invalid(
                "--tick",
                format!("must be at least 10ms (got {:?})", self.tick),
            ));
        }
        if !(0.0..=1.0).contains(&self.dup_ratio) {
            return Err(invalid(
                "--dup-ratio",
                format!("must be between 0 and 1 (got {})", self.dup_ratio),
            ));
        }
        if !(0.0..=5.0).contains(&self.skew) {
            return Err(invalid(
                "--skew",
                format!("must be between 0 and 5 (got {})", self.skew),
            ));
        }
        if !(0.0..=1000.0).contains(&self.volatility) {
            return Err(invalid(
                "--volatility",
                format!("must be between 0 and 1000 (got {})", self.volatility),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return Err(invalid(
                "--batch-size",
                format!("must be 1 to 100000 (got {})", self.batch_size),
            ));
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return Err(invalid(
                "--speed",
                format!("must be a positive number (got {})", self.speed),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("--connect-timeout", "must be longer than 0"));
        }
        if self.nats_buffer == 0 {
            return Err(invalid("--nats-buffer", "must be at least 1"));
        }
        if self.record.is_some() && self.record == self.replay {
            return Err(invalid("--record", "must not be the file being replayed"));
        }
        Ok(())
    }

    /// The subjects under `--subject-prefix`.
    pub fn subjects(&self) -> Result<Subjects, ConfigError> {
        Subjects::new(&self.subject_prefix).map_err(|e| invalid("--subject-prefix", e.to_string()))
    }

    /// The command-line arguments that reproduce this configuration (every
    /// setting explicit, so the child does not depend on its environment);
    /// used by the harness to start the binary.
    pub fn to_args(&self) -> Vec<String> {
        fn dur(d: Duration) -> String {
            format!("{}ms", d.as_millis().max(1))
        }
        let mut args = vec![
            format!("--nats-url={}", self.nats_url),
            format!("--subject-prefix={}", self.subject_prefix),
            format!("--tokens={}", self.tokens),
            format!("--rate={}", self.rate),
            format!("--tick={}", dur(self.tick)),
            format!("--dup-ratio={}", self.dup_ratio),
            format!(
                "--pacing={}",
                match self.pacing {
                    Pacing::Uniform => "uniform",
                    Pacing::Poisson => "poisson",
                }
            ),
            format!("--skew={}", self.skew),
            format!("--volatility={}", self.volatility),
            format!("--batch-size={}", self.batch_size),
            format!("--max-lag={}", dur(self.max_lag)),
            format!("--speed={}", self.speed),
            format!("--connect-timeout={}", dur(self.connect_timeout)),
            format!("--flush-timeout={}", dur(self.flush_timeout)),
            format!("--nats-buffer={}", self.nats_buffer),
            format!(
                "--log-format={}",
                match self.log_format {
                    LogFormat::Human => "human",
                    LogFormat::Json => "json",
                }
            ),
        ];
        if let Some(d) = self.duration {
            args.push(format!("--duration={}", dur(d)));
        }
        if let Some(seed) = self.seed {
            args.push(format!("--seed={seed}"));
        }
        if self.deterministic_nonces {
            args.push("--deterministic-nonces".to_owned());
        }
        if self.confirm_stored_prices {
            args.push("--confirm-stored-prices".to_owned());
        }
        if let Some(p) = &self.record {
            args.push(format!("--record={}", p.display()));
        }
        if let Some(p) = &self.replay {
            args.push(format!("--replay={}", p.display()));
        }
        if self.totals_json {
            args.push("--totals-json".to_owned());
        }
        if let Some(p) = &self.totals_file {
            args.push(format!("--totals-file={}", p.display()));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        PublisherConfig::default().validate().unwrap();
    }

    #[test]
    fn to_args_round_trips() {
        let config = PublisherConfig {
            tokens: 7,
            rate: 12.5,
            duration: Some(Duration::from_millis(1500)),
            seed: Some(42),
            deterministic_nonces: true,
            dup_ratio: 0.25,
            pacing: Pacing::Poisson,
            record: Some("/tmp/x.jsonl".into()),
            totals_json: true,
            ..PublisherConfig::default()
        };
        let mut args = vec!["odin-publisher".to_owned()];
        args.extend(config.to_args());
        assert_eq!(PublisherConfig::try_parse_from(args).unwrap(), config);
    }

    #[test]
    fn each_bad_setting_is_named() {
        type Break = fn(&mut PublisherConfig);
        let cases: [(&str, Break); 10] = [
            ("--rate", |c| c.rate = -5.0),
            ("--rate", |c| c.rate = 0.0),
            ("--rate", |c| c.rate = f64::NAN),
            ("--tokens", |c| c.tokens = 0),
            ("--dup-ratio", |c| c.dup_ratio = 1.5),
            ("--subject-prefix", |c| c.subject_prefix = "a.*".into()),
            ("--nats-url", |c| c.nats_url = "nats://:x:y".into()),
            ("--duration", |c| c.duration = Some(Duration::ZERO)),
            ("--tick", |c| c.tick = Duration::from_millis(1)),
            ("--speed", |c| c.speed = 0.0),
        ];
        for (setting, break_it) in cases {
            let mut config = PublisherConfig::default();
            break_it(&mut config);
            let err = config.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    #[test]
    fn negative_rate_parses_then_fails_validation() {
        let config = PublisherConfig::try_parse_from(["odin-publisher", "--rate", "-5"]).unwrap();
        assert_eq!(config.validate().unwrap_err().setting, "--rate");
    }
}
