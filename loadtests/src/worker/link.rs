//! A worker's end of the protocol, on either transport: what the worker's
//! run ([`crate::run`], through [`crate::options::RunOptions::worker`])
//! holds to talk to its coordinator.

use futures_util::StreamExt;

use super::bus::NatsLink;
use super::clock::ClockOffset;
use super::message::{FromWorker, ToWorker, decode};
use super::pipes;

/// How a worker reaches its coordinator.
#[derive(Debug, Clone)]
pub enum WorkerLink {
    /// Its own stdin and stdout: a local child of the coordinator.
    Pipes,
    /// NATS: a worker anywhere, joined to a run.
    Nats(Box<NatsLink>),
}

impl WorkerLink {
    /// The worker's clock against the coordinator's, when measured.
    pub fn clock(&self) -> Option<ClockOffset> {
        match self {
            WorkerLink::Pipes => None,
            WorkerLink::Nats(link) => link.clock,
        }
    }

    /// Sends the coordinator `message`.
    pub async fn send(&self, message: &FromWorker) -> anyhow::Result<()> {
        match self {
            WorkerLink::Pipes => pipes::send(message),
            WorkerLink::Nats(link) => link.send(message).await,
        }
    }

    /// Starts listening to the coordinator (before telling it anything it
    /// would answer).
    pub async fn inbox(&self) -> anyhow::Result<Inbox> {
        Ok(match self {
            WorkerLink::Pipes => Inbox::Pipes(pipes::Inbox::open()),
            WorkerLink::Nats(link) => Inbox::Nats(link.inbox().await?),
        })
    }
}

/// What the coordinator sends a worker, as it comes.
pub enum Inbox {
    /// Lines on stdin.
    Pipes(pipes::Inbox),
    /// Messages on the worker's subject.
    Nats(async_nats::Subscriber),
}

impl Inbox {
    /// The next message.
    pub async fn next(&mut self) -> anyhow::Result<ToWorker> {
        match self {
            Inbox::Pipes(inbox) => inbox.next().await,
            Inbox::Nats(subscriber) => match subscriber.next().await {
                Some(message) => decode(&message.payload),
                None => anyhow::bail!("the control NATS connection closed"),
            },
        }
    }
}
