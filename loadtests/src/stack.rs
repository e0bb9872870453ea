//! What a run tests: an embedded stack (its own NATS, and `odin-server` or
//! the bare forwarder as a child process of the built binary) or an already
//! running server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use odin_harness::nats::NatsServer;
use odin_harness::server::{Endpoint, ServerProcess, TEST_SECRET};
use odin_protocol::stats::StatsSnapshot;
use odin_server::auth::{AuthConfig, mint_token};
use serde::{Deserialize, Serialize};

pub mod forwarder;

use forwarder::ForwarderProcess;

/// Which gateway an embedded run starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// `odin-server`, the product.
    #[default]
    Odin,
    /// `odin-forwarder`, the bare forwarder: the fan-out benchmark's
    /// reference point (no auth, no de-dup, no `/stats`).
    Forwarder,
}

impl ServerKind {
    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            ServerKind::Odin => "odin-server",
            ServerKind::Forwarder => "odin-forwarder",
        }
    }
}

/// Where to point the load.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start NATS and the server for this run, and stop them after.
    Embedded {
        /// Which server.
        server: ServerKind,
        /// Extra flags for it.
        server_args: Vec<String>,
    },
    /// A running server.
    External {
        /// `ws://host:port/ws`.
        ws_url: String,
        /// Its HTTP address (for `/stats`), when reachable.
        http_addr: Option<SocketAddr>,
        /// The NATS the publisher should publish to.
        nats_url: String,
        /// The secret its tokens are signed with.
        jwt_secret: String,
    },
}

/// The server process of an embedded run.
enum Gateway {
    Odin(ServerProcess),
    Forwarder(ForwarderProcess),
}

/// A target brought up and ready.
pub struct Stack {
    nats: Option<NatsServer>,
    server: Option<Gateway>,
    ws_url: String,
    http_addr: Option<SocketAddr>,
    nats_url: String,
    auth: AuthConfig,
}

impl Stack {
    /// Brings `target` up.
    pub async fn start(target: &Target, users: usize) -> anyhow::Result<Stack> {
        match target {
            Target::Embedded {
                server: ServerKind::Forwarder,
                server_args,
            } => {
                let nats = NatsServer::start().await.context("cannot start NATS")?;
                // Ready when started: it listens only once subscribed.
                let forwarder = ForwarderProcess::start(&nats.url(), server_args)
                    .await
                    .context("cannot start odin-forwarder")?;
                Ok(Stack {
                    ws_url: forwarder.ws_url(),
                    http_addr: None,
                    nats_url: nats.url(),
                    // Tokens are minted as for odin-server (the users' cost
                    // stays the same) and ignored.
                    auth: AuthConfig::with_secret(TEST_SECRET),
                    nats: Some(nats),
                    server: Some(Gateway::Forwarder(forwarder)),
                })
            }
            Target::Embedded {
                server: ServerKind::Odin,
                server_args,
            } => {
                let nats = NatsServer::start().await.context("cannot start NATS")?;
                let mut args: Vec<String> =
                    vec!["--max-connections".into(), (users + 1000).to_string()];
                args.extend(server_args.iter().cloned());
                let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let server = ServerProcess::start(&nats.url(), &arg_refs)
                    .await
                    .context("cannot start odin-server")?;
                let endpoint: Endpoint = server.endpoint().clone();
                let stack = Stack {
                    ws_url: endpoint.ws_url(),
                    http_addr: Some(endpoint.http_addr),
                    nats_url: nats.url(),
                    auth: endpoint.auth.clone(),
                    nats: Some(nats),
                    server: Some(Gateway::Odin(server)),
                };
                stack.wait_ready().await?;
                Ok(stack)
            }
            Target::External {
                ws_url,
                http_addr,
                nats_url,
                jwt_secret,
            } => Ok(Stack {
                nats: None,
                server: None,
                ws_url: ws_url.clone(),
                http_addr: *http_addr,
                nats_url: nats_url.clone(),
                auth: AuthConfig::with_secret(jwt_secret),
            }),
        }
    }

    /// Waits until the server reports NATS connected.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(stats) = self.stats().await
                && stats.nats_connected
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("odin-server did not connect to NATS within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `ws://…/ws`.
    pub fn ws_url(&self) -> &str {
        &self.ws_url
    }

    /// The NATS URL for the publisher.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// A token minter for the users.
    pub fn token_source(&self) -> Arc<dyn Fn() -> String + Send + Sync> {
        let auth = self.auth.clone();
        Arc::new(move || mint_token(&auth, "load-user", Duration::from_secs(3600)))
    }

    /// The server's `/stats`, when reachable (never for the forwarder,
    /// which has none).
    pub async fn stats(&self) -> Option<StatsSnapshot> {
        let addr = self.http_addr?;
        odin_harness::http::get(addr, "/stats")
            .await
            .ok()?
            .json()
            .ok()
    }

    /// The server's process id (embedded runs).
    pub fn server_pid(&self) -> Option<u32> {
        match self.server.as_ref()? {
            Gateway::Odin(s) => s.pid(),
            Gateway::Forwarder(f) => f.pid(),
        }
    }

    /// Which server an embedded run started.
    pub fn server_kind(&self) -> Option<ServerKind> {
        match self.server.as_ref()? {
            Gateway::Odin(_) => Some(ServerKind::Odin),
            Gateway::Forwarder(_) => Some(ServerKind::Forwarder),
        }
    }

    /// What is under test, for the report.
    pub fn describe(&self) -> String {
        match self.server_kind() {
            Some(ServerKind::Odin) => format!("embedded odin-server ({})", self.ws_url),
            Some(ServerKind::Forwarder) => format!(
                "embedded odin-forwarder, the bare forwarder ({})",
                self.ws_url
            ),
            None => self.ws_url.clone(),
        }
    }

    /// Stops what this run started: the server gracefully, then NATS.
    pub async fn shutdown(mut self) {
        match self.server.take() {
            Some(Gateway::Odin(mut server)) => {
                let _ = server.signal("TERM");
                let _ = server.wait(Duration::from_secs(10)).await;
            }
            Some(Gateway::Forwarder(mut forwarder)) => {
                let _ = forwarder.signal("TERM");
                if let Ok(Some(code)) = forwarder.wait(Duration::from_secs(10)).await
                    && code != 0
                {
                    eprintln!(
                        "odin-load: odin-forwarder exited with {code}; its log:\n{}",
                        forwarder.logs().join("\n")
                    );
                }
            }
            None => {}
        }
        drop(self.nats.take());
    }
}
