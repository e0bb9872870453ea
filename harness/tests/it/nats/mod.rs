//! The NATS fixture against the real `nats-server`: start, round trip,
//! stop/restart on the same port, pause/resume, JetStream, clean-up, a
//! three-node cluster, and the container backend (skipped, with the reason
//! printed, where Docker is not reachable).

mod cluster;
mod container;
mod single;

use std::future::Future;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use odin_harness::nats::{BackendChoice, NatsOptions};
use odin_harness::wait::LIMIT;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Options for the binary backend, whatever the environment says.
fn binary() -> NatsOptions {
    NatsOptions {
        backend: Some(BackendChoice::Binary),
        ..NatsOptions::default()
    }
}

/// Awaits `fut` within [`LIMIT`], panicking with `what` otherwise.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {LIMIT:?}: {what}"))
}

/// A client that reconnects quickly and reports its connection events.
async fn watched_client(
    urls: Vec<String>,
    ordered: bool,
) -> (Client, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut opts = ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        });
    if ordered {
        opts = opts.retain_servers_order();
    }
    let client = within("connect", opts.connect(urls))
        .await
        .expect("the client connects");
    (client, rx)
}

/// Waits for a connection event matching `want`.
async fn wait_event(
    events: &mut mpsc::UnboundedReceiver<Event>,
    want: fn(&Event) -> bool,
    what: &str,
) {
    within(what, async {
        while let Some(event) = events.recv().await {
            if want(&event) {
                return;
            }
        }
        panic!("event stream ended before {what}");
    })
    .await;
}

/// A round trip through the server: `client` receives its own message on a
/// fresh subject. The server handles a connection's commands in order, so
/// once it returns, everything the client sent before (its subscriptions
/// re-sent after a reconnect included) has been processed. (`flush` only
/// writes the socket; it does not wait for the server.)
async fn round_trip(client: &Client) {
    let subject = client.new_inbox();
    let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
    client
        .publish(subject, Bytes::from_static(b"ping"))
        .await
        .expect("publish");
    sub.next().await.expect("the echo arrives");
}

/// Publishes on `publisher` until `subscriber`'s subscription gets one of
/// the messages: interest crosses cluster routes asynchronously, so the
/// first publishes may find no interest yet. Each round waits on the message
/// itself, not on a timer.
async fn deliver_eventually(publisher: &Client, subscriber: &Client, subject: &str) {
    let mut sub = within("subscribe", subscriber.subscribe(subject.to_owned()))
        .await
        .expect("subscribe");
    within("round trip", round_trip(subscriber)).await;
    within(&format!("a message on {subject} crossing over"), async {
        for round in 0u32.. {
            publisher
                .publish(subject.to_owned(), Bytes::from(round.to_string()))
                .await
                .expect("publish");
            publisher.flush().await.expect("flush");
            if let Ok(Some(_)) = timeout(Duration::from_millis(100), sub.next()).await {
                return;
            }
        }
    })
    .await;
}
