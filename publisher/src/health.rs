//! `odin-publisher health`: the publisher is healthy when its events are on
//! NATS. The check subscribes to every subject under the prefix and waits
//! for one event; it is what a container health check runs (the image has
//! no shell), and it checks the one thing the publisher is for rather than
//! whether its process exists.

use std::time::Duration;

use anyhow::{Context, anyhow};
use futures_util::StreamExt;

/// Flags of `odin-publisher health`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "odin-publisher health",
    about = "Exit 0 once an event arrives on <prefix>.> within --timeout, else non-zero with one line saying why."
)]
pub struct HealthArgs {
    /// NATS server the publisher publishes to.
    #[arg(long, env = "ODIN_NATS_URL", default_value = crate::config::DEFAULT_NATS_URL, value_name = "URL")]
    pub nats_url: String,
    /// First part of every subject the publisher uses.
    #[arg(long, env = "ODIN_SUBJECT_PREFIX", default_value = odin_protocol::subject::DEFAULT_PREFIX, value_name = "PREFIX")]
    pub subject_prefix: String,
    /// How long to wait for NATS and the first event (e.g. `10s`); longer
    /// than the gap between two of the publisher's events.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Waits for the first event under `args.subject_prefix` and returns its
/// subject; an error says which NATS, which subjects and what went wrong.
pub async fn first_event(args: &HealthArgs) -> anyhow::Result<String> {
    let subjects = format!("{}.>", args.subject_prefix);
    let wait = async {
        let client = async_nats::connect(&args.nats_url)
            .await
            .with_context(|| format!("cannot connect to NATS at {}", args.nats_url))?;
        let mut events = client
            .subscribe(subjects.clone())
            .await
            .with_context(|| format!("cannot subscribe to {subjects}"))?;
        let first = events
            .next()
            .await
            .ok_or_else(|| anyhow!("the subscription to {subjects} ended"))?;
        anyhow::Ok(first.subject.to_string())
    };
    tokio::time::timeout(args.timeout, wait)
        .await
        .map_err(|_| {
            anyhow!(
                "no event on {subjects} at {} within {}",
                args.nats_url,
                humantime::format_duration(args.timeout)
            )
        })?
}
