//! The library's errors: each says, in one line, which setting or resource
//! failed and why, so the binary can print it and exit non-zero. Errors with
//! an I/O cause keep it as their `source` (print with `{:#}` for the chain).

use std::path::PathBuf;
use std::time::Duration;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {setting}: {reason}")]
pub struct ConfigError {
    /// The flag, e.g. `--rate`.
    pub setting: &'static str,
    /// Why, including the value given.
    pub reason: String,
}

/// Why a publisher run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// NATS could not be reached before the connect timeout.
    #[error("cannot reach NATS at {url} within {}: {reason}", humantime::format_duration(*.timeout))]
    Connect {
        /// The URL tried.
        url: String,
        /// How long we tried.
        timeout: Duration,
        /// The last connection error.
        reason: String,
    },
    /// The recording to replay cannot be opened or read.
    #[error("cannot read recording {}", .path.display())]
    ReplayIo {
        /// The recording.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of the recording is not a recorded event.
    #[error("recording {} line {line}: {reason}", .path.display())]
    ReplayLine {
        /// The recording.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The recording being written cannot be created or written.
    #[error("cannot write recording {}", .path.display())]
    Record {
        /// The recording.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The NATS client is gone (closed), so nothing more can be published.
    #[error("NATS client closed: {0}")]
    ClientClosed(String),
}
