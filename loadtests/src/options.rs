//! How a run is set up besides its scenario (the target, where files go,
//! the generator's limits), and the error of a run that could not start.
//! Shared by the single-process run, the workers and the fleet's coordinator.

use std::time::Duration;

use crate::stack::Target;

/// How a run is set up besides its scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What to test.
    pub target: Target,
    /// Where this run's files go.
    pub out_dir: std::path::PathBuf,
    /// How long a user may take to connect and subscribe.
    pub connect_timeout: Duration,
    /// Generator scheduling lag (p99) beyond which the run is invalid.
    pub max_generator_lag: Duration,
    /// Extra Goose flags, passed as they are.
    pub goose_args: Vec<String>,
    /// Print a progress line every second.
    pub progress: bool,
    /// The local addresses users connect from, user `i` from address
    /// `i % len` (see [`odin_harness::client::ClientConfig::source_ip`]);
    /// empty lets the kernel choose.
    pub source_ips: Vec<std::net::IpAddr>,
    /// One load process of several ([`crate::fleet`], [`crate::worker`]): instead of running the
    /// publisher, report readiness on stdout and take the publish start and
    /// the publisher's totals from the coordinator on stdin.
    pub worker: bool,
}

/// Why a run could not even start (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SetupError(pub anyhow::Error);
