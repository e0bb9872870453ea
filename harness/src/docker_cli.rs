//! The `docker` CLI, run as a command, for what `testcontainers` does not
//! offer (removing a container that never started, pause, image checks,
//! network changes). A leaf: the NATS backends and the host faults both
//! use it, so neither reaches into the other for it.

use std::process::Command;

use anyhow::{Context, bail};

/// Runs `docker <args>` and returns its trimmed stdout; an error quotes
/// its stderr.
pub(crate) fn docker(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("docker").args(args)).with_context(|| format!("docker {}", args.join(" ")))
}

/// Runs `command` and returns its trimmed stdout; an error quotes its
/// stderr.
pub(crate) fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command.output().context("cannot run the command")?;
    if !output.status.success() {
        bail!(
            "failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
