//! Signals for the child processes the harness starts (NATS, the server, the
//! publisher). The workspace forbids `unsafe`, so no direct `kill(2)`: the
//! signal goes through `kill(1)`.

use anyhow::{Context, bail};

/// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, `"STOP"`, `"CONT"`) to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    send(pid, signal)?;
    if signal == "STOP" {
        // kill(1) returns once the signal is queued; each thread stops when
        // next scheduled. A caller that pauses a process expects it frozen
        // when this returns, so wait for every thread to show it.
        wait_stopped(pid, std::time::Duration::from_secs(5))?;
    }
    Ok(())
}

/// Waits until every thread of `pid` is stopped (state `T` in
/// `/proc/<pid>/task/*/stat`), polling every millisecond up to `limit`.
fn wait_stopped(pid: u32, limit: std::time::Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if all_threads_stopped(pid) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            bail!("process {pid} did not stop within {limit:?} of SIGSTOP");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        // Gone, or no /proc: nothing more to wait for.
        return true;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

fn send(pid: u32, signal: &str) -> anyhow::Result<()> {
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
