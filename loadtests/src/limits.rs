//! The open-file limit: every WebSocket user is one socket, so a run raises
//! its soft limit to the hard one and refuses, before starting, a user count
//! that cannot fit (the hard limit here is 20,000 and cannot be raised).

use anyhow::bail;

/// Files a run needs besides its users' sockets (NATS, the publisher, logs,
/// the runtime, reports).
pub const SPARE_FILES: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and checks `users`
/// sockets fit.
pub fn ensure_files_for(users: usize) -> anyhow::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    let (soft, _) = rlimit::Resource::NOFILE.get()?;
    let needed = users as u64 + SPARE_FILES;
    if needed > soft {
        bail!(
            "{users} users need about {needed} open files but this process may open {soft}; \
             split the run over several load processes (see LOAD_TESTING.md, \"Beyond one process\")"
        );
    }
    Ok(soft)
}
