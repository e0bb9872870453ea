//! The container backend: the locally built NATS image through
//! `testcontainers`.
//!
//! Host ports are chosen up front and mapped explicitly, so a `stop` +
//! `restart` (Docker stop/start of the same container) comes back on the same
//! URL. Supported: start, JetStream, stop, restart, pause/resume (through the
//! `docker` CLI, since `pause` is synchronous in the guard's API), monitoring,
//! and a place in a cluster ([`ClusterPlace`]: a private Docker network on
//! which the nodes find each other by name; see [`super::NatsCluster`]).
//!
//! The image is never pulled: the project's machines may reach no registry.
//! [`DEFAULT_IMAGE`] is built on first use by `scripts/build-images.sh nats`
//! (what `make images` runs) from a `nats-server` executable. A custom image (`ODIN_NATS_IMAGE`) must already be on the machine
//! and take `nats-server` flags as its arguments, as the official images do.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::options::NatsOptions;
use super::probe;
use crate::docker_cli::docker;

/// The image used when neither the options nor `ODIN_NATS_IMAGE` name one:
/// built by `make images`, `FROM scratch` with `nats-server` as entrypoint.
pub const DEFAULT_IMAGE: &str = "odin-nats:local";
/// Environment variable naming the image, `name:tag`.
pub const IMAGE_ENV: &str = "ODIN_NATS_IMAGE";
/// Readiness limit: a container starts in about a second on an idle machine.
const CONTAINER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_PORT: u16 = 4222;
const MONITOR_PORT: u16 = 8222;
/// The port nodes route to each other on, inside their network.
const ROUTE_PORT: u16 = 6222;

/// A container's place in a cluster.
pub(crate) struct ClusterPlace<'a> {
    /// The private Docker network the nodes share (created with the first
    /// node, removed with the last).
    pub(crate) network: &'a str,
    /// The container's name, its host name on the network and its NATS
    /// server name.
    pub(crate) name: &'a str,
    /// The cluster's name.
    pub(crate) cluster: &'a str,
    /// The other nodes' names.
    pub(crate) peers: &'a [String],
}

/// A NATS container, removed on drop (by `testcontainers`).
pub(crate) struct ContainerServer {
    container: ContainerAsync<GenericImage>,
    host: String,
    port: u16,
    monitor_port: u16,
    running: bool,
    ready_timeout: Duration,
}

/// How many times a container is started with fresh host ports when a port
/// was taken between our pick and Docker's bind.
const PORT_ATTEMPTS: u32 = 5;

/// Docker's words when a host port it was to publish is taken.
const PORT_TAKEN: &str = "address already in use";

/// A name for a server outside a cluster, unique on this machine while this
/// process lives (a failed start is removed by it).
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "odin-nats-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl ContainerServer {
    /// Starts the image (which must be on the machine), alone or at `place`
    /// in a cluster, and waits until NATS greets.
    pub(crate) async fn start(
        opts: &NatsOptions,
        place: Option<&ClusterPlace<'_>>,
    ) -> anyhow::Result<Self> {
        let image = opts
            .image
            .clone()
            .or_else(|| std::env::var(IMAGE_ENV).ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
        ensure_image_present(&image)?;
        let (name, tag) = split_image(&image);
        let ready_timeout = opts.ready_timeout.unwrap_or(CONTAINER_READY_TIMEOUT);
        let mut args: Vec<String> = vec!["-m".into(), MONITOR_PORT.to_string()];
        if opts.jetstream {
            // The store stays in the container's own /tmp: it survives a
            // stop/start of the container and goes with it on removal.
            args.push("-js".into());
        }
        if let Some(place) = place {
            let routes: Vec<String> = place
                .peers
                .iter()
                .map(|peer| format!("nats://{peer}:{ROUTE_PORT}"))
                .collect();
            args.extend([
                "--name".into(),
                place.name.into(),
                "--cluster_name".into(),
                place.cluster.into(),
                "--cluster".into(),
                format!("nats://0.0.0.0:{ROUTE_PORT}"),
                "--routes".into(),
                routes.join(","),
            ]);
        }
        args.extend(opts.extra_args.iter().cloned());

        // Host ports of our choosing, so that a stopped and started node
        // keeps its URL. Another process may take a port between our pick
        // and Docker's bind: then pick again.
        let container_name = place.map_or_else(unique_name, |place| place.name.to_owned());
        let mut attempt = 1;
        let (container, port, monitor_port) = loop {
            let port = free_port()?;
            let monitor_port = free_port()?;
            let mut request = GenericImage::new(name, tag)
                .with_exposed_port(CLIENT_PORT.tcp())
                .with_exposed_port(MONITOR_PORT.tcp())
                .with_wait_for(WaitFor::message_on_stderr("Server is ready"))
                .with_mapped_port(port, CLIENT_PORT.tcp())
                .with_mapped_port(monitor_port, MONITOR_PORT.tcp())
                .with_cmd(args.clone())
                .with_startup_timeout(ready_timeout);
            if let Some(place) = place {
                request = request.with_network(place.network);
            }
            match request.with_container_name(&container_name).start().await {
                Ok(container) => break (container, port, monitor_port),
                Err(e) if attempt < PORT_ATTEMPTS && e.to_string().contains(PORT_TAKEN) => {
                    // Created but not started: it goes, and its name is free again.
                    let _ = docker(&["rm", "--force", &container_name]);
                    attempt += 1;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot start a NATS container from {image}")));
                }
            }
        };
        let host = match container.get_host().await?.to_string().as_str() {
            "localhost" => "127.0.0.1".to_owned(),
            other => other.to_owned(),
        };
        let server = Self {
            container,
            host,
            port,
            monitor_port,
            running: true,
            ready_timeout,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running
    }

    /// The container's id, for host faults run on it ([`crate::host`]).
    pub(crate) fn id(&self) -> &str {
        self.container.id()
    }

    /// Stops the container at once (`docker stop -t 0`: a kill, like the
    /// binary backend), keeping it and its port mapping for `restart`.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        if self.running {
            self.container
                .stop_with_timeout(Some(0))
                .await
                .context("cannot stop the NATS container")?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts the same container again (same ports, same JetStream data).
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.container
            .start()
            .await
            .context("cannot restart the NATS container")?;
        self.running = true;
        self.wait_ready().await
    }

    /// Runs `docker <verb> <id>` (`pause`, `unpause`).
    pub(crate) fn docker_cli(&self, verb: &str) -> anyhow::Result<()> {
        docker(&[verb, self.container.id()]).map(drop)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        probe::wait_ready(&self.host, self.port, self.ready_timeout, || Ok(()))
            .await
            .with_context(|| format!("NATS container {} is not ready", self.container.id()))?;
        Ok(())
    }
}

/// Makes sure `image` is on the machine, instead of letting
/// `testcontainers` try a registry that may not exist: [`DEFAULT_IMAGE`] is
/// built once per process by the workspace's `scripts/build-images.sh nats`
/// (cached, a second run takes a fraction of a second); any other image is
/// an error in one line when it is missing.
fn ensure_image_present(image: &str) -> anyhow::Result<()> {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    if image == DEFAULT_IMAGE {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if !*built {
            build_default_image()?;
            *built = true;
        }
    }
    if docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
        bail!("the NATS image {image} ({IMAGE_ENV}) is not on this machine, and nothing is pulled");
    }
    Ok(())
}

fn build_default_image() -> anyhow::Result<()> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-images.sh");
    let output = Command::new(&script)
        .arg("nats")
        .env("ODIN_IMAGES_REQUIRED", "1")
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "cannot build the NATS image {DEFAULT_IMAGE} (`make images`): {}",
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .replace('\n', "; ")
        );
    }
    Ok(())
}

/// `name:tag` → (`name`, `tag`); a missing tag is `latest`. A `:` inside a
/// registry host (`registry:5000/nats`) is not a tag separator.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

/// A port the OS calls free now. Docker binds it right after; the window in
/// between is small, and a clash fails the start loudly rather than silently.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_image_names() {
        assert_eq!(split_image("nats:2.10-alpine"), ("nats", "2.10-alpine"));
        assert_eq!(split_image("nats"), ("nats", "latest"));
        assert_eq!(
            split_image("registry:5000/nats:2.10"),
            ("registry:5000/nats", "2.10")
        );
        assert_eq!(
            split_image("registry:5000/nats"),
            ("registry:5000/nats", "latest")
        );
    }
}
