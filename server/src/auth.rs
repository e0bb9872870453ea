//! Token checks for the upgrade request (`PROTOCOL.md` §2) and a token minter
//! for development and tests.
//!
//! The algorithm is pinned by configuration: a token whose header names any
//! other algorithm (`none` included) is refused, and so is a header with a
//! `crit` parameter (RFC 7515 §4.1.11: Odin understands no extension). A
//! non-empty `sub` and an `exp` are required, `aud` and `iss` checked only
//! when configured, and there is no clock leeway: a token is expired from the
//! second of its `exp`. Nothing a signed token carries can overflow the
//! server's clock arithmetic: an `exp` past the year 9999 is read as then.
//!
//! Keys (`PROTOCOL.md` §2, version 2): the HMAC secret or a PEM public key,
//! both pinned by `--jwt-algorithm`, and JWKS keys, each pinned by its own
//! `alg` ([`crate::keys`]). A token's `kid` picks a JWKS key; a `kid` no
//! JWKS key has, or none, falls back to the keys without a `kid`, and is
//! accepted only when exactly one key is pinned to the token's algorithm.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use odin_protocol::message::AuthErrorCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::keys::{self, KeyError, VerifyKey};

/// The secret development mode uses when none is given. Never accepted
/// outside development mode.
pub const DEV_SECRET: &str = "odin-development-secret-do-not-use-in-production";

/// The shortest secret accepted outside development mode, in bytes: as long
/// as an HS256 digest (RFC 7518 §3.2 asks at least that much key).
pub const MIN_SECRET_BYTES: usize = 32;

/// The latest expiry a token can have, 9999-12-31T23:59:59Z in seconds since
/// the epoch; a later `exp` is read as this, so no claim can overflow the
/// arithmetic on `SystemTime` or `Instant`.
pub const MAX_EXP_SECS: u64 = 253_402_300_799;

/// The algorithms a deployment can pin for its secret (HMAC) or its PEM
/// public key (the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 (the default).
    #[value(name = "HS256")]
    Hs256,
    /// HMAC with SHA-384.
    #[value(name = "HS384")]
    Hs384,
    /// HMAC with SHA-512.
    #[value(name = "HS512")]
    Hs512,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (a PEM RSA public key).
    #[value(name = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256 (a PEM EC public key).
    #[value(name = "ES256")]
    Es256,
    /// Ed25519 (a PEM Ed25519 public key).
    #[value(name = "EdDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    /// The algorithm as the JWT library names it.
    pub fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Hs384 => Algorithm::HS384,
            JwtAlgorithm::Hs512 => Algorithm::HS512,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    /// Whether it takes the shared secret (else a public key).
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::Hs256 | JwtAlgorithm::Hs384 | JwtAlgorithm::Hs512
        )
    }
}

/// How tokens are checked.
#[derive(Clone)]
pub struct AuthConfig {
    /// The shared HMAC secret; empty when the pinned algorithm is not HMAC.
    pub secret: Vec<u8>,
    /// The one algorithm of the secret or of `public_key`.
    pub algorithm: JwtAlgorithm,
    /// A PEM public key (`--jwt-public-key`), pinned to `algorithm`.
    pub public_key: Option<Box<[u8]>>,
    /// A PEM private key tokens are minted with instead of the secret (the
    /// `token` utility and tests; the server never needs one).
    pub private_key: Option<Box<[u8]>>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("public_key", &self.public_key.is_some())
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<redacted>"),
            )
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl AuthConfig {
    /// HS256 with the built-in development secret.
    pub fn development() -> Self {
        Self::with_secret(DEV_SECRET)
    }

    /// HS256 with `secret`.
    pub fn with_secret(secret: impl AsRef<[u8]>) -> Self {
        Self {
            secret: secret.as_ref().to_vec(),
            algorithm: JwtAlgorithm::Hs256,
            public_key: None,
            private_key: None,
            audience: None,
            issuer: None,
        }
    }
}

/// The claims Odin reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the client is.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// What the server reads of a token it accepted. Only `sub` and `exp` are
/// typed: `aud` (a string or an array, RFC 7519 §4.1.3) and `iss` are
/// checked by the JWT library when configured and ignored otherwise,
/// whatever their JSON type, and `exp` may carry a fraction (a NumericDate).
#[derive(Debug, Clone, Deserialize)]
struct ReadClaims {
    sub: String,
    exp: f64,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Who the client is (`sub`).
    pub sub: String,
    /// From when the token is expired (`exp`, its fraction dropped).
    pub expires_at: SystemTime,
}

/// Why a token was refused, mapped onto the protocol's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or an empty one.
    #[error("missing token: pass ?token=<jwt> or an Authorization: Bearer header")]
    Missing,
    /// Malformed, badly signed, wrong algorithm, missing claims, wrong aud/iss.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
}

/// The keys of JWKS documents, replaced whole on each successful load (so a
/// rotation needs no restart), and the signal that a token named a `kid`
/// none of them has (the loader may then look again early, rate-limited).
#[derive(Default)]
pub struct JwksKeys {
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    unknown_kid: Notify,
}

impl JwksKeys {
    /// Replaces the keys with a freshly loaded set.
    pub fn replace(&self, keys: Vec<VerifyKey>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// The current keys.
    pub fn current(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resolves when a token named a `kid` no current key has.
    pub async fn unknown_kid(&self) {
        self.unknown_kid.notified().await;
    }
}

impl AuthError {
    /// The protocol's code for this refusal.
    pub fn code(&self) -> AuthErrorCode {
        match self {
            AuthError::Missing => AuthErrorCode::AuthMissing,
            AuthError::Invalid(_) => AuthErrorCode::AuthInvalid,
            AuthError::Expired => AuthErrorCode::AuthExpired,
        }
    }
}

/// Checks tokens against one pinned configuration; built once, shared by
/// every handshake.
pub struct Authenticator {
    /// The secret or the PEM key: no `kid`, pinned by configuration.
    fixed: Vec<VerifyKey>,
    /// Keys from JWKS documents, once a loader fills them.
    jwks: Arc<JwksKeys>,
    validation: Validation,
}

impl Authenticator {
    /// A checker for `config`; fails on a PEM key that does not parse.
    pub fn try_new(config: &AuthConfig) -> Result<Self, KeyError> {
        let algorithm = config.algorithm.to_jwt();
        let mut fixed = Vec::new();
        if config.algorithm.is_hmac() && !config.secret.is_empty() {
            fixed.push(VerifyKey {
                kid: None,
                algorithm,
                key: DecodingKey::from_secret(&config.secret),
            });
        }
        if let Some(pem) = &config.public_key {
            fixed.push(keys::from_pem(pem, algorithm)?);
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = 0;
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            fixed,
            jwks: Arc::default(),
            validation,
        })
    }

    /// A checker for `config`, whose PEM key (if any) is known to parse
    /// (configuration checked it).
    pub fn new(config: &AuthConfig) -> Self {
        Self::try_new(config).expect("the configured public key was checked at start-up")
    }

    /// Where JWKS loaders put their keys.
    pub fn jwks(&self) -> Arc<JwksKeys> {
        self.jwks.clone()
    }

    /// The key `header` asks for: a JWKS key by `kid`, else the one key
    /// pinned to its algorithm (a `kid` no JWKS key has falls back so).
    fn select(&self, header: &Header) -> Result<VerifyKey, AuthError> {
        let jwks = self.jwks.current();
        if let Some(kid) = &header.kid {
            if let Some(key) = jwks.iter().find(|k| k.kid.as_ref() == Some(kid)) {
                return Ok(key.clone());
            }
            // Perhaps a key published since the last load: a loader may
            // look again (it rate-limits itself; nobody listens without one).
            self.jwks.unknown_kid.notify_one();
        }
        // A token without a `kid` may use any key; one whose `kid` no JWKS
        // key has, only the keys that have none.
        let any_jwks_key = header.kid.is_none();
        let mut pinned = self
            .fixed
            .iter()
            .chain(jwks.iter().filter(|_| any_jwks_key))
            .filter(|k| k.algorithm == header.alg);
        match (pinned.next(), pinned.next()) {
            (Some(key), None) => Ok(key.clone()),
            (None, _) if header.kid.is_some() => Err(AuthError::Invalid("unknown key id".into())),
            (None, _) => Err(AuthError::Invalid("algorithm not accepted".into())),
            (Some(_), Some(_)) => Err(AuthError::Invalid(
                "several keys take this algorithm: the token needs a kid".into(),
            )),
        }
    }

    /// Checks `token` at the current time.
    pub fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        self.verify_at(token, SystemTime::now())
    }

    /// Checks `token` as of `now` (the library also checks `exp` against the
    /// real clock; `now` adds the protocol's "expired from the second of its
    /// `exp`" rule on top).
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<Verified, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName => AuthError::Invalid("algorithm not accepted".into()),
            _ => AuthError::Invalid("malformed token".into()),
        })?;
        let key = self.select(&header)?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.algorithm];
        let data = jsonwebtoken::decode::<ReadClaims>(token, &key.key, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::Invalid("algorithm not accepted".into())
                }
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Invalid(format!("missing required claim {c:?}"))
                }
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
                _ => AuthError::Invalid("malformed token".into()),
            },
        )?;
        if data.header.crit.is_some() {
            return Err(AuthError::Invalid(
                "critical header extensions are not understood".into(),
            ));
        }
        let ReadClaims { sub, exp } = data.claims;
        if sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".into()));
        }
        // Expired from the second of `exp` on, a fraction dropped: an `exp`
        // of 100.5 is expired at 100.0 (the library alone rounds it up).
        // The library checked that `exp` is a non-negative finite number;
        // the float-to-integer cast saturates, and the cap keeps the
        // additions below (and the connection's deadline) in range.
        let exp_secs = (exp.max(0.0).floor() as u64).min(MAX_EXP_SECS);
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if exp_secs <= now_secs {
            return Err(AuthError::Expired);
        }
        let expires_at = UNIX_EPOCH + Duration::from_secs(exp_secs);
        Ok(Verified { sub, expires_at })
    }
}

/// Signs a token for `sub` valid for `ttl` under `config` (for `odin-server
/// token`, `make auth-token` and tests).
pub fn mint_token(config: &AuthConfig, sub: &str, ttl: Duration) -> String {
    mint_token_with_kid(config, None, sub, ttl)
}

/// [`mint_token`] with `kid` in the header (a JWKS key's id).
pub fn mint_token_with_kid(
    config: &AuthConfig,
    kid: Option<&str>,
    sub: &str,
    ttl: Duration,
) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now.saturating_add(ttl.as_secs().max(1)).min(MAX_EXP_SECS),
        iat: Some(now),
        aud: config.audience.clone(),
        iss: config.issuer.clone(),
    };
    sign_with_kid(config, kid, &claims)
}

/// Signs arbitrary `claims` under `config` (tests use it for edge cases):
/// with its private key when it has one, else with its secret.
pub fn sign<T: Serialize>(config: &AuthConfig, claims: &T) -> String {
    sign_with_kid(config, None, claims)
}

/// Signs `claims` under `config` with `kid` in the header.
pub fn sign_with_kid<T: Serialize>(config: &AuthConfig, kid: Option<&str>, claims: &T) -> String {
    let algorithm = config.algorithm.to_jwt();
    let key = match &config.private_key {
        Some(pem) => signing_key(pem, config.algorithm)
            .unwrap_or_else(|e| panic!("the private key cannot sign {algorithm:?}: {e}")),
        None => EncodingKey::from_secret(&config.secret),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).expect("signing with a parsed key cannot fail")
}

/// A PEM private key for `algorithm` (`odin-server token --jwt-private-key`).
pub fn signing_key(pem: &[u8], algorithm: JwtAlgorithm) -> Result<EncodingKey, String> {
    match algorithm {
        JwtAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
        JwtAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
        _ => return Err(format!("{algorithm:?} takes a secret, not a private key")),
    }
    .map_err(|e| e.to_string())
}

/// Picks the token from an upgrade request: a non-empty `?token=` wins over
/// `Authorization: Bearer`; an empty `?token=` counts as missing.
pub fn token_from_request(query: Option<&str>, authorization: Option<&[u8]>) -> Option<String> {
    let from_query = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty())
    });
    from_query.or_else(|| {
        let value = std::str::from_utf8(authorization?).ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
    })
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
