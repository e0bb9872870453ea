//! Readiness probe: a server is ready when a TCP connect to its client port
//! succeeds and it greets with its `INFO {…}` line.
//!
//! A listening socket alone is not enough (Docker's port proxy accepts before
//! the server runs; a paused server's kernel still completes handshakes), so
//! the probe waits for the greeting, and polls instead of sleeping a fixed
//! time.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// How long one probe attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause between attempts: short, because servers start in milliseconds.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The greeting is one line; a server is not sending anything longer.
const MAX_INFO_LEN: u64 = 64 * 1024;

/// Connects once and reads the greeting; `Ok` with the INFO JSON when it is
/// a NATS server.
pub(crate) async fn info(host: &str, port: u16) -> anyhow::Result<serde_json::Value> {
    let attempt = async {
        let stream = TcpStream::connect((host, port)).await?;
        let mut reader = BufReader::new(stream.take(MAX_INFO_LEN));
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).await?;
        anyhow::Ok(line)
    };
    let line = timeout(ATTEMPT_TIMEOUT, attempt)
        .await
        .context("no greeting in time")??;
    let json = line
        .strip_prefix(b"INFO ")
        .filter(|rest| rest.starts_with(b"{"))
        .with_context(|| format!("not a NATS greeting: {:?}", String::from_utf8_lossy(&line)))?;
    serde_json::from_slice(json.trim_ascii_end()).context("INFO is not JSON")
}

/// Polls [`info`] until it succeeds, `alive` reports the server gone, or
/// `limit` passes.
pub(crate) async fn wait_ready(
    host: &str,
    port: u16,
    limit: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + limit;
    loop {
        alive()?;
        let last = match info(host, port).await {
            Ok(info) => return Ok(info),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!("not ready on {host}:{port} after {limit:?}: {last:#}");
        }
        sleep(POLL_INTERVAL).await;
    }
}
