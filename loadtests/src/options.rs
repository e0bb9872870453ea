//! How a run is set up besides its scenario (the target, where files go,
//! the generator's limits), and the error of a run that could not start.
//! Shared by the single-process run, the workers and the fleet's coordinator.

use std::time::Duration;

use crate::stack::Target;
use crate::worker::link::WorkerLink;

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
    /// One load process of several ([`crate::fleet`], [`crate::worker`]):
    /// instead of running the publisher, report readiness to the
    /// coordinator over this link and take the publish start and the
    /// publisher's totals from it.
    pub worker: Option<WorkerLink>,
    /// A coordinator whose workers join over NATS from anywhere, instead of
    /// starting local worker processes.
    pub remote: Option<RemoteWorkers>,
}

/// A run whose load workers run elsewhere (`odin-load worker --nats`), on
/// other hosts or in containers, and join it over NATS.
#[derive(Debug, Clone)]
pub struct RemoteWorkers {
    /// Workers the run waits for; the users are split over them.
    pub count: usize,
    /// The run's id: its NATS subjects are `odin.load.<id>.…`.
    pub run_id: String,
    /// The NATS the coordinator talks to the workers over, when not the
    /// target's.
    pub control_nats: Option<String>,
    /// How long to wait for every worker to join.
    pub join_timeout: Duration,
    /// The gateways' WebSocket URLs as the workers reach them; worker `w`
    /// connects to `ws_urls[w % len]`.
    pub ws_urls: Vec<String>,
}

/// Why a run could not even start (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct SetupError(pub anyhow::Error);
