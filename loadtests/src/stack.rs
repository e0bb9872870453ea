//! What a run tests: an embedded stack (its own NATS, the server as a child
//! process of the built binary) or an already running server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use odin_harness::nats::NatsServer;
use odin_harness::server::{Endpoint, ServerProcess};
use odin_protocol::stats::StatsSnapshot;
use odin_server::auth::{AuthConfig, mint_token};

/// Where to point the load.
#[derive(Debug, Clone)]
pub enum Target {
    /// Start NATS and the server for this run, and stop them after.
    Embedded {
        /// Extra `odin-server` flags.
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

/// A target brought up and ready.
pub struct Stack {
    nats: Option<NatsServer>,
    server: Option<ServerProcess>,
    ws_url: String,
    http_addr: Option<SocketAddr>,
    nats_url: String,
    auth: AuthConfig,
}

impl Stack {
    /// Brings `target` up.
    pub async fn start(target: &Target, users: usize) -> anyhow::Result<Stack> {
        match target {
            Target::Embedded { server_args } => {
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
                    server: Some(server),
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

    /// The server's `/stats`, when reachable.
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
        self.server.as_ref().and_then(|s| s.pid())
    }

    /// What is under test, for the report.
    pub fn describe(&self) -> String {
        if self.server.is_some() {
            format!("embedded ({})", self.ws_url)
        } else {
            self.ws_url.clone()
        }
    }

    /// Stops what this run started: the server gracefully, then NATS.
    pub async fn shutdown(mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.signal("TERM");
            let _ = server.wait(Duration::from_secs(10)).await;
        }
        drop(self.nats.take());
    }
}
