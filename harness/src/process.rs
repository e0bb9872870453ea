//! Signals for the child processes the harness starts (NATS, the server, the
//! publisher, the forwarder): `kill(2)` through nix's safe wrapper, named the
//! way `kill(1)` names them (`"TERM"`, `"STOP"`).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a process may take to show every thread stopped after SIGSTOP.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`, `"STOP"`, `"CONT"`, or with
/// the `SIG` prefix) to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let signal = parse(signal)?;
    let target = Pid::from_raw(i32::try_from(pid).with_context(|| format!("{pid} is no pid"))?);
    kill(target, signal).with_context(|| format!("cannot send {signal} to {pid}"))?;
    if signal == Signal::SIGSTOP {
        // kill(2) returns once the signal is queued; each thread stops when
        // next scheduled. A caller that pauses a process expects it frozen
        // when this returns, so wait for every thread to show it.
        wait_stopped(pid, STOP_LIMIT)?;
    }
    Ok(())
}

/// The signal named `name`, with or without its `SIG` prefix.
fn parse(name: &str) -> anyhow::Result<Signal> {
    let full = if name.starts_with("SIG") {
        name.to_owned()
    } else {
        format!("SIG{name}")
    };
    full.parse()
        .with_context(|| format!("{name:?} is not a signal name"))
}

/// Waits until every thread of `pid` is stopped (state `T` in
/// `/proc/<pid>/task/*/stat`), polling every millisecond up to `limit`. A
/// blocking wait: callers are synchronous, and it lasts microseconds.
fn wait_stopped(pid: u32, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if all_threads_stopped(pid) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("process {pid} did not stop within {limit:?} of SIGSTOP");
        }
        std::thread::sleep(Duration::from_millis(1));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_signals_with_or_without_their_prefix() {
        assert_eq!(parse("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("SIGSTOP").unwrap(), Signal::SIGSTOP);
        assert!(parse("NOPE").is_err());
    }
}
