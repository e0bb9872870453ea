//! The public keys tokens may be signed with, beside the HMAC secret: a PEM
//! file pinned to one algorithm, and JWKS documents (RFC 7517) whose keys
//! each pin their own algorithm by `alg` and are picked by `kid`.
//!
//! A JWKS key without `alg`, of a type or algorithm Odin does not verify
//! with (encryption keys, `use: "enc"`), or that does not parse is skipped
//! with a warning; the rest of the document still counts. So a key is never
//! used with an algorithm its publisher did not name.

use std::str::FromStr;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One key a token may be checked with, pinned to one algorithm.
#[derive(Clone)]
pub struct VerifyKey {
    /// The JWKS `kid`; `None` for the secret and a PEM file's key.
    pub kid: Option<String>,
    /// The one algorithm this key accepts.
    pub algorithm: Algorithm,
    /// The key itself.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A key file or document that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM does not hold a public key of the pinned algorithm's family.
    #[error("not a {algorithm:?} public key in PEM form: {reason}")]
    Pem {
        /// The pinned algorithm.
        algorithm: Algorithm,
        /// What the parser said.
        reason: String,
    },
    /// The pinned algorithm takes a secret (HMAC), not a key file.
    #[error("{0:?} takes --jwt-secret, not a public key")]
    NotAsymmetric(Algorithm),
    /// The JWKS document is not a JSON object with a `keys` array.
    #[error("not a JWKS document (a JSON object with a \"keys\" array): {0}")]
    Jwks(String),
}

/// The key of a PEM file (`--jwt-public-key`), pinned to `algorithm`.
pub fn from_pem(pem: &[u8], algorithm: Algorithm) -> Result<VerifyKey, KeyError> {
    use Algorithm::*;
    let parsed = match algorithm {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
        ES256 | ES384 => DecodingKey::from_ec_pem(pem),
        EdDSA => DecodingKey::from_ed_pem(pem),
        _ => return Err(KeyError::NotAsymmetric(algorithm)),
    };
    let key = parsed.map_err(|e| KeyError::Pem {
        algorithm,
        reason: e.to_string(),
    })?;
    Ok(VerifyKey {
        kid: None,
        algorithm,
        key,
    })
}

/// The usable keys of a JWKS document, and a warning for each skipped one.
pub fn from_jwks(document: &[u8]) -> Result<(Vec<VerifyKey>, Vec<String>), KeyError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document =
        serde_json::from_slice(document).map_err(|e| KeyError::Jwks(e.to_string()))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, raw) in doc.keys.into_iter().enumerate() {
        match one_jwk(raw) {
            Ok(key) => keys.push(key),
            Err(why) => skipped.push(format!("JWKS key {i}: {why}; skipped")),
        }
    }
    Ok((keys, skipped))
}

fn one_jwk(raw: serde_json::Value) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|e| format!("unreadable ({e})"))?;
    let kid = jwk.common.key_id.clone();
    let name = kid.as_deref().unwrap_or("(no kid)");
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err(format!("{name} is an encryption key"));
    }
    let Some(alg) = jwk.common.key_algorithm else {
        return Err(format!("{name} has no \"alg\" to pin"));
    };
    let algorithm = Algorithm::from_str(&alg.to_string())
        .map_err(|_| format!("{name} has \"alg\" {alg}, not a signature algorithm"))?;
    if matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(format!(
            "{name} is a symmetric key; JWKS keys must be public"
        ));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{name}: {e}"))?;
    Ok(VerifyKey {
        kid,
        algorithm,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_keys_without_alg_or_for_encryption_are_skipped_and_the_rest_kept() {
        // An Ed25519 public key (RFC 8037 §A.2's example).
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let doc = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "good", "alg": "EdDSA"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "no-alg"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "enc", "alg": "EdDSA", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym", "alg": "HS256"},
            {"kty": "what"},
        ]});
        let (keys, skipped) = from_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("good"));
        assert_eq!(keys[0].algorithm, Algorithm::EdDSA);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(from_jwks(b"[]").is_err());
        assert!(from_jwks(b"{}").is_err());
    }

    #[test]
    fn a_pem_must_match_its_pinned_family() {
        assert!(matches!(
            from_pem(b"x", Algorithm::HS256),
            Err(KeyError::NotAsymmetric(_))
        ));
        assert!(matches!(
            from_pem(b"not pem", Algorithm::RS256),
            Err(KeyError::Pem { .. })
        ));
    }
}
