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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use odin_publisher::{PublisherConfig, Totals};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::child::{ChildProcess, Output};

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

/// `odin-publisher` running as a child process, ready once it logs that it
/// is connected to NATS.
#[derive(Debug)]
pub struct PublisherProcess {
    child: ChildProcess,
    totals: tempfile::TempPath,
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
        let mut command = Command::new(&bin);
        command
            .args(args)
            .arg(format!("--totals-file={}", totals.display()));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ODIN_") {
                command.env_remove(key);
            }
        }
        command.env("RUST_LOG", "info");
        let child = ChildProcess::spawn("odin-publisher", command)?;
        Ok(Self { child, totals })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Its stderr so far.
    pub fn logs(&self) -> Vec<String> {
        self.child.stderr()
    }

    /// Waits up to `limit` for a stderr line matching `pred`.
    pub async fn wait_for_log(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        self.child
            .wait_for_line(Output::Stderr, limit, |l| pred(l).then_some(()))
            .await
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        self.child.signal(signal)
    }

    /// Waits up to `limit` for the process to exit, with what it printed.
    pub async fn exit(&mut self, limit: Duration) -> anyhow::Result<ProcessExit> {
        let status = self.child.exit(limit).await?;
        Ok(ProcessExit {
            code: status.code(),
            stdout: self.child.stdout(),
            stderr: self.child.stderr(),
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
