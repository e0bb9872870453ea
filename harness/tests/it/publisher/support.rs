//! A NATS subscriber that captures every Odin message with its subject and
//! header, and the checks several tests share.

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use odin_harness::wait::LIMIT;
use odin_protocol::{Event, Subjects};
use serde_json::Value;
use tokio::sync::mpsc;

/// One message as a subscriber saw it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) subject: String,
    /// The `Nats-Msg-Id` header.
    pub(crate) msg_id: Option<String>,
    pub(crate) payload: Bytes,
    pub(crate) body: Value,
}

impl Received {
    pub(crate) fn nonce(&self) -> &str {
        self.body["nonce"].as_str().unwrap_or_default()
    }

    pub(crate) fn event(&self) -> Event {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not a protocol event: {e}", self.subject))
    }

    /// The body without what a replay or another run changes.
    pub(crate) fn content(&self) -> Value {
        let mut body = self.body.clone();
        let object = body.as_object_mut().expect("bodies are objects");
        object.remove("nonce");
        object.remove("timestamp");
        // When the run's schedule had it due: a stamp of the run too.
        object.remove("scheduledAt");
        body
    }
}

/// Captures everything published under `odin.>`.
pub(crate) struct Capture {
    pub(crate) client: async_nats::Client,
    rx: mpsc::UnboundedReceiver<Received>,
    pub(crate) messages: Vec<Received>,
}

impl Capture {
    /// Subscribes on `url`; the subscription is live when this returns.
    pub(crate) async fn start(url: &str) -> anyhow::Result<Capture> {
        let client = tokio::time::timeout(LIMIT, async_nats::connect(url))
            .await
            .context("connect timed out")??;
        let mut subscription = client
            .subscribe(Subjects::default().all())
            .await
            .context("subscribe")?;
        // The server has the subscription once it answers a round trip.
        tokio::time::timeout(LIMIT, client.flush())
            .await
            .context("flush timed out")??;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = subscription.next().await {
                let msg_id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.as_str().to_owned());
                let body = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                let received = Received {
                    subject: m.subject.to_string(),
                    msg_id,
                    payload: m.payload,
                    body,
                };
                if tx.send(received).is_err() {
                    break;
                }
            }
        });
        Ok(Capture {
            client,
            rx,
            messages: Vec::new(),
        })
    }

    /// Waits until at least `n` messages have been captured.
    pub(crate) async fn wait_for(&mut self, n: usize) -> anyhow::Result<()> {
        let waited = tokio::time::timeout(LIMIT, async {
            while self.messages.len() < n {
                match self.rx.recv().await {
                    Some(m) => self.messages.push(m),
                    None => bail!("the subscription ended"),
                }
            }
            Ok(())
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => bail!(
                "captured {} of {n} messages within {LIMIT:?}",
                self.messages.len()
            ),
        }
    }

    /// Takes whatever has arrived so far without waiting.
    pub(crate) fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.messages.push(m);
        }
    }
}

/// Checks what every message must satisfy (`PROTOCOL.md` §1, §3): the
/// subject names the body's type and token, the header equals the body's
/// nonce, the body is a valid event with a µs-precision timestamp taken
/// between `from` and `to` (ms since the epoch).
pub(crate) fn assert_on_the_wire(messages: &[Received], from: f64, to: f64) {
    let subjects = Subjects::default();
    for m in messages {
        let kind = subjects
            .parse(&m.subject)
            .unwrap_or_else(|| panic!("{} is not an Odin subject", m.subject));
        let event = m.event();
        assert_eq!(event.type_name(), kind.event_type(), "{}", m.subject);
        assert_eq!(
            event.token_id().map(|t| t.as_str()),
            kind.token_id(),
            "{}",
            m.subject
        );
        assert_eq!(m.msg_id.as_deref(), Some(m.nonce()), "{}", m.subject);
        let ts = event.timestamp();
        assert!(
            (from..=to).contains(&ts),
            "timestamp {ts} outside the run [{from}, {to}]"
        );
        let micros = ts * 1000.0;
        assert!(
            (micros - micros.round()).abs() < 1e-3,
            "timestamp {ts} is not in whole microseconds"
        );
        // Due by the schedule after the run began, and never after it was
        // made (the publisher sleeps until an event is due; 1 ms for the
        // wall clock against the monotonic one).
        let due = m.body["scheduledAt"].as_f64();
        assert!(
            due.is_some_and(|d| (from..=ts + 1.0).contains(&d)),
            "scheduledAt {due:?} not within [{from}, timestamp {ts}]"
        );
    }
}
