//! The gateway's NATS clients and their subscriptions: the URLs tried in the
//! order given, quick reconnects, pings often enough that a silent server
//! (a cut network) is given up within seconds, a count of connections made that the
//! last-prices catch-up ([`crate::last_prices::CatchUp`]) waits on, and the
//! one live subscription of each client, to every Odin subject.

use std::time::Duration;

use anyhow::Context as _;
use odin_protocol::Subjects;
use tokio::sync::watch;

/// The gateway's NATS clients: the first (`--nats-url`) and the second
/// (`--nats-second-url`), if any.
pub(crate) struct NatsClients {
    pub(crate) first: async_nats::Client,
    pub(crate) second: Option<async_nats::Client>,
}

/// Connects to the comma-separated `url` list (given as `flag`, for the
/// error) as `odin-server <name>`, pinging every `ping_interval` when quiet,
/// retrying until NATS is there. Every connection made, the first and each
/// reconnect, adds one to `connections` when given.
///
/// The client's connection task runs on the runtime this is called on.
pub(crate) async fn connect(
    url: String,
    flag: &'static str,
    name: String,
    ping_interval: Duration,
    connections: Option<watch::Sender<u64>>,
) -> anyhow::Result<async_nats::Client> {
    let addrs: Vec<async_nats::ServerAddr> = url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{flag} {url:?} is not a NATS URL"))?;
    let connection = std::sync::Arc::new(name);
    async_nats::ConnectOptions::new()
        .name(format!("odin-server {connection}"))
        .retry_on_initial_connect()
        // The URLs in the order given: the first reachable one is used, the
        // next on failure (a fleet spreads its gateways over a cluster so).
        .retain_servers_order()
        // Any message from the server resets the clock; three pings
        // unanswered and the client reconnects (async-nats's rule), which
        // is what turns `/health` to `degraded` on a cut network.
        .ping_interval(ping_interval)
        .max_reconnects(None)
        // Local brokers come back fast; don't let the default back-off
        // (up to 4 s) delay live events after a NATS restart.
        .reconnect_delay_callback(|attempts| {
            let exp = attempts.saturating_sub(1).min(5) as u32;
            Duration::from_millis(50 * 2u64.pow(exp)).min(Duration::from_secs(1))
        })
        .event_callback(move |event| {
            if let Some(connections) = &connections
                && matches!(event, async_nats::Event::Connected)
            {
                connections.send_modify(|n| *n += 1);
            }
            let which = connection.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(connection = %which, "NATS connected")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(connection = %which, "NATS disconnected")
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            }
        })
        .connect(addrs)
        .await
        .context("cannot start the NATS client")
}

/// Subscribes `client` to every Odin subject: the gateway's live events.
pub(crate) async fn subscribe(
    client: &async_nats::Client,
    subjects: &Subjects,
) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
    client.subscribe(subjects.all()).await
}
