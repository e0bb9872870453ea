//! `odin-server`: Odin's WebSocket gateway.
//!
//! One event travels this path (each step its own module):
//! NATS → [`ingest`] (judged by [`event`]: validated, de-duplicated once;
//! then measured) → [`router`] (channel index, last price) → [`outbox`] (a
//! connection's bounded, conflating queue) → `writer` (one task per
//! connection, one flush per batch) → the socket. Client frames go the other way: `connection` reads them and
//! `session` decides what they mean. With a store of last prices
//! ([`last_prices`], JetStream), the router starts with every token's last
//! price instead of none.
//!
//! The binary is thin: it parses [`config::Cli`], binds a [`Server`] and runs
//! it until a signal. Tests do the same with port 0 and their own shutdown.
//! [`Server::bind`] is the start-up, top to bottom: the listeners, the
//! metrics and the router, the NATS clients on the ingest thread, the
//! stored prices loaded around the live subscription, the shared state;
//! [`Server::run`] starts ingest, the catch-up, the accept loop and the HTTP
//! endpoints.

pub mod auth;
pub mod compression;
pub mod config;
pub mod event;
pub mod health_check;
pub mod inflating;
pub mod ingest;
pub mod jwks;
pub mod keys;
pub mod last_prices;
pub mod lifecycle;
pub mod metrics;
pub mod outbox;
pub mod router;
mod token_table;
pub mod wire;

mod client_page;
mod connection;
pub mod descriptors;
mod expiry;
pub mod fairness;
mod http;
mod http_guard;
mod listener;
mod nats;
mod session;
mod shared;
mod socket;
mod stream;
pub mod tls;
mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use odin_protocol::DedupWindow;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

pub use config::ServerConfig;
pub use fairness::AddressLimits;
pub use http_guard::HttpLimits;
pub use lifecycle::Lifecycle;
pub use listener::WS_PATH;
pub use router::TokenLimits;

use crate::ingest::{Ingest, IngestThread};
use crate::last_prices::{CatchUp, StoreHealth};
use crate::metrics::Metrics;
use crate::nats::NatsClients;
use crate::router::Router;
use crate::shared::Shared;
use crate::tls::Tls;

/// A server whose sockets are bound, whose NATS clients are started and
/// whose router holds the stored last prices; call [`Server::run`] to serve.
pub struct Server {
    shared: Arc<Shared>,
    ws: TcpListener,
    http: TcpListener,
    /// The thread the NATS clients run on, and ingest once it starts.
    ingest_thread: IngestThread,
    /// The ingest loop, started by [`Server::run`].
    ingest: Ingest,
    /// The last-prices catch-up after reconnects, if there is a store.
    catch_up: Option<CatchUp>,
    /// Counts NATS connections made, for the last-prices catch-up.
    connections: watch::Receiver<u64>,
    /// Whether the last prices were loaded in full at start.
    loaded: bool,
}

impl Server {
    /// Binds both addresses and starts connecting to NATS. A NATS server that
    /// is not reachable yet is not an error: the server starts degraded
    /// (`/health` answers 503) and connects when NATS comes up.
    ///
    /// With [`ServerConfig::last_prices`] set, it also loads the stored last
    /// prices before it returns, so no client can subscribe before they are
    /// there; that takes at most the configured wait, after which it serves
    /// without them.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        let ws = bind_ws(config.ws_addr, config.reuse_port)
            .with_context(|| format!("cannot listen on --ws-addr {}", config.ws_addr))?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on --http-addr {}", config.http_addr))?;
        let tls = match config.tls.clone() {
            Some(files) => Some(Arc::new(
                Tls::load(files).context("cannot serve TLS (--tls-cert, --tls-key)")?,
            )),
            None => None,
        };
        let server_id = config
            .server_id
            .clone()
            .unwrap_or_else(|| format!("odin-{:08x}", rand::random::<u32>()));
        let descriptors = share_out_descriptors(&config);
        let metrics = Arc::new(Metrics::new());
        let router = Arc::new(
            Router::with_limits(metrics.clone(), config.token_limits)
                .with_compression(config.compression),
        );

        // The NATS clients are made on the ingest thread, so that their
        // connection tasks run beside ingest.
        let ingest_thread = IngestThread::spawn()?;
        let (connected, connections) = watch::channel(0);
        let first = nats::connect(
            config.nats_url.clone(),
            "--nats-url",
            server_id.clone(),
            config.nats_ping_interval,
            Some(connected),
        );
        let first = ingest_thread.run_on(first).await??;

        // The stored prices are read around the live subscription, so that
        // no price falls between the two ([`last_prices::Load`]), and are in
        // the router before the first client can be accepted.
        let subjects = &config.subjects;
        let mut window = DedupWindow::new(config.dedup_window, config.dedup_capacity);
        let load = last_prices::Load::open(&first, config.last_prices.as_ref(), subjects).await;
        let subscription = nats::subscribe(&first, subjects)
            .await
            .context("cannot subscribe to NATS")?;
        let stored = load.read(&mut window).await;
        let loaded = stored.is_complete();
        stored.apply(&router, &metrics);

        // After the load: its keys are in the window, so the second
        // connection's copies of stored prices are duplicates too.
        let (second, second_subscription) = match config.nats_second_url.clone() {
            Some(url) => {
                let name = format!("{server_id} (second)");
                let second = nats::connect(
                    url,
                    "--nats-second-url",
                    name,
                    config.nats_ping_interval,
                    None,
                );
                let second = ingest_thread.run_on(second).await??;
                let subscription = nats::subscribe(&second, subjects)
                    .await
                    .context("cannot subscribe on the second NATS connection")?;
                (Some(second), Some(subscription))
            }
            None => (None, None),
        };

        let ingest = Ingest {
            subscription,
            second: second_subscription,
            subjects: subjects.clone(),
            limits: config.event_limits,
            window,
            metrics: metrics.clone(),
            router: router.clone(),
        };
        let catch_up = config.last_prices.clone().map(|store| CatchUp {
            config: store,
            nats: first.clone(),
            subjects: subjects.clone(),
            router: router.clone(),
            metrics: metrics.clone(),
        });
        let store = config
            .last_prices
            .as_ref()
            .map(|_| StoreHealth::new(loaded));
        let shared = Arc::new(Shared::new(
            config,
            server_id,
            metrics,
            router,
            NatsClients { first, second },
            store,
            descriptors,
            tls,
        ));
        // The first JWKS load must work: a server that starts without its
        // keys would refuse every token signed with them.
        if let Some(jwks) = &shared.config.jwks {
            let count = jwks::load(&jwks.source, &shared.authenticator.jwks())
                .await
                .with_context(|| format!("JWKS {:?}", jwks.source))?;
            tracing::info!(source = ?jwks.source, keys = count, "JWKS loaded");
        }
        Ok(Server {
            shared,
            ws,
            http,
            ingest_thread,
            ingest,
            catch_up,
            connections,
            loaded,
        })
    }

    /// The bound WebSocket address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws.local_addr().expect("bound listener has an address")
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// This instance's id.
    pub fn server_id(&self) -> &str {
        &self.shared.server_id
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every
    /// client with `1001` and returns once they are gone or the drain time
    /// has passed.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Server {
            shared,
            ws,
            http,
            ingest_thread,
            ingest,
            catch_up,
            connections,
            loaded,
        } = self;
        let tracker = TaskTracker::new();
        ingest_thread.ingest(ingest);
        let catch_up = catch_up.map(|catch_up| {
            let shutdown = shared.shutdown.clone();
            let recoveries = match &shared.store {
                Some(store) => store.recoveries(),
                None => watch::Sender::new(0).subscribe(),
            };
            tokio::spawn(catch_up.after_reconnects(connections, recoveries, loaded, shutdown))
        });
        if let (Some(store), Some(config)) = (&shared.store, &shared.config.last_prices) {
            tokio::spawn(store.clone().watch(
                shared.nats.clone(),
                config.stream.clone(),
                shared.config.nats_ping_interval,
                shared.shutdown.clone(),
            ));
        }
        if let Some(jwks) = shared.config.jwks.clone() {
            tokio::spawn(jwks::keep_loading(
                jwks,
                shared.authenticator.jwks(),
                shared.shutdown.clone(),
            ));
        }
        let accept = tokio::spawn(listener::accept_loop(ws, shared.clone(), tracker.clone()));
        let http_shutdown = shared.shutdown.clone();
        let http_shared = shared.clone();
        if let Some(tls) = &shared.tls {
            tokio::spawn(tls::reload::watch(
                tls.clone(),
                shared.metrics.clone(),
                shared.shutdown.clone(),
            ));
        }
        let http = http_guard::GuardedListener::new(
            http,
            shared.descriptors.http,
            shared.metrics.clone(),
            shared.tls.as_ref().map(|tls| tls.acceptor().clone()),
        );
        let http_task = tokio::spawn(async move {
            axum::serve(http, http::routes(http_shared))
                .with_graceful_shutdown(http_shutdown.cancelled_owned())
                .await
        });
        tracing::info!(
            server_id = %shared.server_id,
            nats = %shared.config.nats_url,
            "serving"
        );

        shutdown.await;
        tracing::info!("shutting down: closing every client with 1001");
        shared.shutdown.cancel();
        tracker.close();
        let _ = accept.await;
        let drain = shared.config.drain_timeout;
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!(
                remaining = tracker.len(),
                "drain time of {drain:?} passed; dropping the remaining connections"
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), shared.nats.drain()).await;
        ingest_thread.stop().await;
        if let Some(catch_up) = catch_up {
            let _ = catch_up.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), http_task).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Shares the open-file limit out between the listeners, and logs how.
fn share_out_descriptors(config: &ServerConfig) -> descriptors::DescriptorPlan {
    let limit = config
        .max_open_files
        .unwrap_or_else(descriptors::open_file_limit);
    let plan = descriptors::DescriptorPlan::new(limit, config.http_limits);
    tracing::info!(
        open_files = plan.limit,
        websocket = plan.websocket,
        http = plan.http.max_connections,
        http_per_address = plan.http.max_per_address,
        reserved = descriptors::RESERVE,
        "file descriptors shared out"
    );
    plan
}

/// Binds the WebSocket listener, with `SO_REUSEPORT` when the port is shared
/// by several gateways. The backlog is large: a ramp of thousands of
/// connections a second must not see refused or retried SYNs.
fn bind_ws(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(4096)
}
