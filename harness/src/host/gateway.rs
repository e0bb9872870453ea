//! `odin-server` as a host of its own: a container of the tests' own build
//! of the binary, on the NATS cluster's network, with its WebSocket and HTTP
//! ports published to the Docker host, where the tests' clients are.
//!
//! It has two networks. It is created on a *front* network of its own,
//! which carries its published ports (Docker forwards them to the address
//! on the network a container was created on), and then joins the
//! cluster's network, where it reaches its NATS node by name. Cutting it off
//! the cluster's network ([`super::NetworkCut`]) therefore cuts it off NATS
//! and nothing else: its clients stay connected through the front.
//!
//! The image is `odin-server:test-<dir>`, made by `scripts/build-images.sh
//! server` from the binary the harness runs ([`crate::bins`]), tagged per
//! build directory so that the builds of other checkouts on the same Docker
//! host do not replace it; the script's cache makes a rebuild of the same
//! binary a no-op.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use odin_server::auth::AuthConfig;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::docker::docker;
use crate::server::{Endpoint, TEST_SECRET};
use crate::wait::LIMIT;

/// The ports the image listens on (its `ODIN_WS_ADDR`, `ODIN_HTTP_ADDR`).
const WS_PORT: u16 = 8080;
const HTTP_PORT: u16 = 3001;

/// A gateway container, removed on drop (its front network with it).
pub struct GatewayContainer {
    container: ContainerAsync<GenericImage>,
    name: String,
    endpoint: Endpoint,
}

impl GatewayContainer {
    /// Starts a gateway named `name` on `network` (a cluster's,
    /// [`crate::nats::NatsCluster::network`]) against `nats_url` (names on
    /// that network), with the test secret and `extra` flags; ready once
    /// `/health` answers 200 (connected to NATS, and to the last-prices
    /// store when configured).
    pub async fn start(
        name: &str,
        network: &str,
        nats_url: &str,
        extra: &[&str],
    ) -> anyhow::Result<GatewayContainer> {
        let tag = ensure_image()?;
        let mut args = vec![
            "--nats-url".to_owned(),
            nats_url.to_owned(),
            "--jwt-secret".to_owned(),
            TEST_SECRET.to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        // Its clients reach it through Docker's port forwarding, all from
        // one address: no per-address budgets.
        let container = GenericImage::new("odin-server", &tag)
            .with_exposed_port(WS_PORT.tcp())
            .with_exposed_port(HTTP_PORT.tcp())
            .with_wait_for(WaitFor::Nothing)
            .with_network(format!("{name}-front"))
            .with_container_name(name)
            .with_env_var("ODIN_MAX_CONNECTIONS_PER_ADDRESS", "0")
            .with_env_var("ODIN_CONNECT_RATE_PER_ADDRESS", "0")
            .with_env_var("ODIN_AUTH_FAILURES_PER_ADDRESS", "0")
            .with_env_var("RUST_LOG", "info")
            .with_cmd(args)
            .start()
            .await
            .with_context(|| format!("cannot start the gateway container odin-server:{tag}"))?;
        docker(&["network", "connect", network, name])?;
        let ws_port = container.get_host_port_ipv4(WS_PORT).await?;
        let http_port = container.get_host_port_ipv4(HTTP_PORT).await?;
        let gateway = GatewayContainer {
            container,
            name: name.to_owned(),
            endpoint: Endpoint {
                ws_addr: ([127, 0, 0, 1], ws_port).into(),
                http_addr: ([127, 0, 0, 1], http_port).into(),
                auth: AuthConfig::with_secret(TEST_SECRET),
                tls: None,
            },
        };
        gateway.wait_healthy().await?;
        Ok(gateway)
    }

    /// The container's name (to cut it off a network).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its clients connect, on the Docker host.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Its log so far (`docker logs`), for failure messages.
    pub fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", "--tail", "60", self.container.id()])
            .output();
        match output {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(no docker logs: {e})"),
        }
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let status = self.endpoint.get("/health").await.map(|r| r.status);
            if matches!(status, Ok(200)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "gateway container {} not healthy within {LIMIT:?} (last: {status:?}); log:\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl std::ops::Deref for GatewayContainer {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Builds (once per process; the script's cache makes it quick) the image
/// of the `odin-server` the harness runs, and returns its tag.
fn ensure_image() -> anyhow::Result<String> {
    static BUILT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tag) = built.as_ref() {
        return Ok(tag.clone());
    }
    let binary = crate::bins::binary("odin-server")?;
    let dir = binary
        .parent()
        .context("the odin-server binary has no directory")?
        .canonicalize()?;
    let tag = tag_of(&dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
    let output = Command::new(&script)
        .arg("server")
        .env("ODIN_IMAGE_BIN_DIR", &dir)
        .env("ODIN_IMAGE_TAG", &tag)
        .env("ODIN_IMAGES_REQUIRED", "1")
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "cannot build the gateway image odin-server:{tag}: {}",
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .replace('\n', "; ")
        );
    }
    *built = Some(tag.clone());
    Ok(tag)
}

/// `test-<hash of dir>`: one tag per build directory.
fn tag_of(dir: &Path) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    format!("test-{:08x}", hasher.finish() as u32)
}
