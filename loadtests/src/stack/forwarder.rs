//! The bare forwarder (crate `odin-forwarder`) as a child process of the load
//! tool: the built binary (found like every workspace binary, `ODIN_BIN_DIR`
//! first) run as the harness's `ChildProcess`, ready once it prints where it
//! listens (its `LISTENING` line on stdout), stopped with SIGTERM, killed if
//! dropped.

use std::net::SocketAddr;
use std::time::Duration;

use odin_forwarder::{LISTENING, WS_PATH};
use odin_harness::child::{ChildProcess, Output};
use tokio::process::Command;

/// Log lines kept for an error message.
const KEPT_LOG_LINES: usize = 200;

/// How long a starting forwarder may take to say it listens.
const READY_LIMIT: Duration = Duration::from_secs(20);

/// A running `odin-forwarder`.
pub struct ForwarderProcess {
    child: ChildProcess,
    ws_addr: SocketAddr,
}

impl ForwarderProcess {
    /// Starts the binary against `nats_url` on a free loopback port, with
    /// `extra` flags appended, and returns once it serves.
    pub async fn start(nats_url: &str, extra: &[String]) -> anyhow::Result<Self> {
        let bin = odin_harness::bins::binary("odin-forwarder")?;
        let mut command = Command::new(&bin);
        command
            .args(["--ws-addr", "127.0.0.1:0", "--nats-url", nats_url])
            .args(extra)
            .env("RUST_LOG", "info");
        let mut child = ChildProcess::spawn("odin-forwarder", command)?;
        let ws_addr = child
            .wait_for_line(Output::Stdout, READY_LIMIT, listening_addr)
            .await?;
        Ok(Self { child, ws_addr })
    }

    /// `ws://<addr>/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.ws_addr, WS_PATH)
    }

    /// Its process id (for its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Its last log lines.
    pub fn logs(&self) -> Vec<String> {
        let mut logs = self.child.stderr();
        let skip = logs.len().saturating_sub(KEPT_LOG_LINES);
        logs.drain(..skip);
        logs
    }

    /// Sends `signal` (e.g. `"TERM"`).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        self.child.signal(signal)
    }

    /// Waits for it to exit (at most `limit`) and returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<Option<i32>> {
        Ok(self.child.exit(limit).await?.code())
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
