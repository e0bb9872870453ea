//! The worker protocol over NATS, for workers on other hosts: both ends.
//!
//! Subjects of run `<run>` (under [`SUBJECT_ROOT`]):
//! - `<run>.join`, request/reply: a worker asks for a part
//!   ([`Hello`]); the coordinator answers with the next [`Share`] or, once
//!   every share is taken, a refusal ([`JoinReply`]).
//! - `<run>.clock`, request/reply: the coordinator's clock, in protocol
//!   milliseconds, for the worker's offset ([`super::clock`]).
//! - `<run>.w<i>.out`: worker `i`'s [`FromWorker`] messages.
//! - `<run>.w<i>.in`: the coordinator's [`ToWorker`] messages to it.
//!
//! Each side subscribes before the other can send (the coordinator to
//! `out` before it answers the join, the worker to `in` before it says it
//! is ready), so core NATS loses nothing on a steady connection.

use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::{Client, Subscriber};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::clock::{ClockOffset, Exchange};
use super::message::{FromWorker, JoinReply, Share, ToWorker, decode, encode};

/// Where every run's subjects live.
pub const SUBJECT_ROOT: &str = "odin.load";

/// Clock exchanges a worker makes when it joins.
const CLOCK_EXCHANGES: usize = 8;

/// How long one join or clock request waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A worker's greeting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// Where it runs (its host name), for the coordinator's messages.
    pub host: String,
}

/// The subjects of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The subjects of run `run`: letters, digits, `-` and `_` only (one
    /// NATS subject token).
    pub fn of(run: &str) -> anyhow::Result<Subjects> {
        if run.is_empty()
            || !run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("run id {run:?}: use letters, digits, '-' and '_' only");
        }
        Ok(Subjects {
            prefix: format!("{SUBJECT_ROOT}.{run}"),
        })
    }

    fn join(&self) -> String {
        format!("{}.join", self.prefix)
    }

    fn clock(&self) -> String {
        format!("{}.clock", self.prefix)
    }

    fn worker_out(&self, index: usize) -> String {
        format!("{}.w{index}.out", self.prefix)
    }

    fn worker_in(&self, index: usize) -> String {
        format!("{}.w{index}.in", self.prefix)
    }
}

/// Publishes one message and flushes it.
async fn send<T: Serialize>(client: &Client, subject: String, message: &T) -> anyhow::Result<()> {
    client
        .publish(subject.clone(), encode(message).into())
        .await
        .with_context(|| format!("cannot publish on {subject}"))?;
    client
        .flush()
        .await
        .with_context(|| format!("cannot flush {subject}"))
}

/// Connects to the control NATS, trying again until `deadline` (a worker
/// may start before it).
pub async fn connect(url: &str, deadline: tokio::time::Instant) -> anyhow::Result<Client> {
    loop {
        let options = async_nats::ConnectOptions::new().request_timeout(Some(REQUEST_TIMEOUT));
        match options.connect(url).await {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("cannot connect to NATS at {url}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

// ---- The coordinator's end ----

/// The coordinator's end of one remote worker.
pub struct RemoteWorker {
    /// Its number in the run.
    pub index: usize,
    /// Where it runs.
    pub host: String,
    client: Client,
    out: Subscriber,
    to: String,
}

impl RemoteWorker {
    /// Its next message.
    pub async fn next(&mut self) -> anyhow::Result<FromWorker> {
        let message = self
            .out
            .next()
            .await
            .context("the control NATS connection closed")?;
        decode(&message.payload)
    }

    /// Sends it `message`.
    pub async fn send(&self, message: &ToWorker) -> anyhow::Result<()> {
        send(&self.client, self.to.clone(), message).await
    }
}

/// The coordinator's desk for one run: answers joins with the shares in
/// turn (and refuses the rest) and tells the time, until dropped.
pub struct Desk {
    task: tokio::task::JoinHandle<()>,
    joined: mpsc::UnboundedReceiver<RemoteWorker>,
    wanted: usize,
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Desk {
    /// Opens the desk of the run `subjects` names, with one share per
    /// worker wanted.
    pub async fn open(
        client: &Client,
        subjects: &Subjects,
        shares: Vec<Share>,
    ) -> anyhow::Result<Desk> {
        let mut joins = client.subscribe(subjects.join()).await?;
        let mut clock = client.subscribe(subjects.clock()).await?;
        client.flush().await?;
        let (tx, joined) = mpsc::unbounded_channel();
        let wanted = shares.len();
        let client = client.clone();
        let subjects = subjects.clone();
        let task = tokio::spawn(async move {
            let mut shares = shares.into_iter();
            loop {
                tokio::select! {
                    Some(request) = clock.next() => {
                        if let Some(reply) = request.reply {
                            let now = odin_protocol::time::now_millis().to_string();
                            let _ = client.publish(reply, now.into()).await;
                        }
                    }
                    Some(request) = joins.next() => {
                        let Some(reply) = request.reply else { continue };
                        let host = decode::<Hello>(&request.payload)
                            .map_or_else(|_| "an unknown host".to_owned(), |h| h.host);
                        let answer = match shares.next() {
                            Some(share) => match enlist(&client, &subjects, &share, host).await {
                                Ok(worker) => {
                                    let _ = tx.send(worker);
                                    JoinReply::Share(Box::new(share))
                                }
                                Err(e) => JoinReply::Refused { reason: format!("{e:#}") },
                            },
                            None => JoinReply::Refused {
                                reason: format!("every one of its {wanted} shares is taken"),
                            },
                        };
                        let _ = send(&client, reply.to_string(), &answer).await;
                    }
                    else => return,
                }
            }
        });
        Ok(Desk {
            task,
            joined,
            wanted,
        })
    }

    /// Waits until every share is taken; fails after `limit`, naming how
    /// many workers came.
    pub async fn wait_for_all(&mut self, limit: Duration) -> anyhow::Result<Vec<RemoteWorker>> {
        let mut workers = Vec::with_capacity(self.wanted);
        let deadline = tokio::time::Instant::now() + limit;
        while workers.len() < self.wanted {
            match tokio::time::timeout_at(deadline, self.joined.recv()).await {
                Ok(Some(worker)) => {
                    eprintln!(
                        "odin-load: worker {} joined from {} ({} of {})",
                        worker.index,
                        worker.host,
                        workers.len() + 1,
                        self.wanted
                    );
                    workers.push(worker);
                }
                Ok(None) => bail!("the run's desk stopped"),
                Err(_) => bail!(
                    "only {} of {} load workers joined within {}",
                    workers.len(),
                    self.wanted,
                    humantime::format_duration(limit)
                ),
            }
        }
        Ok(workers)
    }
}

/// Listens to a worker that takes `share`, before it is told its share.
async fn enlist(
    client: &Client,
    subjects: &Subjects,
    share: &Share,
    host: String,
) -> anyhow::Result<RemoteWorker> {
    let out = client.subscribe(subjects.worker_out(share.index)).await?;
    client.flush().await?;
    Ok(RemoteWorker {
        index: share.index,
        host,
        client: client.clone(),
        out,
        to: subjects.worker_in(share.index),
    })
}

// ---- The worker's end ----

/// A worker's end of its run on NATS.
#[derive(Debug, Clone)]
pub struct NatsLink {
    client: Client,
    out: String,
    inbox: String,
    /// Its clock against the coordinator's.
    pub clock: Option<ClockOffset>,
}

impl NatsLink {
    /// Sends the coordinator `message`.
    pub async fn send(&self, message: &FromWorker) -> anyhow::Result<()> {
        send(&self.client, self.out.clone(), message).await
    }

    /// Subscribes to what the coordinator sends it.
    pub async fn inbox(&self) -> anyhow::Result<Subscriber> {
        let inbox = self.client.subscribe(self.inbox.clone()).await?;
        self.client.flush().await?;
        Ok(inbox)
    }
}

/// Joins run `subjects` on `client`: asks for a part until a coordinator
/// answers or `deadline` passes, then measures the clocks' offset.
pub async fn join(
    client: Client,
    subjects: &Subjects,
    host: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(NatsLink, Share)> {
    let hello = encode(&Hello {
        host: host.to_owned(),
    });
    let share = loop {
        match client.request(subjects.join(), hello.clone().into()).await {
            Ok(reply) => match decode::<JoinReply>(&reply.payload)? {
                JoinReply::Share(share) => break *share,
                JoinReply::Refused { reason } => bail!("the coordinator refused: {reason}"),
            },
            Err(_) if tokio::time::Instant::now() < deadline => {
                // No coordinator yet (no responders) or a slow one.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(e).context("no coordinator answered");
            }
        }
    };
    let mut exchanges = Vec::with_capacity(CLOCK_EXCHANGES);
    for _ in 0..CLOCK_EXCHANGES {
        let sent_ms = odin_protocol::time::now_millis();
        let reply = client
            .request(subjects.clock(), bytes::Bytes::new())
            .await
            .context("the coordinator did not tell the time")?;
        let received_ms = odin_protocol::time::now_millis();
        let coordinator_ms: f64 = std::str::from_utf8(&reply.payload)?
            .parse()
            .context("the coordinator's time is not a number")?;
        exchanges.push(Exchange {
            sent_ms,
            coordinator_ms,
            received_ms,
        });
    }
    let link = NatsLink {
        client,
        out: subjects.worker_out(share.index),
        inbox: subjects.worker_in(share.index),
        clock: ClockOffset::estimate(&exchanges),
    };
    Ok((link, share))
}

#[cfg(test)]
mod tests {
    use odin_harness::nats::{BackendChoice, NatsOptions, NatsServer};

    use super::*;

    fn shares(n: usize) -> Vec<Share> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios.toml");
        let file = crate::scenario::ScenarioFile::load(&path).expect("the scenario file loads");
        let scenario = file.resolve("quick").expect("quick resolves");
        (0..n)
            .map(|index| Share {
                index,
                scenario: scenario.clone(),
                ws_url: format!("ws://gateway-{index}:8080/ws"),
                jwt_secret: "s".into(),
                connect_timeout: Duration::from_secs(1),
                max_generator_lag: Duration::from_millis(50),
            })
            .collect()
    }

    /// Returns once the server has handled everything `client` sent before:
    /// NATS handles one connection's commands in order, and a message to
    /// itself comes back only after them (async-nats's `flush` only empties
    /// the socket's buffer).
    async fn round_trip(client: &Client) {
        let subject = client.new_inbox();
        let mut echo = client.subscribe(subject.clone()).await.unwrap();
        client.publish(subject, "".into()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), echo.next())
            .await
            .expect("a message to itself comes back")
            .expect("the subscription is open");
    }

    #[tokio::test]
    async fn workers_take_the_shares_in_turn_and_a_short_run_names_how_many_came() {
        let nats = NatsServer::start_with(NatsOptions {
            backend: Some(BackendChoice::BinaryFirst),
            ..NatsOptions::default()
        })
        .await
        .expect("NATS starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let coordinator = connect(&nats.url(), deadline).await.unwrap();
        let subjects = Subjects::of("unit").unwrap();
        let mut desk = Desk::open(&coordinator, &subjects, shares(3))
            .await
            .unwrap();
        let mut links = Vec::new();
        for host in ["a", "b"] {
            let client = connect(&nats.url(), deadline).await.unwrap();
            let (link, share) = join(client, &subjects, host, deadline).await.unwrap();
            assert_eq!(share.index, links.len());
            // One clock: the offset is within its own error, so not applied.
            let clock = link.clock.expect("the clock was measured");
            assert!(!clock.applied, "{clock:?}");
            links.push(link);
        }
        let e = desk
            .wait_for_all(Duration::from_millis(300))
            .await
            .err()
            .expect("two of three cannot be all");
        assert_eq!(
            e.to_string(),
            "only 2 of 3 load workers joined within 300ms"
        );
        // The protocol runs both ways on the subjects of each share (the
        // coordinator's end of worker 0 made again: the desk's went with
        // the failed wait).
        let mut remote_a = enlist(&coordinator, &subjects, &shares(1)[0], "a".into())
            .await
            .unwrap();
        let mut inbox = links[0].inbox().await.unwrap();
        // Nothing here orders the subscriptions before the other side's
        // first message (in a run, each side's own next message does):
        // wait until the server has them.
        round_trip(&coordinator).await;
        round_trip(&links[0].client).await;
        remote_a
            .send(&ToWorker::Publish { started_ms: 5.0 })
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            decode::<ToWorker>(&got.payload).unwrap(),
            ToWorker::Publish { started_ms: 5.0 }
        );
        links[0]
            .send(&FromWorker::Failed { error: "x".into() })
            .await
            .unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), remote_a.next())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(back, FromWorker::Failed { error } if error == "x"));
        // The third share, then a refusal.
        let client = connect(&nats.url(), deadline).await.unwrap();
        join(client, &subjects, "c", deadline).await.unwrap();
        let client = connect(&nats.url(), deadline).await.unwrap();
        let refused = join(client, &subjects, "d", deadline).await.err().unwrap();
        assert!(
            format!("{refused:#}").contains("every one of its 3 shares is taken"),
            "{refused:#}"
        );
    }

    #[test]
    fn a_run_id_is_one_subject_token() {
        let s = Subjects::of("run-7_b").unwrap();
        assert_eq!(s.join(), "odin.load.run-7_b.join");
        assert_eq!(s.worker_in(2), "odin.load.run-7_b.w2.in");
        for bad in ["", "a.b", "a b", "*", ">"] {
            assert!(Subjects::of(bad).is_err(), "{bad:?}");
        }
    }
}
