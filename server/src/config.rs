//! Settings of `odin-server`: the library's [`ServerConfig`] and the command
//! line that fills it (every setting a flag and an `ODIN_*` variable; flags
//! win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use odin_protocol::Subjects;

use crate::auth::AuthConfig;
pub use crate::event::EventLimits;
use crate::fairness::{AddressLimitArgs, AddressLimits};
use crate::http_guard::HttpLimits;
use crate::jwks::JwksConfig;
use crate::last_prices::LastPricesConfig;
use crate::lifecycle::{Lifecycle, LifecycleArgs};
use crate::router::TokenLimits;
use crate::tls::TlsFiles;

mod check;
mod jwt;

pub use check::ConfigError;
use check::positive_duration;
pub use jwt::{JwtArgs, TokenArgs};

/// Everything the server needs to run; [`Default`] gives the documented
/// defaults with a development secret, for tests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the WebSocket endpoint `/ws` listens.
    pub ws_addr: SocketAddr,
    /// Bind `ws_addr` with `SO_REUSEPORT`, so several gateways on one host
    /// share one WebSocket port and the kernel spreads new connections over
    /// them (one process holds only as many sockets as its file limit).
    pub reuse_port: bool,
    /// Where `/health`, `/stats`, `/metrics` and the client page listen.
    pub http_addr: SocketAddr,
    /// The NATS server(s) to ingest from (comma-separated URLs allowed).
    pub nats_url: String,
    /// A second NATS connection to ingest from, to other servers of the same
    /// cluster: every event is taken from whichever connection brings it
    /// first (the second copy is a duplicate by nonce), so a gateway whose
    /// NATS node is lost misses nothing while it reconnects.
    pub nats_second_url: Option<String>,
    /// How often each NATS client pings its server when it hears nothing:
    /// a connection whose server stops answering (a cut network, not a
    /// closed socket) is given up after three unanswered pings, and only
    /// then does `/health` say `degraded`. The same period paces the
    /// last-prices store's reachability check.
    pub nats_ping_interval: Duration,
    /// Subject layout under the configured prefix.
    pub subjects: Subjects,
    /// How tokens are checked.
    pub auth: AuthConfig,
    /// Where JWKS keys come from, if anywhere (checked beside `auth`'s keys).
    pub jwks: Option<JwksConfig>,
    /// Upgrades beyond this many open connections get `503`.
    pub max_connections: usize,
    /// How often each connection gets a `heartbeat` and a WebSocket ping.
    pub heartbeat_interval: Duration,
    /// Bound on a connection's pending frames, in bytes.
    pub max_queue_bytes: usize,
    /// A connection with more than this many bytes pending is "behind":
    /// its price and volume updates are conflated from then on.
    pub conflate_above_bytes: usize,
    /// A socket that accepts nothing for this long is a slow consumer.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to close.
    pub drain_timeout: Duration,
    /// How long a client has to finish the WebSocket handshake.
    pub handshake_timeout: Duration,
    /// Channels one connection may hold, counted across requests.
    pub max_channels: usize,
    /// Client messages per second a connection may send (sustained).
    pub rate_limit_per_second: u32,
    /// Client messages a connection may send in a burst.
    pub rate_limit_burst: u32,
    /// Largest client message payload accepted (exactly this size is fine).
    pub max_message_bytes: usize,
    /// How long an ingested nonce is remembered for de-duplication.
    pub dedup_window: Duration,
    /// How many ingested nonces are remembered at most.
    pub dedup_capacity: usize,
    /// This instance's id in messages and `/stats`; random when `None`.
    pub server_id: Option<String>,
    /// The JetStream store of every token's last price, loaded at start so
    /// snapshots are right from the first client; `None`: no store, the
    /// snapshots start empty (see [`crate::last_prices`]).
    pub last_prices: Option<LastPricesConfig>,
    /// The size and the timestamp window a live event must respect.
    pub event_limits: EventLimits,
    /// The HTTP listener's connection caps and socket deadlines.
    pub http_limits: HttpLimits,
    /// WebSocket upgrades under way at once at most (accepted sockets that
    /// have not finished the handshake); more are dropped at accept.
    pub max_pending_upgrades: usize,
    /// The open-file limit to share out between the listeners
    /// ([`crate::descriptors`]); `None`: the process's own, raised to its
    /// hard limit.
    pub max_open_files: Option<u64>,
    /// The WebSocket port's budgets per source address.
    pub address_limits: AddressLimits,
    /// How many priced tokens, and bytes of their prices, the table holds.
    pub token_limits: TokenLimits,
    /// Connection lifetime and the `reconnect` advisory's delay window.
    pub lifecycle: Lifecycle,
    /// Serve TLS (`wss://`, `https://`) from these files; `None`: plain.
    pub tls: Option<TlsFiles>,
    /// permessage-deflate (RFC 7692): `Some(min_bytes)` accepts a client's
    /// offer, and sends it every shared event of at least `min_bytes`
    /// compressed (once per event, the same bytes for every such client);
    /// `None`: offers are declined and every frame goes plain.
    pub compression: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            ws_addr: ([0, 0, 0, 0], 8080).into(),
            reuse_port: false,
            http_addr: ([0, 0, 0, 0], 3001).into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_second_url: None,
            nats_ping_interval: Duration::from_secs(5),
            subjects: Subjects::default(),
            auth: AuthConfig::development(),
            jwks: None,
            max_connections: 50_000,
            heartbeat_interval: Duration::from_secs(30),
            max_queue_bytes: 1 << 20,
            conflate_above_bytes: 64 << 10,
            write_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_channels: 100,
            rate_limit_per_second: 20,
            rate_limit_burst: 40,
            max_message_bytes: 4096,
            dedup_window: Duration::from_secs(300),
            dedup_capacity: 200_000,
            server_id: None,
            last_prices: None,
            event_limits: EventLimits::default(),
            http_limits: HttpLimits::default(),
            max_pending_upgrades: 4096,
            max_open_files: None,
            address_limits: AddressLimits::default(),
            token_limits: TokenLimits::default(),
            lifecycle: Lifecycle::default(),
            tls: None,
            compression: None,
        }
    }
}

/// The `odin-server` command line.
#[derive(Debug, Parser)]
#[command(
    name = "odin-server",
    version,
    about = "Odin's WebSocket gateway: pushes token prices from NATS to browsers.",
    long_about = None,
    after_help = "Every setting is also read from its ODIN_* environment variable; flags win."
)]
pub struct Cli {
    /// Run the server (default) or a utility.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Utilities beside the server itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a signed JWT for development and tests.
    Token(Box<TokenArgs>),
    /// Exit 0 when the server's `/health` (or `--url`) answers 200, else
    /// non-zero with one line saying why: the health check of a container
    /// whose image has no curl.
    Health(HealthArgs),
}

/// Flags of `odin-server health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// What to ask (`http://host:port/path`); default: this server's own
    /// `/health` at `--http-addr` (`ODIN_HTTP_ADDR`), on loopback when that
    /// is 0.0.0.0.
    #[arg(long)]
    pub url: Option<String>,
    /// How long the whole check may take (e.g. `3s`).
    #[arg(long, default_value = "3s", value_parser = positive_duration)]
    pub timeout: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Flags of the server itself.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// WebSocket address (`/ws`).
    #[arg(long, env = "ODIN_WS_ADDR", default_value = "0.0.0.0:8080")]
    pub ws_addr: SocketAddr,
    /// Share the WebSocket port with other gateways on this host
    /// (`SO_REUSEPORT`): start several with the same `--ws-addr` and their
    /// own `--http-addr`, and the kernel spreads connections over them.
    #[arg(long, env = "ODIN_REUSE_PORT")]
    pub reuse_port: bool,
    /// HTTP address (`/health`, `/stats`, `/metrics`, the client page).
    #[arg(long, env = "ODIN_HTTP_ADDR", default_value = "0.0.0.0:3001")]
    pub http_addr: SocketAddr,
    /// NATS URL(s), comma-separated.
    #[arg(long, env = "ODIN_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// A second NATS connection (URLs, comma-separated) to other servers of
    /// the same cluster, subscribed to the same subjects: each event is
    /// taken from whichever connection brings it first, so losing one NATS
    /// node loses no event. Every event then arrives twice (the second copy
    /// counts as a dropped duplicate).
    #[arg(long, env = "ODIN_NATS_SECOND_URL")]
    pub nats_second_url: Option<String>,
    /// How often each NATS connection is pinged when quiet (e.g. `5s`): a
    /// NATS server that stops answering (a network cut) is noticed after
    /// three pings, and `/health` then says `degraded`. Also paces the
    /// last-prices store's reachability check.
    #[arg(long, env = "ODIN_NATS_PING_INTERVAL", default_value = "5s", value_parser = positive_duration)]
    pub nats_ping_interval: Duration,
    /// JWT settings.
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Prefix of every NATS subject.
    #[arg(long, env = "ODIN_SUBJECT_PREFIX", default_value = "odin")]
    pub subject_prefix: String,
    /// Open connections beyond which upgrades get 503.
    #[arg(long, env = "ODIN_MAX_CONNECTIONS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Interval of `heartbeat` messages and WebSocket pings, in milliseconds.
    #[arg(long, env = "ODIN_HEARTBEAT_INTERVAL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub heartbeat_interval_ms: u64,
    /// Bound on a connection's pending frames, in bytes.
    #[arg(long, env = "ODIN_MAX_QUEUE_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_queue_bytes: u64,
    /// Pending bytes beyond which a connection counts as behind and its price
    /// and volume updates are conflated.
    #[arg(long, env = "ODIN_CONFLATE_ABOVE_BYTES", default_value_t = 64 << 10)]
    pub conflate_above_bytes: u64,
    /// How long shutdown waits for clients to close (e.g. `5s`).
    #[arg(long, env = "ODIN_DRAIN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// A socket that accepts nothing for this long is closed as a slow consumer.
    #[arg(long, env = "ODIN_WRITE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub write_timeout: Duration,
    /// Channels one connection may hold.
    #[arg(long, env = "ODIN_MAX_CHANNELS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_channels: u64,
    /// Client messages per second per connection (sustained).
    #[arg(long, env = "ODIN_RATE_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
    /// Client messages per connection in a burst.
    #[arg(long, env = "ODIN_RATE_BURST", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Largest client message payload, in bytes.
    #[arg(long, env = "ODIN_MAX_MESSAGE_BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(64..=(1 << 20)))]
    pub max_message_bytes: u64,
    /// How long an ingested nonce is remembered (e.g. `5m`).
    #[arg(long, env = "ODIN_DEDUP_WINDOW", default_value = "5m", value_parser = positive_duration)]
    pub dedup_window: Duration,
    /// How many ingested nonces are remembered at most.
    #[arg(long, env = "ODIN_DEDUP_CAPACITY", default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub dedup_capacity: u64,
    /// This instance's id (random when unset).
    #[arg(long, env = "ODIN_SERVER_ID")]
    pub server_id: Option<String>,
    /// Log format on stderr.
    #[arg(long, env = "ODIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Keep the last price of every token in this JetStream stream (created
    /// when missing) and load it at start, so a starting gateway has every
    /// snapshot at once. Unset or empty: off.
    #[arg(long, env = "ODIN_LAST_PRICES_STREAM")]
    pub last_prices_stream: Option<String>,
    /// Replicas of the last-prices stream when the gateway creates it (3 on
    /// a 3-node JetStream cluster).
    #[arg(long, env = "ODIN_LAST_PRICES_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub last_prices_replicas: u64,
    /// How long start-up waits for JetStream to load the last prices before
    /// it serves without them (e.g. `10s`).
    #[arg(long, env = "ODIN_LAST_PRICES_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub last_prices_timeout: Duration,
    /// A live event whose `timestamp` is older than this is invalid (e.g.
    /// `1h`): it is not news, and its latency would poison the figures.
    #[arg(long, env = "ODIN_MAX_EVENT_AGE", default_value = "1h", value_parser = positive_duration)]
    pub max_event_age: Duration,
    /// A live event dated further ahead of this gateway's clock than this is
    /// invalid (e.g. `1m`): the publisher's clock is wrong.
    #[arg(long, env = "ODIN_MAX_CLOCK_SKEW", default_value = "1m", value_parser = humantime::parse_duration)]
    pub max_clock_skew: Duration,
    /// A live event larger than this many bytes is invalid (NATS's own limit
    /// is 1 MiB by default; a batch of 1,000 prices is about 70 KiB).
    #[arg(long, env = "ODIN_MAX_EVENT_BYTES", default_value_t = 256 << 10, value_parser = clap::value_parser!(u64).range(256..))]
    pub max_event_bytes: u64,
    /// Open HTTP connections (`/health`, `/stats`, `/metrics`, the page) at
    /// most, apart from the WebSocket budget; more get 503.
    #[arg(long, env = "ODIN_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_max_connections: u64,
    /// Open HTTP connections from one source address at most; more get 503.
    #[arg(long, env = "ODIN_HTTP_MAX_PER_ADDRESS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_max_per_address: u64,
    /// An HTTP connection whose client sends nothing for this long (in a
    /// request or between requests) is closed (e.g. `10s`).
    #[arg(long, env = "ODIN_HTTP_IDLE_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_idle_timeout: Duration,
    /// An HTTP connection is closed this long after it was accepted,
    /// whatever it does (e.g. `60s`).
    #[arg(long, env = "ODIN_HTTP_MAX_LIFETIME", default_value = "60s", value_parser = positive_duration)]
    pub http_max_lifetime: Duration,
    /// WebSocket upgrades under way at once at most: sockets accepted that
    /// have not finished the handshake (each has 10 s to); more are dropped
    /// at accept.
    #[arg(long, env = "ODIN_MAX_PENDING_UPGRADES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending_upgrades: u64,
    /// Share out this many open files between the listeners: 64 kept for
    /// NATS and the process, at most an eighth of the rest for HTTP, the
    /// rest for WebSocket sockets (default: the process's limit, raised to
    /// its hard limit).
    #[arg(long, env = "ODIN_MAX_OPEN_FILES", value_parser = clap::value_parser!(u64).range(16..))]
    pub max_open_files: Option<u64>,
    /// The WebSocket port's budgets per source address.
    #[command(flatten)]
    pub address_limits: AddressLimitArgs,
    /// Tokens whose last price is held at most; beyond, the least recently
    /// priced ones nobody is subscribed to are dropped.
    #[arg(long, env = "ODIN_MAX_TOKENS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: u64,
    /// Bytes of held last prices at most, likewise.
    #[arg(long, env = "ODIN_MAX_PRICE_BYTES", default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_price_bytes: u64,
    /// Connection lifetime and the `reconnect` advisory.
    #[command(flatten)]
    pub lifecycle: LifecycleArgs,
    /// Serve TLS on both ports (`wss://`, `https://`) with this certificate
    /// chain (PEM, leaf first). Read again on SIGHUP and when the file
    /// changes; new connections get the new one.
    #[arg(long, env = "ODIN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM), with `--tls-cert`.
    #[arg(long, env = "ODIN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it
    /// (browsers do): each event is compressed once and the same bytes go
    /// to every client that accepted; others get plain frames.
    #[arg(long, env = "ODIN_COMPRESSION")]
    pub compression: bool,
    /// With `--compression`, events shorter than this many bytes go
    /// uncompressed (deflate gains little on them).
    #[arg(long, env = "ODIN_COMPRESSION_MIN_BYTES", default_value_t = 64)]
    pub compression_min_bytes: u64,
}

impl ServerArgs {
    /// Turns the flags into a [`ServerConfig`], or one line saying what is wrong.
    pub fn into_config(self) -> Result<ServerConfig, ConfigError> {
        let subjects = Subjects::new(&self.subject_prefix)?;
        if let Some(id) = &self.server_id {
            odin_protocol::ids::validate_token_id(id).map_err(|_| ConfigError::ServerId)?;
        }
        let last_prices = match self.last_prices_stream.filter(|s| !s.is_empty()) {
            Some(stream) => {
                odin_protocol::ids::validate_token_id(&stream)
                    .map_err(|_| ConfigError::LastPricesStream)?;
                Some(LastPricesConfig {
                    stream,
                    replicas: usize::try_from(self.last_prices_replicas).unwrap_or(1),
                    load_timeout: self.last_prices_timeout,
                })
            }
            None => None,
        };
        Ok(ServerConfig {
            ws_addr: self.ws_addr,
            reuse_port: self.reuse_port,
            http_addr: self.http_addr,
            nats_url: self.nats_url,
            nats_second_url: self.nats_second_url.filter(|u| !u.trim().is_empty()),
            nats_ping_interval: self.nats_ping_interval,
            subjects,
            auth: self.jwt.auth_config()?,
            jwks: self.jwt.jwks_config(),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            max_queue_bytes: usize::try_from(self.max_queue_bytes).unwrap_or(usize::MAX),
            conflate_above_bytes: usize::try_from(self.conflate_above_bytes).unwrap_or(usize::MAX),
            write_timeout: self.write_timeout,
            drain_timeout: self.drain_timeout,
            handshake_timeout: Duration::from_secs(10),
            max_channels: usize::try_from(self.max_channels).unwrap_or(usize::MAX),
            rate_limit_per_second: self.rate_limit,
            rate_limit_burst: self.rate_burst,
            max_message_bytes: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
            dedup_window: self.dedup_window,
            dedup_capacity: usize::try_from(self.dedup_capacity).unwrap_or(usize::MAX),
            server_id: self.server_id,
            event_limits: EventLimits {
                max_bytes: usize::try_from(self.max_event_bytes).unwrap_or(usize::MAX),
                max_age: self.max_event_age,
                max_ahead: self.max_clock_skew,
            },
            http_limits: HttpLimits {
                max_connections: usize::try_from(self.http_max_connections).unwrap_or(usize::MAX),
                max_per_address: usize::try_from(self.http_max_per_address).unwrap_or(usize::MAX),
                idle_timeout: self.http_idle_timeout,
                max_lifetime: self.http_max_lifetime,
            },
            max_pending_upgrades: usize::try_from(self.max_pending_upgrades).unwrap_or(usize::MAX),
            max_open_files: self.max_open_files,
            address_limits: self.address_limits.limits(),
            token_limits: TokenLimits {
                max_tokens: usize::try_from(self.max_tokens).unwrap_or(usize::MAX),
                max_price_bytes: usize::try_from(self.max_price_bytes).unwrap_or(usize::MAX),
            },
            last_prices,
            lifecycle: self.lifecycle.lifecycle(),
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                _ => None,
            },
            compression: self
                .compression
                .then(|| usize::try_from(self.compression_min_bytes).unwrap_or(usize::MAX)),
        })
    }
}

#[cfg(test)]
mod tests;
