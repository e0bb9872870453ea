//! The control client of the hostile suite: a healthy subscriber of one
//! token fed a steady stream of price updates on its own NATS connection
//! while an attack runs, and the check that it got every one of them, in
//! order, each within [`LATENCY_BOUND`] of its `timestamp`.

use std::time::Duration;

use odin_harness::wait::LIMIT;
use odin_protocol::time::now_millis;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server::support::{Stack, Ws};
use crate::support::Publisher;

/// The token the control client follows; attacks use others.
pub(crate) const CONTROL_TOKEN: &str = "CONTROL";
/// How often the control feed publishes.
const EVERY: Duration = Duration::from_millis(20);
/// The longest an event may take from its `timestamp` to the control client.
/// Generous for a debug build on a loaded two-core machine; an attack that
/// starves other clients holds them up for seconds.
pub(crate) const LATENCY_BOUND_MS: f64 = 1_000.0;
/// The same bound as a duration, for messages.
pub(crate) const LATENCY_BOUND: Duration = Duration::from_millis(LATENCY_BOUND_MS as u64);

/// A running control feed and its subscriber.
pub(crate) struct Control {
    stop: oneshot::Sender<()>,
    feed: JoinHandle<Vec<String>>,
    last: oneshot::Sender<String>,
    reader: JoinHandle<Vec<(String, f64)>>,
}

impl Control {
    /// Subscribes a client to `token.CONTROL` on `stack`'s server and starts
    /// publishing to it; returns once the first event has arrived.
    pub(crate) async fn start(stack: &Stack) -> Control {
        let mut ws = stack.client().await;
        let channel = format!("token.{CONTROL_TOKEN}");
        ws.subscribe(&[channel.as_str()]).await;
        let mut publisher = Publisher::connect(&stack.nats.url()).await;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (first_tx, first_rx) = oneshot::channel();
        let (last, last_rx) = oneshot::channel();
        let feed = tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let event = publisher.price_event(CONTROL_TOKEN, 100.0 + sent.len() as f64);
                publisher.event(&event).await;
                sent.push(event.nonce().as_str().to_owned());
            }
            sent
        });
        let reader = tokio::spawn(read_until_last(ws, first_tx, last_rx));
        tokio::time::timeout(LIMIT, first_rx)
            .await
            .expect("the control client gets its first event in time")
            .expect("the control reader runs");
        Control {
            stop,
            feed,
            last,
            reader,
        }
    }

    /// Stops the feed and asserts the client got every event, in order,
    /// each within [`LATENCY_BOUND`]; prints how many and the longest wait.
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let sent = self.feed.await.expect("the control feed ran");
        let last = sent.last().cloned().expect("the feed published");
        let _ = self.last.send(last);
        let received = self.reader.await.expect("the control reader ran");
        let nonces: Vec<&str> = received.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            nonces, sent,
            "the control client missed, repeated or reordered events"
        );
        let max_latency_ms = received.iter().map(|(_, l)| *l).fold(0.0, f64::max);
        assert!(
            max_latency_ms <= LATENCY_BOUND_MS,
            "the control client waited {max_latency_ms:.0} ms for an event (bound {LATENCY_BOUND:?})"
        );
        println!(
            "control client: {} events, each within {max_latency_ms:.1} ms",
            sent.len()
        );
    }
}

/// Reads the control client's frames, keeping (nonce, latency in ms) of
/// every control price update, until the last nonce published (sent on
/// `last` once the feed stops) has arrived, or nothing has for [`LIMIT`], or
/// the connection ends; `first` is told when the first one arrives.
async fn read_until_last(
    mut ws: Ws,
    first: oneshot::Sender<()>,
    mut last: oneshot::Receiver<String>,
) -> Vec<(String, f64)> {
    let mut first = Some(first);
    let mut received: Vec<(String, f64)> = Vec::new();
    let mut end: Option<String> = None;
    loop {
        tokio::select! {
            next = ws.try_next_text(LIMIT) => {
                let Ok(Some(text)) = next else { return received };
                let arrived = now_millis();
                let v: Value = serde_json::from_str(&text).expect("the server sends JSON");
                if v["type"] != "price_update" || v["tokenId"] != CONTROL_TOKEN {
                    continue;
                }
                let nonce = v["nonce"].as_str().expect("a nonce").to_owned();
                let latency = arrived - v["timestamp"].as_f64().expect("a timestamp");
                let done = end.as_deref() == Some(nonce.as_str());
                received.push((nonce, latency));
                if let Some(first) = first.take() {
                    let _ = first.send(());
                }
                if done {
                    return received;
                }
            }
            nonce = &mut last, if end.is_none() => {
                let Ok(nonce) = nonce else { return received };
                if received.iter().any(|(n, _)| *n == nonce) {
                    return received;
                }
                end = Some(nonce);
            }
        }
    }
}
