//! A workspace binary (or NATS) as a child process: started with its output
//! piped, every line of stdout and stderr kept as it comes, ready once a
//! line says so, signalled by name, killed if dropped. The server, the
//! publisher and the forwarder wrappers are this type plus what each binary
//! means by "ready".

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long the pipes may take to drain once the process has exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Which output a readiness line is printed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Standard error (where the binaries log).
    Stderr,
}

/// A running child process and the lines it printed so far.
#[derive(Debug)]
pub struct ChildProcess {
    /// Names the process in error messages.
    name: String,
    child: Child,
    stdout: watch::Receiver<Vec<String>>,
    stderr: watch::Receiver<Vec<String>>,
}

impl ChildProcess {
    /// Starts `command` (named `name` in errors) with stdin closed and both
    /// outputs collected; the process is killed when this is dropped.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = collect(child.stdout.take().context("no stdout pipe")?);
        let stderr = collect(child.stderr.take().context("no stderr pipe")?);
        Ok(Self {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        })
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its stdout lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.borrow().clone()
    }

    /// Its stderr lines so far (its log).
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.borrow().clone()
    }

    /// Waits up to `limit` for a line on `output` that `find` reads a value
    /// from (lines already printed included) and returns the value; an
    /// error carrying the log when the process exits first or time runs out.
    pub async fn wait_for_line<T>(
        &mut self,
        output: Output,
        limit: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let lines = match output {
            Output::Stdout => &mut self.stdout,
            Output::Stderr => &mut self.stderr,
        };
        let found = tokio::time::timeout(limit, async {
            loop {
                if let Some(value) = lines.borrow_and_update().iter().find_map(|l| find(l)) {
                    return Some(value);
                }
                if lines.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found {
            Ok(Some(value)) => Ok(value),
            Ok(None) => bail!("{} exited first; its log:\n{}", self.name, self.log()),
            Err(_) => bail!(
                "no such line from {} within {limit:?}; its log:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, `"STOP"`, `"CONT"`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.name))?;
        crate::process::send_signal(pid, signal)
    }

    /// Waits up to `limit` for the process to exit, then for its pipes to
    /// drain (so every line it printed is kept), and returns its status.
    pub async fn exit(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .with_context(|| format!("{} still running after {limit:?}", self.name))?
            .with_context(|| format!("cannot wait for {}", self.name))?;
        for pipe in [&mut self.stdout, &mut self.stderr] {
            let _ =
                tokio::time::timeout(DRAIN_LIMIT, async { while pipe.changed().await.is_ok() {} })
                    .await;
        }
        Ok(status)
    }

    /// Kills it at once (SIGKILL), as a crash would, and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("cannot kill {}", self.name))
    }

    /// The stderr so far, one string, for error messages.
    fn log(&self) -> String {
        self.stderr.borrow().join("\n")
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
