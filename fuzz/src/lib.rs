//! Helpers the fuzz targets share: a reference grammar written from
//! PROTOCOL.md (not from the code under test), a JSON comparison that allows
//! the last bits of a float to differ, and an HMAC signer for fuzzed JWTs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;

/// `^[A-Za-z0-9_-]{1,64}$` (PROTOCOL.md §1), spelled out character by
/// character.
pub fn is_token_id(s: &str) -> bool {
    let n = s.chars().count();
    (1..=64).contains(&n)
        && s.chars()
            .all(|c| matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-'))
}

/// The channel grammar of PROTOCOL.md §3: `token.<tokenId>`, `batch` or
/// `market`, nothing else (no case folding, no white space).
pub fn is_channel(s: &str) -> bool {
    s == "batch" || s == "market" || s.strip_prefix("token.").is_some_and(is_token_id)
}

/// A nonce (PROTOCOL.md §3): 1–128 characters.
pub fn is_nonce(s: &str) -> bool {
    (1..=128).contains(&s.chars().count())
}

/// Two floats equal but for their last two bits: serde_json's default float
/// parser is not exactly round-trip (its `float_roundtrip` feature is off),
/// so a serialized and re-parsed number may move by an ulp.
pub fn float_close(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    if a.is_sign_negative() != b.is_sign_negative() || !a.is_finite() || !b.is_finite() {
        return false;
    }
    a.to_bits().abs_diff(b.to_bits()) <= 2
}

/// JSON values equal, numbers by [`float_close`] when either is a float.
pub fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => float_close(x, y),
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_close(a, b)))
        }
        _ => a == b,
    }
}

/// The HMAC algorithms a JWT can be signed with here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hs {
    /// HMAC-SHA-256.
    Hs256,
    /// HMAC-SHA-384.
    Hs384,
    /// HMAC-SHA-512.
    Hs512,
}

impl Hs {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Hs::Hs256 => "HS256",
            Hs::Hs384 => "HS384",
            Hs::Hs512 => "HS512",
        }
    }
}

/// A compact JWS of exactly these header and claims bytes, signed with
/// `secret`: what any issuer holding the secret could send, whatever JSON
/// (or not-JSON) it holds.
pub fn sign_raw(alg: Hs, secret: &[u8], header: &[u8], claims: &[u8]) -> String {
    macro_rules! mac {
        ($digest:ty, $message:expr) => {{
            let mut mac = Hmac::<$digest>::new_from_slice(secret).expect("HMAC takes any key");
            mac.update($message);
            mac.finalize().into_bytes().to_vec()
        }};
    }
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = match alg {
        Hs::Hs256 => mac!(sha2::Sha256, token.as_bytes()),
        Hs::Hs384 => mac!(sha2::Sha384, token.as_bytes()),
        Hs::Hs512 => mac!(sha2::Sha512, token.as_bytes()),
    };
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}
