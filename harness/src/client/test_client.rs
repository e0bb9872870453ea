//! A reference client for tests: runs on its own task and reports every
//! message and lifecycle step as a [`ClientEvent`] that the test awaits with
//! a timeout.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use odin_protocol::ServerMessage;
use odin_protocol::message::ChannelsAck;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::ClientConfig;
use super::driver::Client;
use super::observer::{ChannelObserver, ClientEvent};
use super::stats::{ClientCounters, ClientStats};

/// How many skipped events a timeout error quotes.
const SKIPPED_SHOWN: usize = 8;

/// A spawned reference client whose events a test awaits; stops on drop.
#[derive(Debug)]
pub struct TestClient {
    events: mpsc::UnboundedReceiver<ClientEvent>,
    stats: Arc<ClientStats>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl TestClient {
    /// Starts a client of `config` on a new task; `token` is called before
    /// every connection attempt.
    pub fn spawn(config: ClientConfig, token: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let client = Client::new(config, token, ChannelObserver { tx });
        let stats = client.stats();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                client.run(shutdown).await;
            }
        });
        Self {
            events,
            stats,
            shutdown,
            task: Some(task),
        }
    }

    /// The next event, whatever it is.
    pub async fn next_event(&mut self, limit: Duration) -> anyhow::Result<ClientEvent> {
        tokio::time::timeout(limit, self.events.recv())
            .await
            .with_context(|| format!("no client event within {limit:?}"))?
            .context("the client stopped")
    }

    /// Skips events until `pick` returns `Some`, within `limit` in all; the
    /// error names `what` and quotes the last events skipped.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut pick: impl FnMut(ClientEvent) -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut skipped: VecDeque<String> = VecDeque::new();
        let found = tokio::time::timeout(limit, async {
            while let Some(event) = self.events.recv().await {
                let shown = format!("{event:?}");
                if let Some(found) = pick(event) {
                    return Some(found);
                }
                if skipped.len() == SKIPPED_SHOWN {
                    skipped.pop_front();
                }
                skipped.push_back(shown);
            }
            None
        })
        .await;
        let skipped = Vec::from(skipped).join("\n  ");
        match found {
            Ok(Some(found)) => Ok(found),
            Ok(None) => bail!("the client stopped before {what}; last events:\n  {skipped}"),
            Err(_) => bail!("no {what} within {limit:?}; last events:\n  {skipped}"),
        }
    }

    /// Waits for the next `subscribed`.
    pub async fn wait_subscribed(&mut self, limit: Duration) -> anyhow::Result<ChannelsAck> {
        self.wait_for("subscribed", limit, |e| match e {
            ClientEvent::Subscribed(ack) => Some(ack),
            _ => None,
        })
        .await
    }

    /// Waits for the next event delivered to the application.
    pub async fn next_message(&mut self, limit: Duration) -> anyhow::Result<ServerMessage> {
        self.wait_for("delivered message", limit, |e| match e {
            ClientEvent::Message { message, .. } => Some(message),
            _ => None,
        })
        .await
    }

    /// Waits for the connection to end; returns its close code.
    pub async fn wait_disconnected(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        self.wait_for("disconnect", limit, |e| match e {
            ClientEvent::Disconnected { code, .. } => Some(code),
            _ => None,
        })
        .await
    }

    /// The counters now.
    pub fn stats(&self) -> ClientCounters {
        self.stats.snapshot()
    }

    /// The live counters, to watch from elsewhere.
    pub fn stats_handle(&self) -> Arc<ClientStats> {
        self.stats.clone()
    }

    /// Asks the client to stop (it closes with `1000`) and waits until it has.
    pub async fn shutdown(mut self, limit: Duration) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(limit, task)
                .await
                .with_context(|| format!("the client did not stop within {limit:?}"))?
                .context("the client task failed")?;
        }
        Ok(())
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
