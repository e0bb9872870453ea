//! The token settings: the flags the server and `odin-server token` share
//! ([`JwtArgs`]: secret, algorithm, public key, JWKS, claims), and the
//! `token` utility's own ([`TokenArgs`]: a private key, a `kid`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::check::{ConfigError, positive_duration};
use crate::auth::{AuthConfig, JwtAlgorithm, MIN_SECRET_BYTES};
use crate::jwks::{JwksConfig, JwksSource};

/// JWT settings shared by the server and the `token` utility.
#[derive(Debug, Args, Clone)]
pub struct JwtArgs {
    /// Shared secret for HMAC tokens. Required outside development mode.
    #[arg(long, env = "ODIN_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// The one algorithm tokens must use; any other (`none` included) is refused.
    #[arg(long, env = "ODIN_JWT_ALGORITHM", value_enum, default_value_t = JwtAlgorithm::Hs256)]
    pub jwt_algorithm: JwtAlgorithm,
    /// A PEM public key tokens may be signed with, pinned by
    /// --jwt-algorithm (RS256, ES256 or EdDSA) instead of the secret.
    #[arg(long, env = "ODIN_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS document (RFC 7517) of public keys, picked by a token's `kid`;
    /// each key's `alg` pins its algorithm. Re-read every --jwks-refresh.
    #[arg(long, env = "ODIN_JWKS_FILE", conflicts_with = "jwks_url")]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS document fetched over http:// (kept when a fetch fails).
    #[arg(long, env = "ODIN_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// How often the JWKS document is loaded again (e.g. `5m`).
    #[arg(long, env = "ODIN_JWKS_REFRESH", default_value = "5m", value_parser = positive_duration)]
    pub jwks_refresh: Duration,
    /// Required `aud` claim; not checked when unset.
    #[arg(long, env = "ODIN_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim; not checked when unset.
    #[arg(long, env = "ODIN_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Development mode: allows the built-in secret (and says so loudly).
    #[arg(long, env = "ODIN_DEV", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub dev: bool,
}

impl JwtArgs {
    /// The auth settings, refusing to run without a secret, or with one
    /// shorter than [`MIN_SECRET_BYTES`], outside development mode.
    pub fn auth_config(&self) -> Result<AuthConfig, ConfigError> {
        let hmac = self.jwt_algorithm.is_hmac();
        let public_key = match &self.jwt_public_key {
            Some(_) if hmac => return Err(ConfigError::PublicKeyNeedsAlgorithm),
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| ConfigError::Key {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                    .into_boxed_slice(),
            ),
            None if !hmac => return Err(ConfigError::AlgorithmNeedsPublicKey),
            None => None,
        };
        let has_jwks = self.jwks_file.is_some() || self.jwks_url.is_some();
        let secret = match (&self.jwt_secret, self.dev) {
            (Some(_), _) if !hmac => return Err(ConfigError::PublicKeyNeedsAlgorithm),
            (Some(s), _) if s.is_empty() => return Err(ConfigError::EmptySecret),
            (Some(s), false) if s.len() < MIN_SECRET_BYTES => {
                return Err(ConfigError::ShortSecret(s.len()));
            }
            (Some(s), _) => s.as_bytes().to_vec(),
            // Keys alone are enough.
            (None, _) if !hmac || has_jwks => Vec::new(),
            (None, true) => crate::auth::DEV_SECRET.as_bytes().to_vec(),
            (None, false) => return Err(ConfigError::MissingSecret),
        };
        let config = AuthConfig {
            secret,
            algorithm: self.jwt_algorithm,
            public_key,
            private_key: None,
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
        };
        crate::auth::Authenticator::try_new(&config).map_err(|e| ConfigError::Key {
            path: self.jwt_public_key.clone().unwrap_or_default(),
            reason: e.to_string(),
        })?;
        Ok(config)
    }

    /// Where JWKS keys come from, when a file or URL is given.
    pub fn jwks_config(&self) -> Option<JwksConfig> {
        let source = match (&self.jwks_file, &self.jwks_url) {
            (Some(path), _) => JwksSource::File(path.clone()),
            (None, Some(url)) => JwksSource::Url(url.clone()),
            (None, None) => return None,
        };
        Some(JwksConfig::new(source, self.jwks_refresh))
    }

    /// Whether the built-in development secret is in use.
    pub fn uses_dev_secret(&self) -> bool {
        self.dev && self.jwt_secret.is_none()
    }
}

/// Flags of `odin-server token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token's subject (`sub`).
    #[arg(long, default_value = "dev-user")]
    pub sub: String,
    /// How long the token is valid (e.g. `1h`, `30s`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// JWT settings (the same as the server's).
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// Sign with this PEM private key (for --jwt-algorithm RS256, ES256 or
    /// EdDSA) instead of the secret; for tests and development.
    #[arg(long, env = "ODIN_JWT_PRIVATE_KEY")]
    pub jwt_private_key: Option<PathBuf>,
    /// The `kid` header of the token (a JWKS key's id).
    #[arg(long)]
    pub kid: Option<String>,
}

impl TokenArgs {
    /// The settings to sign with: the server's, plus the private key.
    pub fn auth_config(&self) -> Result<AuthConfig, ConfigError> {
        let Some(path) = &self.jwt_private_key else {
            return self.jwt.auth_config();
        };
        let read_error = |reason: String| ConfigError::Key {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| read_error(e.to_string()))?;
        crate::auth::signing_key(&pem, self.jwt.jwt_algorithm).map_err(read_error)?;
        Ok(AuthConfig {
            secret: Vec::new(),
            algorithm: self.jwt.jwt_algorithm,
            public_key: None,
            private_key: Some(pem.into_boxed_slice()),
            audience: self.jwt.jwt_audience.clone(),
            issuer: self.jwt.jwt_issuer.clone(),
        })
    }
}
