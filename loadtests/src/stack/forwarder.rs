//! The bare forwarder (crate `odin-forwarder`) as a child process of the load
//! tool: the built binary (found like every workspace binary, `ODIN_BIN_DIR`
//! first), ready once it prints where it listens, stopped with SIGTERM,
//! killed if dropped.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use odin_forwarder::{LISTENING, WS_PATH};

/// Log lines kept for an error message.
const KEPT_LOG_LINES: usize = 200;

/// A running `odin-forwarder`.
pub struct ForwarderProcess {
    child: Child,
    ws_addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ForwarderProcess {
    /// Starts the binary against `nats_url` on a free loopback port, with
    /// `extra` flags appended, and returns once it serves.
    pub async fn start(nats_url: &str, extra: &[String]) -> anyhow::Result<Self> {
        let bin = odin_harness::bins::binary("odin-forwarder")?;
        let mut child = Command::new(&bin)
            .args(["--ws-addr", "127.0.0.1:0", "--nats-url", nats_url])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().context("no stderr pipe")?;
        tokio::spawn({
            let logs = logs.clone();
            async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut logs = logs.lock();
                    if logs.len() == KEPT_LOG_LINES {
                        logs.remove(0);
                    }
                    logs.push(line);
                }
            }
        });
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = listening_addr(&line) {
                    return Ok(Some(addr));
                }
            }
            anyhow::Ok(None)
        })
        .await;
        let log = || logs.lock().join("\n");
        let ws_addr = match found {
            Ok(Ok(Some(addr))) => addr,
            Ok(Ok(None)) => bail!(
                "odin-forwarder exited before listening; its log:\n{}",
                log()
            ),
            Ok(Err(e)) => bail!("cannot read odin-forwarder's output: {e}"),
            Err(_) => bail!(
                "odin-forwarder did not listen within 20 s; its log:\n{}",
                log()
            ),
        };
        // Keep draining stdout: a closed pipe would fail its next write.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            ws_addr,
            logs,
        })
    }

    /// `ws://<addr>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.ws_addr, WS_PATH)
    }

    /// Its process id (for its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its last log lines.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().clone()
    }

    /// Sends `signal` (e.g. `"TERM"`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("odin-forwarder already exited")?;
        odin_harness::process::send_signal(pid, signal)
    }

    /// Waits for it to exit (at most `limit`) and returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .with_context(|| format!("odin-forwarder did not exit within {limit:?}"))??;
        Ok(status.code())
    }
}

/// The address of the binary's readiness line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    line.strip_prefix(LISTENING)?
        .trim()
        .strip_prefix("ws://")?
        .strip_suffix(WS_PATH)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_readiness_line() {
        assert_eq!(
            listening_addr("odin-forwarder listening on ws://127.0.0.1:4321/ws"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        assert_eq!(listening_addr("something else"), None);
    }
}
