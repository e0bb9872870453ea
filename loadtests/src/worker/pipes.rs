//! The worker protocol over a local worker's pipes, both ends: the
//! coordinator starts `odin-load worker` as a child ([`spawn`]) with its
//! share on the command line; the worker writes its messages to stdout as
//! lines `odin-worker: <json>` (anything else on stdout is ignored) and
//! reads the coordinator's from stdin, one JSON document per line.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines, Stdin};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::message::{FromWorker, Share, ToWorker, decode, encode};

/// Source addresses per worker.
const SOURCES_PER_WORKER: u8 = 8;

/// What starts a worker's line on stdout.
const PREFIX: &str = "odin-worker: ";

// ---- The coordinator's end ----

/// The coordinator's end of one local worker process.
pub struct LocalWorker {
    /// Its number in the run.
    pub index: usize,
    /// Its folder: scenario, log and report.
    pub dir: PathBuf,
    child: Child,
    stdin: ChildStdin,
    /// Its messages, read off its stdout by a task of their own (a full
    /// pipe would stall the worker).
    messages: mpsc::UnboundedReceiver<anyhow::Result<FromWorker>>,
}

impl LocalWorker {
    /// Its next message; an error once it exited without one.
    pub async fn next(&mut self) -> anyhow::Result<FromWorker> {
        match self.messages.recv().await {
            Some(message) => message,
            None => {
                let status = self.child.wait().await?;
                anyhow::bail!(
                    "worker {} exited ({status}); see {}",
                    self.index,
                    self.dir.join("worker.log").display()
                )
            }
        }
    }

    /// Sends it `message`.
    pub async fn send(&mut self, message: &ToWorker) -> anyhow::Result<()> {
        let mut line = encode(message);
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .await
            .and(self.stdin.flush().await)
            .with_context(|| format!("worker {} is gone", self.index))
    }
}

/// Starts worker `share.index` (this binary's `worker` command) on its
/// share, its files in `dir`, reporting `nats_url` as the run's NATS.
pub async fn spawn(share: &Share, dir: &Path, nats_url: &str) -> anyhow::Result<LocalWorker> {
    let index = share.index;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let scenario_path = dir.join("scenario.json");
    std::fs::write(&scenario_path, serde_json::to_vec_pretty(&share.scenario)?)?;
    let log = std::fs::File::create(dir.join("worker.log"))?;
    // 127.0.<index+1>.1–8: the worker's own source addresses.
    let sources: Vec<String> = (1..=SOURCES_PER_WORKER)
        .map(|host| IpAddr::V4(Ipv4Addr::new(127, 0, index as u8 + 1, host)).to_string())
        .collect();
    let exe = std::env::current_exe().context("cannot find odin-load's own binary")?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg("--scenario-json")
        .arg(&scenario_path)
        .arg("--out")
        .arg(dir)
        .args(["--url", &share.ws_url, "--nats-url", nats_url])
        .args(["--source-ips", &sources.join(",")])
        .arg("--connect-timeout")
        .arg(humantime::format_duration(share.connect_timeout).to_string())
        .arg("--max-generator-lag")
        .arg(humantime::format_duration(share.max_generator_lag).to_string())
        .env("ODIN_JWT_SECRET", &share.jwt_secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a load worker")?;
    let stdin = child.stdin.take().context("no stdin pipe")?;
    let mut stdout = BufReader::new(child.stdout.take().context("no stdout pipe")?).lines();
    let (tx, messages) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            if let Some(json) = line.strip_prefix(PREFIX) {
                let _ = tx.send(decode(json.as_bytes()));
            }
        }
    });
    Ok(LocalWorker {
        index,
        dir: dir.to_path_buf(),
        child,
        stdin,
        messages,
    })
}

// ---- The worker's end ----

/// Writes `message` to stdout as one line.
pub fn send(message: &FromWorker) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(PREFIX.as_bytes())?;
    out.write_all(&encode(message))?;
    out.write_all(b"\n")?;
    out.flush().context("the coordinator closed stdout")
}

/// The coordinator's messages on stdin.
pub struct Inbox(Lines<BufReader<Stdin>>);

impl Inbox {
    /// Starts reading stdin.
    pub fn open() -> Inbox {
        Inbox(BufReader::new(tokio::io::stdin()).lines())
    }

    /// The next message.
    pub async fn next(&mut self) -> anyhow::Result<ToWorker> {
        match self.0.next_line().await? {
            Some(line) => decode(line.as_bytes()),
            None => anyhow::bail!("the coordinator closed the control pipe"),
        }
    }
}
