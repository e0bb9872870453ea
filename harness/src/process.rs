//! Signals for the child processes the harness starts (NATS, the server, the
//! publisher). The workspace forbids `unsafe`, so no direct `kill(2)`: the
//! signal goes through `kill(1)`.

use anyhow::{Context, bail};

/// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, `"STOP"`, `"CONT"`) to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill(1)")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed ({status})");
    }
    Ok(())
}
