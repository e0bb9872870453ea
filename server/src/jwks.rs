//! Loads JWKS documents (`--jwks-file`, `--jwks-url`) into the
//! authenticator's key set, at start and then every `--jwks-refresh`, so
//! keys rotate without a restart (`PROTOCOL.md` §2, version 2).
//!
//! A load that fails (unreachable, slow, too big, not a JWKS document)
//! keeps the last good set and is logged. A token naming a `kid` the set
//! lacks asks for an early load, at most one per [`EARLY_LOAD_GAP`]: a
//! client sending random `kid`s cannot make the server hammer the endpoint.
//!
//! The URL is fetched with one plain HTTP/1.0 `GET` (no TLS: `http://`
//! only, as `odin-server health` does), bounded by [`FETCH_TIMEOUT`] and
//! [`MAX_DOCUMENT_BYTES`]; put the JWKS endpoint behind a local proxy for
//! https.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::auth::JwksKeys;
use crate::health_check::split_url;
use crate::keys;

/// How long one fetch of the JWKS URL may take, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document read (headers included); more is refused.
pub const MAX_DOCUMENT_BYTES: usize = 256 << 10;
/// The least time between two loads asked for by unknown `kid`s.
pub const EARLY_LOAD_GAP: Duration = Duration::from_secs(10);

/// Where a JWKS document comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file, read again on every load.
    File(PathBuf),
    /// An `http://host:port/path` URL.
    Url(String),
}

/// How JWKS keys are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// Where the document is.
    pub source: JwksSource,
    /// The time between scheduled loads.
    pub refresh: Duration,
    /// The least time between loads asked for by unknown `kid`s.
    pub early_gap: Duration,
}

impl JwksConfig {
    /// Loads from `source` every `refresh`, early at most every
    /// [`EARLY_LOAD_GAP`].
    pub fn new(source: JwksSource, refresh: Duration) -> Self {
        Self {
            source,
            refresh,
            early_gap: EARLY_LOAD_GAP,
        }
    }
}

/// Why a load failed; the last good set stays.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file cannot be read, or the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The URL is not `http://host:port/path`.
    #[error("{0}: not an http://host:port/path URL")]
    Url(String),
    /// The fetch took longer than [`FETCH_TIMEOUT`].
    #[error("no complete answer within {FETCH_TIMEOUT:?}")]
    TimedOut,
    /// The answer is bigger than [`MAX_DOCUMENT_BYTES`].
    #[error("answer over {MAX_DOCUMENT_BYTES} bytes")]
    TooBig,
    /// Not an HTTP answer, or not `200`.
    #[error("answered {0:?}")]
    Status(String),
    /// Not a JWKS document.
    #[error(transparent)]
    Document(#[from] keys::KeyError),
}

/// Loads the document once into `keys`; returns how many keys it holds.
pub async fn load(source: &JwksSource, into: &JwksKeys) -> Result<usize, JwksError> {
    let document = match source {
        JwksSource::File(path) => tokio::fs::read(path).await?,
        JwksSource::Url(url) => fetch(url).await?,
    };
    let (keys, skipped) = keys::from_jwks(&document)?;
    for warning in skipped {
        tracing::warn!(source = ?source, "{warning}");
    }
    let count = keys.len();
    into.replace(keys);
    Ok(count)
}

/// Loads on schedule and on unknown `kid`s until `stop`.
pub async fn keep_loading(config: JwksConfig, into: Arc<JwksKeys>, stop: CancellationToken) {
    let mut next = Instant::now() + config.refresh;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = into.unknown_kid() => {
                // Rate-limited: wait out the gap since the last load (kids
                // asked meanwhile are answered by this one load).
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(last + config.early_gap) => {}
                }
            }
        }
        match load(&config.source, &into).await {
            Ok(count) => tracing::debug!(source = ?config.source, keys = count, "JWKS loaded"),
            Err(e) => {
                tracing::warn!(source = ?config.source, error = %e, "JWKS load failed; keeping the last good keys")
            }
        }
        last = Instant::now();
        next = last + config.refresh;
    }
}

/// One bounded `GET` of `url`: the body of a `200` answer.
async fn fetch(url: &str) -> Result<Vec<u8>, JwksError> {
    let (authority, path) = split_url(url).ok_or_else(|| JwksError::Url(url.to_owned()))?;
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        // HTTP/1.0: the answer is never chunked and ends when the server
        // closes, so reading to the end (bounded) is the whole parser.
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(MAX_DOCUMENT_BYTES as u64 + 1)
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| JwksError::TimedOut)??;
    if answer.len() > MAX_DOCUMENT_BYTES {
        return Err(JwksError::TooBig);
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| JwksError::Status("no end of headers".into()))?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or_default();
    match status.split(' ').nth(1) {
        Some("200") if status.starts_with("HTTP/") => Ok(answer[split + 4..].to_vec()),
        _ => Err(JwksError::Status(status.to_owned())),
    }
}
