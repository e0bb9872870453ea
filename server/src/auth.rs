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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use odin_protocol::message::AuthErrorCode;
use serde::{Deserialize, Serialize};

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

/// The HMAC algorithms a deployment can pin.
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
}

impl JwtAlgorithm {
    fn to_jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Hs384 => Algorithm::HS384,
            JwtAlgorithm::Hs512 => Algorithm::HS512,
        }
    }
}

/// How tokens are checked.
#[derive(Clone)]
pub struct AuthConfig {
    /// The shared HMAC secret.
    pub secret: Vec<u8>,
    /// The one accepted algorithm.
    pub algorithm: JwtAlgorithm,
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
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    /// A checker for `config`.
    pub fn new(config: &AuthConfig) -> Self {
        let mut validation = Validation::new(config.algorithm.to_jwt());
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
        Self {
            key: DecodingKey::from_secret(&config.secret),
            validation,
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
        let data = jsonwebtoken::decode::<ReadClaims>(token, &self.key, &self.validation).map_err(
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
    sign(config, &claims)
}

/// Signs arbitrary `claims` under `config` (tests use it for edge cases).
pub fn sign<T: Serialize>(config: &AuthConfig, claims: &T) -> String {
    jsonwebtoken::encode(
        &Header::new(config.algorithm.to_jwt()),
        claims,
        &EncodingKey::from_secret(&config.secret),
    )
    .expect("HMAC signing with a byte secret cannot fail")
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
mod tests {
    use super::*;
    use serde_json::json;

    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn accepts_a_good_token_and_refuses_each_bad_kind() {
        let cfg = AuthConfig::with_secret("s3cret");
        let auth = Authenticator::new(&cfg);
        let good = mint_token(&cfg, "alice", Duration::from_secs(60));
        assert_eq!(auth.verify(&good).unwrap().sub, "alice");

        let other = mint_token(
            &AuthConfig::with_secret("other"),
            "a",
            Duration::from_secs(60),
        );
        assert_eq!(
            auth.verify(&other).unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );

        let no_sub = sign(&cfg, &json!({"exp": now_secs() + 60}));
        assert_eq!(
            auth.verify(&no_sub).unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );
        let no_exp = sign(&cfg, &json!({"sub": "a"}));
        assert_eq!(
            auth.verify(&no_exp).unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );

        let expired = sign(&cfg, &json!({"sub": "a", "exp": now_secs() - 1}));
        assert_eq!(auth.verify(&expired).unwrap_err(), AuthError::Expired);
        assert_eq!(auth.verify("").unwrap_err(), AuthError::Missing);
        assert_eq!(
            auth.verify("a.b.c").unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );
    }

    #[test]
    fn refuses_crit_headers_and_an_empty_sub() {
        let cfg = AuthConfig::with_secret("s3cret");
        let auth = Authenticator::new(&cfg);
        let claims = json!({"sub": "a", "exp": now_secs() + 60});
        let mut header = Header::new(Algorithm::HS256);
        let plain =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&cfg.secret)).unwrap();
        assert!(auth.verify(&plain).is_ok());
        header.crit = Some(vec!["exp-ext".into()]);
        let with_crit =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&cfg.secret)).unwrap();
        assert_eq!(
            auth.verify(&with_crit).unwrap_err(),
            AuthError::Invalid("critical header extensions are not understood".into())
        );
        header.crit = None;
        header.kid = Some("k1".into());
        let with_kid =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&cfg.secret)).unwrap();
        assert!(
            auth.verify(&with_kid).is_ok(),
            "other header fields are fine"
        );

        let empty_sub = sign(&cfg, &json!({"sub": "", "exp": now_secs() + 60}));
        assert_eq!(
            auth.verify(&empty_sub).unwrap_err(),
            AuthError::Invalid("empty sub".into())
        );
    }

    #[test]
    fn an_exp_beyond_the_year_9999_is_read_as_then() {
        let cfg = AuthConfig::with_secret("s");
        let auth = Authenticator::new(&cfg);
        let last = UNIX_EPOCH + Duration::from_secs(MAX_EXP_SECS);
        for exp in [
            json!(MAX_EXP_SECS),
            json!(MAX_EXP_SECS + 1),
            json!(9_300_000_000_000_000_000_u64),
            json!(u64::MAX),
        ] {
            let t = sign(&cfg, &json!({"sub": "a", "exp": exp}));
            let verified = auth.verify(&t).unwrap();
            assert_eq!(verified.expires_at, last, "exp {exp}");
            // What the connection does with it: no overflow.
            let left = verified
                .expires_at
                .duration_since(SystemTime::now())
                .unwrap();
            assert!(std::time::Instant::now().checked_add(left).is_some());
        }
        // A number no u64 holds is no valid `exp` at all.
        let huge = sign(&cfg, &json!({"sub": "a", "exp": 1e300}));
        assert_eq!(
            auth.verify(&huge).unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );
        let longest = mint_token(&cfg, "a", Duration::from_secs(u64::MAX));
        assert_eq!(auth.verify(&longest).unwrap().expires_at, last);
    }

    #[test]
    fn expired_from_the_second_of_exp() {
        let cfg = AuthConfig::with_secret("s");
        let auth = Authenticator::new(&cfg);
        let exp = now_secs() + 100;
        let t = sign(&cfg, &json!({"sub": "a", "exp": exp}));
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert!(auth.verify_at(&t, at(exp - 1)).is_ok());
        assert_eq!(auth.verify_at(&t, at(exp)).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn claims_follow_rfc_7519_types() {
        let exp = now_secs() + 100;
        let open = AuthConfig::with_secret("s");
        let auth = Authenticator::new(&open);
        // Unconfigured aud and iss are ignored whatever their JSON type.
        for extra in [
            json!({"aud": ["app-a", "app-b"]}),
            json!({"aud": 5}),
            json!({"iss": 5}),
            json!({"aud": null, "iss": {"x": 1}}),
        ] {
            let mut claims = json!({"sub": "a", "exp": exp});
            claims
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let t = sign(&open, &claims);
            assert_eq!(
                auth.verify(&t).map(|v| v.sub),
                Ok("a".to_owned()),
                "{claims}"
            );
        }
        // A configured audience matches one entry of an array.
        let mut strict = AuthConfig::with_secret("s");
        strict.audience = Some("odin-clients".into());
        let auth = Authenticator::new(&strict);
        let one_of = sign(
            &strict,
            &json!({"sub": "a", "exp": exp, "aud": ["x", "odin-clients"]}),
        );
        assert!(auth.verify(&one_of).is_ok());
        let none_of = sign(&strict, &json!({"sub": "a", "exp": exp, "aud": ["x", "y"]}));
        assert_eq!(
            auth.verify(&none_of).unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );
        // `exp` may have a fraction; it is expired from its whole second.
        let auth = Authenticator::new(&open);
        let t = sign(&open, &json!({"sub": "a", "exp": exp as f64 + 0.5}));
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let verified = auth.verify_at(&t, at(exp - 1)).unwrap();
        assert_eq!(verified.expires_at, at(exp));
        assert_eq!(auth.verify_at(&t, at(exp)).unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn refuses_alg_none_and_other_algorithms() {
        let cfg = AuthConfig::with_secret("s");
        let auth = Authenticator::new(&cfg);
        let body = base64_url(&json!({"sub": "a", "exp": now_secs() + 60}).to_string());
        let none = format!("{}.{body}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(
            auth.verify(&none).unwrap_err().code(),
            AuthErrorCode::AuthInvalid
        );
        let hs512 = AuthConfig {
            algorithm: JwtAlgorithm::Hs512,
            ..cfg.clone()
        };
        let t = mint_token(&hs512, "a", Duration::from_secs(60));
        assert_eq!(
            auth.verify(&t).unwrap_err(),
            AuthError::Invalid("algorithm not accepted".into())
        );
    }

    fn base64_url(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |acc, &x| acc << 8 | x as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn query_token_wins_and_empty_counts_as_missing() {
        assert_eq!(
            token_from_request(Some("token=q"), Some(b"Bearer h")),
            Some("q".into())
        );
        assert_eq!(
            token_from_request(Some("token="), Some(b"Bearer h")),
            Some("h".into())
        );
        assert_eq!(token_from_request(Some("token="), None), None);
        assert_eq!(
            token_from_request(None, Some(b"bearer  h ")),
            Some("h".into())
        );
        assert_eq!(token_from_request(None, Some(b"Basic h")), None);
        assert_eq!(
            token_from_request(Some("a=1&token=x%2Ey"), None),
            Some("x.y".into())
        );
    }
}
