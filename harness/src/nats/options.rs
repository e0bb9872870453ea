//! How to start a NATS server ([`NatsOptions`]), how long it may take, and
//! which backend ended up running it ([`Backend`]).

use std::path::PathBuf;
use std::time::Duration;

use super::select::BackendChoice;

/// How long a server may take to become ready before `start` gives up.
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The backend actually running a server (what `auto` resolved to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A local `nats-server` child process.
    Binary,
    /// A Docker container started through `testcontainers`.
    Container,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Binary => "binary",
            Backend::Container => "container",
        })
    }
}

/// How to start a server; `Default` is a plain server, backend from the
/// environment.
#[derive(Debug, Default, Clone)]
pub struct NatsOptions {
    /// Enable JetStream (`-js`), its store in the guard's temporary dir
    /// (binary) or in the container; it survives `stop`/`restart`.
    pub jetstream: bool,
    /// Which backend; `None` reads `ODIN_NATS_BACKEND` (default `auto`).
    pub backend: Option<BackendChoice>,
    /// Container image as `name:tag`; `None` reads `ODIN_NATS_IMAGE`
    /// (default [`super::DEFAULT_IMAGE`]). Ignored by the binary backend.
    pub image: Option<String>,
    /// The `nats-server` executable; `None` looks at `NATS_SERVER_BIN`, then
    /// `PATH`. Ignored by the container backend.
    pub binary: Option<PathBuf>,
    /// Extra command-line arguments passed to `nats-server` as they are
    /// (e.g. `["-D"]` for debug logs, `["--max_payload", "1MB"]`).
    pub extra_args: Vec<String>,
    /// How long to wait for readiness; `None` is 10 s (binary) or 60 s
    /// (container).
    pub ready_timeout: Option<Duration>,
}
