//! The publisher as a test fixture, two ways, both stoppable and both
//! returning the [`Totals`] of what was published (what the load tests
//! compare deliveries with):
//!
//! - [`InProcessPublisher`]: the library's [`odin_publisher::run`] on a
//!   thread of its own with a current-thread runtime, like the binary, so it
//!   publishes as fast as the binary and does not compete with the test's
//!   own runtime; stopped through a cancellation token.
//! - [`PublisherProcess`]: the built `odin-publisher` binary as a child
//!   process, for tests of signals, exit codes and restarts; its totals come
//!   back through `--totals-file`.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use odin_publisher::{PublisherConfig, Totals};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long a stopped publisher may take to flush and exit.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// A small, reproducible configuration for tests: 5 tokens at 100 price
/// events/s, a 1 s tick, seed 1, against `nats_url`.
pub fn test_config(nats_url: &str) -> PublisherConfig {
    PublisherConfig {
        nats_url: nats_url.to_owned(),
        tokens: 5,
        rate: 100.0,
        tick: Duration::from_secs(1),
        seed: Some(1),
        ..PublisherConfig::default()
    }
}

/// A publisher running in this process.
#[derive(Debug)]
pub struct InProcessPublisher {
    cancel: CancellationToken,
    done: oneshot::Receiver<Result<Totals, odin_publisher::Error>>,
    finished: Arc<AtomicBool>,
}

impl InProcessPublisher {
    /// Starts a publisher with `config` (it connects to NATS in the
    /// background; a failure comes back from [`InProcessPublisher::wait`]
    /// or [`InProcessPublisher::stop`]).
    pub fn start(config: PublisherConfig) -> anyhow::Result<Self> {
        let cancel = CancellationToken::new();
        let (tx, done) = oneshot::channel();
        let finished = Arc::new(AtomicBool::new(false));
        let finished_flag = finished.clone();
        let stop = cancel.clone().cancelled_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the publisher's runtime")?;
        std::thread::Builder::new()
            .name("odin-publisher".to_owned())
            .spawn(move || {
                let result = runtime.block_on(odin_publisher::run(config, stop));
                finished_flag.store(true, Ordering::Release);
                let _ = tx.send(result);
            })
            .context("cannot start the publisher's thread")?;
        Ok(Self {
            cancel,
            done,
            finished,
        })
    }

    /// Whether the run has ended (duration reached, recording played, or
    /// failed).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Waits up to `limit` for the run to end by itself.
    pub async fn wait(mut self, limit: Duration) -> anyhow::Result<Totals> {
        match tokio::time::timeout(limit, &mut self.done).await {
            Ok(result) => Ok(result.context("the publisher's thread died")??),
            Err(_) => {
                self.cancel.cancel();
                bail!("the publisher did not finish within {limit:?}")
            }
        }
    }

    /// Stops the run (like SIGTERM), waits for the final flush, and returns
    /// the totals.
    pub async fn stop(mut self) -> anyhow::Result<Totals> {
        self.cancel.cancel();
        match tokio::time::timeout(STOP_LIMIT, &mut self.done).await {
            Ok(result) => Ok(result.context("the publisher's thread died")??),
            Err(_) => bail!("the publisher did not stop within {STOP_LIMIT:?}"),
        }
    }
}

impl Drop for InProcessPublisher {
    fn drop(&mut self) {
        // A test that forgets to stop its publisher must not leave it
        // publishing into the next test.
        self.cancel.cancel();
    }
}

/// How a publisher process ended.
#[derive(Debug, Clone)]
pub struct ProcessExit {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stdout (the totals line).
    pub stdout: Vec<String>,
    /// Everything it logged on stderr.
    pub stderr: Vec<String>,
}

/// `odin-publisher` running as a child process.
#[derive(Debug)]
pub struct PublisherProcess {
    child: Child,
    totals: tempfile::TempPath,
    stdout: watch::Receiver<Vec<String>>,
    stderr: watch::Receiver<Vec<String>>,
}

impl PublisherProcess {
    /// Starts the binary with exactly `config` (every setting passed as a
    /// flag; `ODIN_*` variables of the test's environment are removed) and
    /// waits until it is connected to NATS.
    pub async fn start(config: &PublisherConfig) -> anyhow::Result<Self> {
        let mut process = Self::spawn(config, &[])?;
        process
            .wait_for_log(Duration::from_secs(20), |l| l.contains("connected to NATS"))
            .await?;
        Ok(process)
    }

    /// Starts the binary with `config` plus raw `extra` arguments (which must
    /// not repeat a setting of `config`), without waiting for anything.
    pub fn spawn(config: &PublisherConfig, extra: &[&str]) -> anyhow::Result<Self> {
        let mut args = config.to_args();
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::spawn_args(&args)
    }

    /// Starts the binary with exactly `args` (plus `--totals-file`), for
    /// tests of how it treats its command line.
    pub fn spawn_args(args: &[impl AsRef<std::ffi::OsStr>]) -> anyhow::Result<Self> {
        let bin = crate::bins::binary("odin-publisher")?;
        let totals = tempfile::NamedTempFile::new()
            .context("cannot create the totals file")?
            .into_temp_path();
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .arg(format!("--totals-file={}", totals.display()));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ODIN_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = collect(child.stdout.take().context("no stdout pipe")?);
        let stderr = collect(child.stderr.take().context("no stderr pipe")?);
        Ok(Self {
            child,
            totals,
            stdout,
            stderr,
        })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its stderr so far.
    pub fn logs(&self) -> Vec<String> {
        self.stderr.borrow().clone()
    }

    /// Waits up to `limit` for a stderr line matching `pred`.
    pub async fn wait_for_log(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let found = tokio::time::timeout(limit, async {
            loop {
                if self.stderr.borrow().iter().any(|l| pred(l)) {
                    return Ok(());
                }
                if self.stderr.changed().await.is_err() {
                    bail!("odin-publisher exited first");
                }
            }
        })
        .await;
        match found {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => bail!("{e}; its log:\n{}", self.logs().join("\n")),
            Err(_) => bail!(
                "no matching log line within {limit:?}; its log:\n{}",
                self.logs().join("\n")
            ),
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("odin-publisher is not running")?;
        crate::process::send_signal(pid, signal)
    }

    /// Waits up to `limit` for the process to exit, with what it printed.
    pub async fn exit(&mut self, limit: Duration) -> anyhow::Result<ProcessExit> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .with_context(|| format!("odin-publisher still running after {limit:?}"))?
            .context("cannot wait for odin-publisher")?;
        // The pipes close with the process; wait for the readers to drain.
        for pipe in [&mut self.stdout, &mut self.stderr] {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while pipe.changed().await.is_ok() {}
            })
            .await;
        }
        Ok(ProcessExit {
            code: status.code(),
            stdout: self.stdout.borrow().clone(),
            stderr: self.stderr.borrow().clone(),
        })
    }

    /// Waits up to `limit` for the run to end by itself and returns its
    /// totals; a non-zero exit is an error carrying the process's log.
    pub async fn wait(mut self, limit: Duration) -> anyhow::Result<Totals> {
        let exit = self.exit(limit).await?;
        self.totals_of(exit)
    }

    /// Stops the process with SIGTERM and returns its totals.
    pub async fn stop(mut self) -> anyhow::Result<Totals> {
        self.signal("TERM")?;
        let exit = self.exit(STOP_LIMIT).await?;
        self.totals_of(exit)
    }

    fn totals_of(&self, exit: ProcessExit) -> anyhow::Result<Totals> {
        if exit.code != Some(0) {
            bail!(
                "odin-publisher exited with {:?}; its log:\n{}",
                exit.code,
                exit.stderr.join("\n")
            );
        }
        let text = std::fs::read_to_string(&self.totals)
            .with_context(|| format!("cannot read {}", self.totals.display()))?;
        serde_json::from_str(&text).context("the totals file is not valid totals JSON")
    }
}

/// Collects the lines of `pipe` as they come.
fn collect(pipe: impl AsyncRead + Unpin + Send + 'static) -> watch::Receiver<Vec<String>> {
    let (tx, rx) = watch::channel(Vec::new());
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tx.send_modify(|l| l.push(line));
        }
    });
    rx
}
