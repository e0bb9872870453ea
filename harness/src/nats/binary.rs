//! The binary backend: `nats-server` as a child process on loopback, with
//! its log, ports file and JetStream store in a temporary directory.
//!
//! The first start asks the server for free ports (`-1`) and reads back what
//! it bound from its ports file, so parallel tests never race for a port;
//! restarts pass those ports explicitly so clients find the server again.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::time::{Instant, sleep};

use super::options::{DEFAULT_READY_TIMEOUT, NatsOptions};
use super::probe;

/// The only interface test servers listen on.
pub(crate) const HOST: &str = "127.0.0.1";
/// How often the ports file is looked for while the server starts.
const PORTS_POLL: Duration = Duration::from_millis(10);
/// Lines of log quoted in a start-up error.
const ERROR_LOG_LINES: usize = 25;

/// The ports a server listens on; fixed after its first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub(crate) client: u16,
    pub(crate) monitor: u16,
    /// The route port, for cluster members.
    pub(crate) cluster: Option<u16>,
}

/// Cluster membership of one node.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSpec {
    /// `--cluster_name`, shared by the nodes (and unique per cluster, so two
    /// test clusters never merge). A `Box<str>`, not a `String`, keeps
    /// `BinaryServer` small enough to sit unboxed in `nats::Inner`.
    pub(crate) name: Box<str>,
    /// Route ports of the other nodes to solicit.
    pub(crate) routes: Vec<u16>,
    /// The route port to listen on from the first start; `None` lets the
    /// server pick a free one.
    pub(crate) listen: Option<u16>,
}

/// What to run, independent of the ports.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) jetstream: bool,
    /// `--server_name`; unique, which JetStream in a cluster requires.
    pub(crate) name: String,
    pub(crate) cluster: Option<ClusterSpec>,
    pub(crate) extra_args: Vec<String>,
    pub(crate) ready_timeout: Duration,
}

impl Spec {
    /// A stand-alone server as `opts` asks.
    pub(crate) fn single(opts: &NatsOptions) -> Self {
        Self {
            jetstream: opts.jetstream,
            name: format!("odin-{:08x}", rand::random::<u32>()),
            cluster: None,
            extra_args: opts.extra_args.clone(),
            ready_timeout: opts.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
        }
    }
}

/// A `nats-server` process guard.
pub(crate) struct BinaryServer {
    bin: PathBuf,
    spec: Spec,
    /// Holds `nats.log`, `stderr.log`, `ports/` and `store/`; removed on drop
    /// (after the process is killed, since fields drop after `Drop::drop`).
    dir: TempDir,
    /// `None` until the first start has read them back.
    ports: Option<Ports>,
    /// `None` while stopped.
    child: Option<Child>,
}

impl BinaryServer {
    /// Starts `bin` as `spec` says and waits until it is ready.
    pub(crate) async fn start(bin: PathBuf, spec: Spec) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("odin-nats-")
            .tempdir()
            .context("cannot create a temporary directory for nats-server")?;
        let mut server = Self {
            bin,
            spec,
            dir,
            ports: None,
            child: None,
        };
        server.launch().await?;
        Ok(server)
    }

    /// The ports; only valid once started (which `start` guarantees).
    pub(crate) fn ports(&self) -> Ports {
        self.ports
            .expect("ports are known once the server has started")
    }

    /// The process id while running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory of this server.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is meant to be up.
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Replaces the routes this node solicits from its next (re)start on.
    pub(crate) fn set_routes(&mut self, routes: Vec<u16>) {
        if let Some(cluster) = &mut self.spec.cluster {
            cluster.routes = routes;
        }
    }

    /// Kills the process (SIGKILL: clients see the connection drop, nothing
    /// graceful) and reaps it. Idempotent.
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child).context("cannot kill nats-server")?;
        }
        Ok(())
    }

    /// Stops (if running) and starts again on the same ports, same store.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.launch().await
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, `"TERM"` …) to the server.
    pub(crate) fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("cannot send SIG{signal}: nats-server is stopped"))?;
        crate::process::send_signal(pid, signal)
    }

    /// The last `lines` lines of the server's log and of its stderr.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["nats.log", "stderr.log"] {
            let text = fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if !tail.is_empty() {
                out.push_str(&format!("--- {name} ---\n{}\n", tail.join("\n")));
            }
        }
        if out.is_empty() {
            out.push_str("(no log output)");
        }
        out
    }

    /// Spawns the process and waits for readiness; on failure the process is
    /// killed and the error quotes the log.
    async fn launch(&mut self) -> anyhow::Result<()> {
        let ports_dir = self.dir.path().join("ports");
        // A stale ports file of a killed predecessor must not be read back.
        let _ = fs::remove_dir_all(&ports_dir);
        fs::create_dir_all(&ports_dir).context("cannot create the ports directory")?;
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .context("cannot create nats-server's stderr log")?;
        let child = Command::new(&self.bin)
            .args(self.args(&ports_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        tracing::debug!(pid = child.id(), bin = %self.bin.display(), "nats-server spawned");
        self.child = Some(child);

        let deadline = Instant::now() + self.spec.ready_timeout;
        match self.await_ready(&ports_dir, deadline).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.stop();
                Err(e.context(format!(
                    "nats-server ({}) did not come up; its log ends with:\n{}",
                    self.bin.display(),
                    self.log_tail(ERROR_LOG_LINES)
                )))
            }
        }
    }

    async fn await_ready(&mut self, ports_dir: &Path, deadline: Instant) -> anyhow::Result<()> {
        let ports = match self.ports {
            Some(p) => p,
            None => {
                let p = self.read_ports_file(ports_dir, deadline).await?;
                self.ports = Some(p);
                p
            }
        };
        let child = self.child.as_mut().context("nats-server is not running")?;
        let left = deadline.saturating_duration_since(Instant::now());
        probe::wait_ready(HOST, ports.client, left, || exited(child)).await?;
        Ok(())
    }

    /// Polls for the `*.ports` file the server writes once every listener
    /// is bound, and reads the ports it chose.
    async fn read_ports_file(&mut self, dir: &Path, deadline: Instant) -> anyhow::Result<Ports> {
        let want_cluster = self.spec.cluster.is_some();
        loop {
            exited(self.child.as_mut().context("nats-server is not running")?)?;
            if let Some(ports) = parse_ports_dir(dir, want_cluster) {
                return Ok(ports);
            }
            if Instant::now() >= deadline {
                bail!(
                    "nats-server wrote no ports file within {:?}",
                    self.spec.ready_timeout
                );
            }
            sleep(PORTS_POLL).await;
        }
    }

    fn args(&self, ports_dir: &Path) -> Vec<String> {
        let port = |p: Option<u16>| p.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let dir = self.dir.path();
        let mut args: Vec<String> = vec![
            "-a".into(),
            HOST.into(),
            "-p".into(),
            port(self.ports.map(|p| p.client)),
            "-m".into(),
            port(self.ports.map(|p| p.monitor)),
            "--server_name".into(),
            self.spec.name.clone(),
            "-l".into(),
            path_arg(&dir.join("nats.log")),
            "--ports_file_dir".into(),
            path_arg(ports_dir),
        ];
        if self.spec.jetstream {
            args.extend(["-js".into(), "-sd".into(), path_arg(&dir.join("store"))]);
        }
        if let Some(cluster) = &self.spec.cluster {
            let listen = port(self.ports.and_then(|p| p.cluster).or(cluster.listen));
            args.extend([
                "--cluster_name".into(),
                cluster.name.to_string(),
                "--cluster_listen".into(),
                format!("nats://{HOST}:{listen}"),
            ]);
            if !cluster.routes.is_empty() {
                let routes: Vec<String> = cluster
                    .routes
                    .iter()
                    .map(|p| format!("nats://{HOST}:{p}"))
                    .collect();
                args.extend(["--routes".into(), routes.join(",")]);
            }
        }
        args.extend(self.spec.extra_args.iter().cloned());
        args
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(e) = kill_and_reap(&mut child)
        {
            tracing::warn!(pid = child.id(), "cannot kill nats-server: {e}");
        }
    }
}

fn kill_and_reap(child: &mut Child) -> std::io::Result<()> {
    // SIGKILL also ends a SIGSTOPped process, so a paused server is no
    // special case.
    match child.kill() {
        Ok(()) => {}
        // Already exited: reaping it is all that is left.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {}
        Err(e) => return Err(e),
    }
    child.wait().map(drop)
}

/// `Err` once the process has exited, with its exit status.
fn exited(child: &mut Child) -> anyhow::Result<()> {
    match child.try_wait().context("cannot poll nats-server")? {
        Some(status) => bail!("nats-server exited ({status})"),
        None => Ok(()),
    }
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Reads the ports file in `dir`, if a complete one is there yet. Its form is
/// `{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://…:8222"],"cluster":[…]}`.
fn parse_ports_dir(dir: &Path, want_cluster: bool) -> Option<Ports> {
    let entry = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let json: serde_json::Value = serde_json::from_slice(&fs::read(entry.path()).ok()?).ok()?;
    let first_port = |key: &str| -> Option<u16> {
        let url = json.get(key)?.as_array()?.first()?.as_str()?;
        url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
    };
    let ports = Ports {
        client: first_port("nats")?,
        monitor: first_port("monitoring")?,
        cluster: first_port("cluster"),
    };
    (ports.cluster.is_some() || !want_cluster).then_some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_ports_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(parse_ports_dir(dir.path(), false), None);
        fs::write(
            dir.path().join("nats-server_1.ports"),
            r#"{"nats":["nats://127.0.0.1:4222"],"monitoring":["http://127.0.0.1:8222"]}"#,
        )
        .unwrap();
        let p = parse_ports_dir(dir.path(), false).unwrap();
        assert_eq!((p.client, p.monitor, p.cluster), (4222, 8222, None));
        assert_eq!(parse_ports_dir(dir.path(), true), None);
    }

    #[test]
    fn a_half_written_ports_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("x.ports"),
            r#"{"nats":["nats://127.0.0.1:42"#,
        )
        .unwrap();
        assert_eq!(parse_ports_dir(dir.path(), false), None);
    }
}
