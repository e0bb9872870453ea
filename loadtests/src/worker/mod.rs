//! The load worker protocol: a worker is one `odin-load worker` process of
//! a run over several ([`crate::fleet`]), holding a share of its users. One
//! protocol ([`message`]) on two transports: a local child's pipes
//! ([`pipes`], the coordinator starts it) or NATS ([`bus`], a worker started
//! anywhere joins the run). The state machine is here, once for both:
//! the worker's publish phase ([`publish_phase`], called by its run,
//! [`crate::run`]) and the coordinator's end of each worker ([`WorkerEnd`]).
//!
//! Worker: its users in → [`FromWorker::Ready`]; [`ToWorker::Publish`] →
//! measure from then on; [`ToWorker::Totals`] → account and judge →
//! [`FromWorker::Report`].

pub mod bus;
pub mod clock;
pub mod link;
pub mod message;
pub mod pipes;

use std::time::Duration;

use anyhow::bail;
use odin_publisher::Totals;

pub use link::WorkerLink;
use message::{FromWorker, Ready, Share, ToWorker};

use crate::lag::LagMonitor;
use crate::report::RunReport;
use crate::scenario::Scenario;
use crate::user::LoadContext;

/// The coordinator's end of one worker, on either transport.
pub(crate) enum WorkerEnd {
    /// A child process of the coordinator.
    Local(pipes::LocalWorker),
    /// A worker that joined over NATS.
    Remote(bus::RemoteWorker),
}

impl WorkerEnd {
    /// The worker's name in messages.
    pub(crate) fn name(&self) -> String {
        match self {
            WorkerEnd::Local(w) => format!("worker {}", w.index),
            WorkerEnd::Remote(w) => format!("worker {} (on {})", w.index, w.host),
        }
    }

    async fn next(&mut self) -> anyhow::Result<FromWorker> {
        match self {
            WorkerEnd::Local(w) => w.next().await,
            WorkerEnd::Remote(w) => w.next().await,
        }
    }

    /// Sends the worker `message`.
    pub(crate) async fn send(&mut self, message: &ToWorker) -> anyhow::Result<()> {
        match self {
            WorkerEnd::Local(w) => w.send(message).await,
            WorkerEnd::Remote(w) => w.send(message).await,
        }
    }

    /// Waits until the worker's users are in.
    pub(crate) async fn ready(&mut self) -> anyhow::Result<Ready> {
        match self.next().await? {
            FromWorker::Ready(ready) => Ok(ready),
            FromWorker::Failed { error } => bail!("{} failed: {error}", self.name()),
            FromWorker::Report(_) => bail!("{} reported before it was ready", self.name()),
        }
    }

    /// Waits for the worker's report (after [`ToWorker::Totals`]).
    pub(crate) async fn report(&mut self) -> anyhow::Result<RunReport> {
        match self.next().await? {
            FromWorker::Report(report) => Ok(*report),
            FromWorker::Failed { error } => bail!("{} failed: {error}", self.name()),
            FromWorker::Ready(_) => bail!("{} said it was ready twice", self.name()),
        }
    }
}

/// How the workers of a run are given their part.
pub(crate) struct ShareTerms<'a> {
    /// The gateways' WebSocket URLs as the workers reach them; worker `w`
    /// takes `ws_urls[w % len]`.
    pub(crate) ws_urls: &'a [String],
    /// The secret the users' tokens are signed with.
    pub(crate) jwt_secret: &'a str,
    /// How long a user may take to connect and subscribe.
    pub(crate) connect_timeout: Duration,
    /// Generator scheduling lag (p99) beyond which a share is invalid.
    pub(crate) max_generator_lag: Duration,
}

/// `scenario`'s users split over `workers` shares, numbered across them (so
/// channels spread as in one process), each with its part of the ramp.
pub(crate) fn shares(scenario: &Scenario, workers: usize, terms: &ShareTerms<'_>) -> Vec<Share> {
    let mut first_user = 0;
    (0..workers)
        .map(|index| {
            let users = scenario.users / workers + usize::from(index < scenario.users % workers);
            let mut part = scenario.clone();
            part.users = users;
            part.first_user = first_user;
            part.processes = 1;
            part.gateways = 1;
            part.ramp_rate = scenario.ramp_rate * users as f64 / scenario.users as f64;
            first_user += users;
            Share {
                index,
                scenario: part,
                ws_url: terms.ws_urls[index % terms.ws_urls.len()].clone(),
                jwt_secret: terms.jwt_secret.to_owned(),
                connect_timeout: terms.connect_timeout,
                max_generator_lag: terms.max_generator_lag,
            }
        })
        .collect()
}

/// A worker's publish phase: says its users are in, takes the publish start
/// from the coordinator, and later the publisher's totals (after the
/// drain). Returns the totals and how long publishing took.
pub(crate) async fn publish_phase(
    link: &WorkerLink,
    ctx: &LoadContext,
    scenario: &Scenario,
    ramp_started_ms: f64,
    lag: &LagMonitor,
) -> (anyhow::Result<Totals>, f64) {
    let mut publish_secs = 0.0;
    let result = async {
        let clock = link.clock();
        if let Some(clock) = clock {
            ctx.clock.set_offset_us(clock.correction_us());
        }
        let on_coordinator = |ms: f64| clock.map_or(ms, |c| c.to_coordinator_ms(ms));
        let mut inbox = link.inbox().await?;
        let ready = Ready {
            live: ctx.subscribed.load(std::sync::atomic::Ordering::Acquire),
            failed: ctx.failed.load(std::sync::atomic::Ordering::Acquire),
            ramp_started_ms: on_coordinator(ramp_started_ms),
            all_in_ms: on_coordinator(odin_protocol::time::now_millis()),
            clock,
        };
        link.send(&FromWorker::Ready(ready)).await?;
        loop {
            match inbox.next().await? {
                ToWorker::Publish { started_ms } => {
                    ctx.clock.set_publish_started(started_ms, scenario.warmup);
                    // Other workers may have ramped until now: only the
                    // measuring part counts for the generator's lag.
                    lag.reset();
                }
                ToWorker::Totals {
                    totals,
                    publish_secs: secs,
                } => {
                    publish_secs = secs;
                    return Ok(*totals);
                }
            }
        }
    }
    .await;
    (result, publish_secs)
}
