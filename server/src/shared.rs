//! State every part of a running server shares: configuration, counters, the
//! routing table, the NATS client, and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use odin_protocol::ids::NonceSource;
use odin_protocol::message::{ErrorCode, ErrorMessage};
use odin_protocol::time::now_millis;
use odin_protocol::{Nonce, ServerMessage};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::ServerConfig;
use crate::descriptors::DescriptorPlan;
use crate::fairness::AddressFairness;
use crate::last_prices::StoreHealth;
use crate::metrics::Metrics;
use crate::nats::NatsClients;
use crate::outbox::Frame;
use crate::router::{ConnId, Router};
use crate::tls::Tls;

/// Shared by the listener, ingest, HTTP endpoints and every connection.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) server_id: String,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) router: Arc<Router>,
    pub(crate) authenticator: Authenticator,
    pub(crate) nats: async_nats::Client,
    /// The second NATS connection (`--nats-second-url`), if any: events
    /// still flow while either connection is up.
    pub(crate) nats_second: Option<async_nats::Client>,
    /// Whether the last-prices store answers, when there is one.
    pub(crate) store: Option<Arc<StoreHealth>>,
    /// Cancelled when the server starts shutting down.
    pub(crate) shutdown: CancellationToken,
    /// How the open-file limit is shared out between the listeners.
    pub(crate) descriptors: DescriptorPlan,
    /// The WebSocket port's budgets per source address.
    pub(crate) fairness: AddressFairness,
    /// The certificate both ports serve, with `--tls-cert`/`--tls-key`.
    pub(crate) tls: Option<Arc<Tls>>,
    nonces: NonceSource,
    next_conn: AtomicU64,
    /// Connections admitted and not yet finished (the `--max-connections` count).
    admitted: AtomicUsize,
    /// The clock of every connection's rate limiter, made once: making one
    /// probes the CPU (`cpuid`), which traps to the hypervisor on a VM and
    /// cost more than the rest of a connection's set-up.
    pub(crate) rate_clock: governor::clock::QuantaClock,
    /// The budget of log lines about refused clients (failed
    /// authentications, protocol violations): at most 10 a second after a
    /// burst of 20, so a flood of bad clients cannot flood the log.
    refusal_log: governor::DefaultDirectRateLimiter,
}

impl Shared {
    // Each argument is one part `Server::bind` made, in the order it made them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: ServerConfig,
        server_id: String,
        metrics: Arc<Metrics>,
        router: Arc<Router>,
        nats: NatsClients,
        store: Option<Arc<StoreHealth>>,
        descriptors: DescriptorPlan,
        tls: Option<Arc<Tls>>,
    ) -> Self {
        Self {
            authenticator: Authenticator::new(&config.auth),
            fairness: AddressFairness::new(config.address_limits),
            router,
            metrics,
            config,
            server_id,
            nats: nats.first,
            nats_second: nats.second,
            store,
            shutdown: CancellationToken::new(),
            descriptors,
            tls,
            nonces: NonceSource::random(),
            next_conn: AtomicU64::new(1),
            admitted: AtomicUsize::new(0),
            refusal_log: governor::RateLimiter::direct(
                governor::Quota::per_second(std::num::NonZeroU32::new(10).expect("non-zero"))
                    .allow_burst(std::num::NonZeroU32::new(20).expect("non-zero")),
            ),
            rate_clock: governor::clock::QuantaClock::default(),
        }
    }

    /// Whether a line about a refused client may be logged now (see
    /// `refusal_log`).
    pub(crate) fn may_log_refusal(&self) -> bool {
        self.refusal_log.check().is_ok()
    }

    pub(crate) fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh nonce for a message the server itself writes.
    pub(crate) fn nonce(&self) -> Nonce {
        self.nonces.next()
    }

    /// Serialises a server-made message into a frame; `build` gets the
    /// timestamp and nonce every message carries.
    pub(crate) fn frame(&self, build: impl FnOnce(f64, Nonce) -> ServerMessage) -> Frame {
        Frame::plain(build(now_millis(), self.nonce()).to_json())
    }

    /// An `error` frame; `channel` names the channel it is about, verbatim.
    pub(crate) fn error_frame(
        &self,
        code: ErrorCode,
        message: String,
        id: Option<String>,
        channel: Option<String>,
    ) -> Frame {
        self.frame(|timestamp, nonce| {
            ServerMessage::Error(ErrorMessage {
                code,
                message,
                id,
                channel,
                timestamp,
                nonce,
            })
        })
    }

    /// Whether live events can flow: either NATS connection is up.
    pub(crate) fn nats_connected(&self) -> bool {
        let (first, second) = self.nats_connections();
        first || second == Some(true)
    }

    /// Whether the first NATS connection is up, and the second if there is
    /// one.
    pub(crate) fn nats_connections(&self) -> (bool, Option<bool>) {
        let up = |c: &async_nats::Client| {
            c.connection_state() == async_nats::connection::State::Connected
        };
        (up(&self.nats), self.nats_second.as_ref().map(up))
    }

    /// Connections admitted and not yet finished.
    pub(crate) fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// Takes one connection slot, or `None` when the server is full.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<AdmissionGuard> {
        let max = self.config.max_connections;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| AdmissionGuard {
                shared: self.clone(),
            })
    }
}

/// Holds one connection slot; gives it back on drop.
pub(crate) struct AdmissionGuard {
    shared: Arc<Shared>,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        self.shared.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}
