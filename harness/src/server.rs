//! The server under test, two ways: in-process on free ports (fast, for most
//! tests) and as a child process of the built `odin-server` binary (for fault
//! tests that kill it, signal it, or restart it on the same ports).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use odin_protocol::stats::StatsSnapshot;
use odin_server::auth::{AuthConfig, mint_token};
use odin_server::{AddressLimits, Server, ServerConfig};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::child::{ChildProcess, Output};
use crate::http::{self, HttpResponse};
use crate::tls::ClientTls;

/// How long a starting `odin-server` may take to say it listens (it loads
/// the last prices first, when configured to).
const READY_LIMIT: Duration = Duration::from_secs(20);

/// The secret test servers sign and check tokens with.
pub const TEST_SECRET: &str = "odin-harness-test-secret-0123456789abcdef";

/// A test configuration: loopback, port 0 for both listeners, the test
/// secret, and `nats_url`; everything else at the documented defaults.
pub fn test_config(nats_url: &str) -> ServerConfig {
    ServerConfig {
        ws_addr: ([127, 0, 0, 1], 0).into(),
        http_addr: ([127, 0, 0, 1], 0).into(),
        nats_url: nats_url.to_owned(),
        auth: AuthConfig::with_secret(TEST_SECRET),
        // Every test client connects from 127.0.0.1; the fairness tests
        // set the budgets they test.
        address_limits: AddressLimits::OFF,
        ..ServerConfig::default()
    }
}

/// Addresses and credentials of a running server, whichever way it runs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The WebSocket listener.
    pub ws_addr: SocketAddr,
    /// The HTTP listener.
    pub http_addr: SocketAddr,
    /// How its tokens are signed.
    pub auth: AuthConfig,
    /// Set when the server speaks TLS: what its clients trust.
    pub tls: Option<ClientTls>,
}

impl Endpoint {
    /// `ws://<addr>/ws`, or `wss://localhost:<port>/ws` with TLS (the test
    /// certificates name `localhost`).
    pub fn ws_url(&self) -> String {
        match self.tls {
            None => format!("ws://{}{}", self.ws_addr, odin_server::WS_PATH),
            Some(_) => format!(
                "wss://localhost:{}{}",
                self.ws_addr.port(),
                odin_server::WS_PATH
            ),
        }
    }

    /// `ws://<addr>/ws?token=<a fresh token for sub>`.
    pub fn ws_url_with_token(&self, sub: &str) -> String {
        format!("{}?token={}", self.ws_url(), self.token(sub))
    }

    /// A token for `sub`, valid for an hour.
    pub fn token(&self, sub: &str) -> String {
        mint_token(&self.auth, sub, Duration::from_secs(3600))
    }

    /// `GET path` on the HTTP address.
    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        http::get_over(self.http_addr, path, &[], self.tls.as_ref()).await
    }

    /// The parsed `/stats`.
    pub async fn stats(&self) -> anyhow::Result<StatsSnapshot> {
        self.get("/stats").await?.json()
    }

    /// Polls `/stats` until `done` holds (every 10 ms, at most `limit`).
    pub async fn wait_for_stats(
        &self,
        limit: Duration,
        done: impl Fn(&StatsSnapshot) -> bool,
    ) -> anyhow::Result<StatsSnapshot> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let stats = self.stats().await?;
            if done(&stats) {
                return Ok(stats);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("/stats did not reach the expected state within {limit:?}: {stats:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An `odin-server` running inside the test process.
pub struct TestServer {
    endpoint: Endpoint,
    server_id: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts a server with [`test_config`] against `nats_url`.
    pub async fn start(nats_url: &str) -> anyhow::Result<Self> {
        Self::start_with(test_config(nats_url)).await
    }

    /// Starts a server with `config` (bind to port 0 for free ports).
    pub async fn start_with(config: ServerConfig) -> anyhow::Result<Self> {
        Self::start_trusting(config, None).await
    }

    /// Starts a server with `config` whose TLS certificate `tls` trusts.
    pub async fn start_trusting(
        config: ServerConfig,
        tls: Option<ClientTls>,
    ) -> anyhow::Result<Self> {
        let auth = config.auth.clone();
        let server = Server::bind(config).await?;
        let endpoint = Endpoint {
            ws_addr: server.ws_addr(),
            http_addr: server.http_addr(),
            auth,
            tls,
        };
        let server_id = server.server_id().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            endpoint,
            server_id,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Where it listens and how to sign its tokens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The server's id.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Shuts down gracefully (every client gets `1001`) and waits for it.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.context("server task panicked")?,
            None => Ok(()),
        }
    }
}

impl std::ops::Deref for TestServer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `odin-server` as a child process of the built binary, ready once its
/// JSON log says `listening`.
pub struct ServerProcess {
    endpoint: Endpoint,
    child: ChildProcess,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ServerProcess {
    /// Starts the binary against `nats_url` on free loopback ports with the
    /// test secret; `extra` flags are appended.
    pub async fn start(nats_url: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(nats_url, extra, &[]).await
    }

    /// Like [`ServerProcess::start`], with extra environment variables.
    pub async fn start_with_env(
        nats_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_at(nats_url, "127.0.0.1:0", extra, env).await
    }

    /// Like [`ServerProcess::start_with_env`], with the WebSocket listener on
    /// `ws_addr` (e.g. a port several gateways share with `--reuse-port`).
    pub async fn start_at(
        nats_url: &str,
        ws_addr: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut args: Vec<String> = [
            "--ws-addr",
            ws_addr,
            "--http-addr",
            "127.0.0.1:0",
            "--nats-url",
            nats_url,
            "--jwt-secret",
            TEST_SECRET,
            "--log-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(args, env).await
    }

    async fn spawn(args: Vec<String>, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let bin = crate::bins::binary("odin-server")?;
        let mut command = Command::new(&bin);
        command
            .args(&args)
            .env_remove("ODIN_DEV")
            // Test and load clients all connect from 127.0.0.1: no
            // per-address budgets unless `env` or a flag sets them (as
            // variables, which servers older than the budgets ignore).
            .env("ODIN_MAX_CONNECTIONS_PER_ADDRESS", "0")
            .env("ODIN_CONNECT_RATE_PER_ADDRESS", "0")
            .env("ODIN_AUTH_FAILURES_PER_ADDRESS", "0")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info");
        let mut child = ChildProcess::spawn("odin-server", command)?;
        let (ws_addr, http_addr) = child
            .wait_for_line(Output::Stderr, READY_LIMIT, listening_addrs)
            .await
            .context("odin-server did not report its addresses")?;
        Ok(Self {
            endpoint: Endpoint {
                ws_addr,
                http_addr,
                auth: AuthConfig::with_secret(TEST_SECRET),
                tls: None,
            },
            child,
            args,
            env,
        })
    }

    /// Where it listens and how to sign its tokens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Trusts `tls` for this server's certificate (started with
    /// `--tls-cert`/`--tls-key`): its URLs become `wss://` and `https://`.
    pub fn trust(&mut self, tls: ClientTls) {
        self.endpoint.tls = Some(tls);
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Its log lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.child.stderr()
    }

    /// Sends `signal` (e.g. `"TERM"`, `"INT"`, `"KILL"`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        self.child.signal(signal)
    }

    /// Waits for the process to exit (at most `limit`) and returns its code.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        Ok(self.child.exit(limit).await?.code())
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await
    }

    /// Starts it again with the same flags on the same ports (after
    /// [`ServerProcess::kill`] or an exit).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let mut args = self.args.clone();
        for (flag, addr) in [
            ("--ws-addr", self.endpoint.ws_addr),
            ("--http-addr", self.endpoint.http_addr),
        ] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = addr.to_string();
            }
        }
        let _ = self.child.kill().await;
        // The port may linger briefly after the old process died.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Self::spawn(args.clone(), self.env.clone()).await {
                Ok(new) => {
                    *self = new;
                    return Ok(());
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "restart failed, retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl std::ops::Deref for ServerProcess {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Reads the `listening` line of the JSON log: `(ws, http)` addresses.
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let ws = fields.get("ws")?.as_str()?;
    let http = fields.get("http")?.as_str()?;
    let ws = ws
        .strip_prefix("ws://")
        .or_else(|| ws.strip_prefix("wss://"))?
        .strip_suffix(odin_server::WS_PATH)?;
    let http = http
        .strip_prefix("http://")
        .or_else(|| http.strip_prefix("https://"))?;
    Some((ws.parse().ok()?, http.parse().ok()?))
}
