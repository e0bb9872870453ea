//! What a setting must be: the one-line error of a setting that cannot
//! work ([`ConfigError`]), and the value parsers flags share.

use std::path::PathBuf;
use std::time::Duration;

use crate::auth::MIN_SECRET_BYTES;

/// A setting that cannot work, with the one line that says why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No secret outside development mode.
    #[error(
        "--jwt-secret (ODIN_JWT_SECRET) is required outside development mode; pass --dev (ODIN_DEV=1) to use the built-in development secret"
    )]
    MissingSecret,
    /// An empty secret.
    #[error("--jwt-secret (ODIN_JWT_SECRET) is empty")]
    EmptySecret,
    /// A secret too short to resist guessing, outside development mode.
    #[error(
        "--jwt-secret (ODIN_JWT_SECRET) has {0} bytes; at least {MIN_SECRET_BYTES} are required outside development mode (e.g. `openssl rand -hex 32`)"
    )]
    ShortSecret(usize),
    /// A public key with an HMAC algorithm, or a secret with another.
    #[error(
        "--jwt-algorithm (ODIN_JWT_ALGORITHM) HS256/HS384/HS512 pins --jwt-secret; RS256/ES256/EdDSA pin --jwt-public-key; give the one its algorithm takes"
    )]
    PublicKeyNeedsAlgorithm,
    /// An asymmetric algorithm without a key.
    #[error(
        "--jwt-algorithm (ODIN_JWT_ALGORITHM) RS256/ES256/EdDSA needs --jwt-public-key (ODIN_JWT_PUBLIC_KEY)"
    )]
    AlgorithmNeedsPublicKey,
    /// A key file that cannot be read or does not parse.
    #[error("key file {path:?}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A prefix with wildcards or empty parts.
    #[error("--subject-prefix (ODIN_SUBJECT_PREFIX): {0}")]
    Prefix(#[from] odin_protocol::subject::InvalidPrefix),
    /// A server id that is not a plain identifier.
    #[error("--server-id (ODIN_SERVER_ID) must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    ServerId,
    /// A stream name JetStream would refuse (or that would be a subject).
    #[error(
        "--last-prices-stream (ODIN_LAST_PRICES_STREAM) must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"
    )]
    LastPricesStream,
}

/// A duration flag's parser: `humantime`, and never zero.
pub(crate) fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}
