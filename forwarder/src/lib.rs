//! The bare forwarder (`odin-forwarder`): the reference point of the fan-out
//! benchmark (issue #8), which asks odin-server's CPU per delivery to be
//! within 15 % of what "a minimal forwarder (no auth, no de-dup, each frame
//! built once, queued frames written with one syscall)" needs on the same
//! run. It is a benchmark reference, not a product, but it speaks enough of
//! `PROTOCOL.md` for the load users to run against it with zero loss.
//!
//! One event's path, a module each:
//! NATS → `ingest` (the subject names the channel; the text frame is
//! built once) → `router` (channel → queues) → `queue` (a connection's
//! bounded queue of shared frames) → `writer` (everything queued in one
//! `writev`) → the socket. The other way: `handshake` (the HTTP upgrade),
//! `frame` (the WebSocket codec, by hand), `session` (what a client's message
//! means), `connection` (one connection's life).
//!
//! The `odin-forwarder` binary (`src/bin/odin-forwarder.rs`) parses
//! [`Config`], binds and serves. The load tool (`odin-loadtests`) starts it
//! as a child process (`odin_loadtests::stack::forwarder`) and waits for its
//! readiness line ([`LISTENING`]); nothing here depends on the load tool, on
//! Goose or on `odin-server`.
//!
//! Left out on purpose: authentication, de-duplication, snapshots, event
//! validation, rate limits, conflation, pong deadlines, write timeouts, a
//! connection limit, `/health` and `/stats`. A connection whose queue
//! outgrows its bound is dropped; that is its whole slow-consumer policy.

pub mod config;

mod connection;
mod frame;
mod handshake;
mod ingest;
mod queue;
mod router;
mod session;
mod shared;
mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use odin_protocol::Subjects;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use handshake::WS_PATH;

use shared::Shared;

/// The start of the line the binary prints on stdout once it serves:
/// `odin-forwarder listening on ws://<addr>/ws`.
pub const LISTENING: &str = "odin-forwarder listening on";

/// A forwarder subscribed to NATS and bound; [`Forwarder::run`] serves.
pub struct Forwarder {
    shared: Arc<Shared>,
    listener: TcpListener,
    nats: async_nats::Client,
    subscription: async_nats::Subscriber,
    subjects: Subjects,
    drain_timeout: Duration,
}

impl Forwarder {
    /// Connects to NATS, subscribes to every event subject and flushes (the
    /// broker has the subscription when this returns), then binds the
    /// WebSocket address: a client that can connect misses no event
    /// published after it is subscribed.
    pub async fn bind(config: &Config) -> anyhow::Result<Forwarder> {
        let nats = async_nats::ConnectOptions::new()
            .name("odin-forwarder")
            .connect(config.nats_url.as_str())
            .await
            .with_context(|| format!("cannot connect to NATS at --nats-url {}", config.nats_url))?;
        let subjects = config.subject_prefix.clone();
        let subscription = nats
            .subscribe(subjects.all())
            .await
            .context("cannot subscribe to NATS")?;
        nats.flush()
            .await
            .context("cannot flush the NATS subscription")?;
        let listener = bind_ws(config.ws_addr)
            .with_context(|| format!("cannot listen on --ws-addr {}", config.ws_addr))?;
        Ok(Forwarder {
            shared: Arc::new(Shared::new(config)),
            listener,
            nats,
            subscription,
            subjects,
            drain_timeout: config.drain_timeout,
        })
    }

    /// The bound WebSocket address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// `ws://<addr>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.ws_addr(), handshake::WS_PATH)
    }

    /// Serves until `shutdown` completes, then closes every client with
    /// `1001` and returns once they are gone or the drain time has passed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Forwarder {
            shared,
            listener,
            nats,
            subscription,
            subjects,
            drain_timeout,
        } = self;
        let ingest = tokio::spawn(ingest::run(subscription, subjects, shared.clone()));
        let tracker = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(connection::serve(stream, shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        tracing::info!("shutting down: closing every client with 1001");
        shared.shutdown.cancel();
        tracker.close();
        if tokio::time::timeout(drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = tracker.len(),
                "drain time of {drain_timeout:?} passed; dropping the remaining connections"
            );
        }
        ingest.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), nats.drain()).await;
        tracing::info!(
            events = shared.events.load(Ordering::Relaxed),
            deliveries = shared.deliveries.load(Ordering::Relaxed),
            overflows = shared.overflows.load(Ordering::Relaxed),
            "stopped"
        );
        Ok(())
    }
}

/// Binds the WebSocket listener with a large backlog: a ramp of thousands of
/// connections a second must not see refused or retried SYNs.
fn bind_ws(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
