//! Validated identifiers: token ids (which end up inside NATS subjects) and
//! nonces (the de-duplication key).
//!
//! Both are checked once, when they enter the system, so the rest of the code
//! can hold a `TokenId` and know it is safe to put into a subject.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest token id the protocol accepts.
pub const TOKEN_ID_MAX_LEN: usize = 64;
/// Longest nonce the protocol accepts.
pub const NONCE_MAX_LEN: usize = 128;

/// Why a string is not a valid token id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTokenId {
    /// The id was empty.
    #[error("token id is empty")]
    Empty,
    /// The id was longer than [`TOKEN_ID_MAX_LEN`].
    #[error("token id is longer than {TOKEN_ID_MAX_LEN} characters")]
    TooLong,
    /// The id had a character outside `[A-Za-z0-9_-]`.
    #[error("token id may only hold A-Z, a-z, 0-9, '_' and '-'")]
    BadCharacter,
}

/// A token id matching `^[A-Za-z0-9_-]{1,64}$`.
///
/// The only way to build one is [`TokenId::parse`], so a `TokenId` can never
/// carry `.`, `*`, `>` or white space into a NATS subject (subject injection).
/// Cloning is cheap: the string is shared.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(Arc<str>);

impl TokenId {
    /// Checks `s` against the token id grammar.
    pub fn parse(s: &str) -> Result<Self, InvalidTokenId> {
        validate_token_id(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `s` against the token id grammar without allocating.
pub fn validate_token_id(s: &str) -> Result<(), InvalidTokenId> {
    if s.is_empty() {
        return Err(InvalidTokenId::Empty);
    }
    if s.len() > TOKEN_ID_MAX_LEN {
        return Err(InvalidTokenId::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(InvalidTokenId::BadCharacter);
    }
    Ok(())
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for TokenId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TokenId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TokenId {
    type Err = InvalidTokenId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for TokenId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        TokenId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TokenId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TokenId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]{1,64}$",
            "description": "A token id; never contains '.', '*', '>' or white space."
        })
    }
}

/// Why a string is not a valid nonce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidNonce {
    /// The nonce was empty.
    #[error("nonce is empty")]
    Empty,
    /// The nonce was longer than [`NONCE_MAX_LEN`] characters.
    #[error("nonce is longer than {NONCE_MAX_LEN} characters")]
    TooLong,
}

/// A nonce: unique per logical event, 1–128 characters, the de-duplication key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nonce(Arc<str>);

impl Nonce {
    /// Checks the length rule of the protocol (1–128 characters).
    pub fn parse(s: &str) -> Result<Self, InvalidNonce> {
        validate_nonce(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// The nonce as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the nonce length rule (1–128 characters) without allocating.
pub fn validate_nonce(s: &str) -> Result<(), InvalidNonce> {
    if s.is_empty() {
        return Err(InvalidNonce::Empty);
    }
    // Counted in characters, as the protocol says; the byte length bounds it
    // from above, so the common short ASCII case needs no char walk.
    if s.len() > NONCE_MAX_LEN && s.chars().count() > NONCE_MAX_LEN {
        return Err(InvalidNonce::TooLong);
    }
    Ok(())
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for Nonce {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Nonce {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Nonce::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Nonce {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Nonce".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "Unique per logical event; the de-duplication key."
        })
    }
}

/// Makes nonces that are unique across processes and restarts without any
/// coordination: a random 64-bit instance part (fresh per `NonceSource`) and a
/// counter. Two sources collide with probability ~2^-64 per pair.
#[derive(Debug)]
pub struct NonceSource {
    /// Invariant: exactly 16 lowercase hex digits.
    instance: String,
    counter: std::sync::atomic::AtomicU64,
}

impl NonceSource {
    /// A source with a fresh random instance part.
    pub fn random() -> Self {
        Self::with_instance(rand::random::<u64>())
    }

    /// A source with a chosen instance part, for reproducible runs (the same
    /// seed gives the same nonces).
    pub fn with_instance(instance: u64) -> Self {
        Self {
            instance: format!("{instance:016x}"),
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The next nonce, `<instance>-<counter>`.
    pub fn next_string(&self) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-{n:x}", self.instance)
    }

    /// The next nonce as a [`Nonce`].
    pub fn next(&self) -> Nonce {
        Nonce(Arc::from(self.next_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_follow_the_grammar() {
        assert!(TokenId::parse("BTC").is_ok());
        assert!(TokenId::parse("a_b-C9").is_ok());
        assert!(TokenId::parse(&"x".repeat(64)).is_ok());
        assert_eq!(TokenId::parse(""), Err(InvalidTokenId::Empty));
        assert_eq!(
            TokenId::parse(&"x".repeat(65)),
            Err(InvalidTokenId::TooLong)
        );
        for bad in ["a.b", "*", ">", "a b", "é", "a\n", "a/b"] {
            assert_eq!(
                TokenId::parse(bad),
                Err(InvalidTokenId::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn nonces_are_counted_in_characters() {
        assert!(Nonce::parse(&"é".repeat(128)).is_ok());
        assert_eq!(Nonce::parse(&"é".repeat(129)), Err(InvalidNonce::TooLong));
        assert_eq!(Nonce::parse(""), Err(InvalidNonce::Empty));
    }
}
