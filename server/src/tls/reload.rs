//! When the certificate is read again: on SIGHUP at once, and when its
//! files change, looked at every [`POLL_EVERY`]. A change is loaded once the
//! files have stayed the same for one more look, so a certificate and key
//! written one after the other are not loaded half-way (the new chain with
//! the old key would be refused and counted as a failure).

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::{Reload, Tls};
use crate::metrics::Metrics;

/// How often the files are looked at.
pub(crate) const POLL_EVERY: Duration = Duration::from_secs(1);

/// Reloads `tls` on SIGHUP and on file changes until `shutdown`.
pub(crate) async fn watch(tls: Arc<Tls>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: the certificate reloads on file changes only");
            None
        }
    };
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = None;
    loop {
        let hangup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        let force = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hangup => true,
            _ = poll.tick() => false,
        };
        if !force {
            // Loaded only once two looks a second apart agree.
            let changed = tls.changed_on_disk();
            let settled = changed.is_some() && changed == pending;
            pending = changed;
            if !settled {
                continue;
            }
        }
        pending = None;
        let why = if force { "SIGHUP" } else { "files changed" };
        match tls.reload(force) {
            Reload::Unchanged => {}
            Reload::Loaded => {
                metrics.tls_reloads.inc();
                tracing::info!(
                    trigger = why,
                    "TLS certificate reloaded: new connections get it"
                );
            }
            Reload::Failed(e) => {
                metrics.tls_reload_failures.inc();
                tracing::error!(trigger = why, error = %e, "TLS certificate reload failed; still serving the previous one");
            }
        }
    }
}
