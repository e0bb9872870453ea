//! NATS subjects of `PROTOCOL.md` §1, built from and parsed into typed parts.
//!
//! The prefix (default `odin`) is configurable; everything after it is fixed
//! by the protocol. A subject is only ever built from a [`TokenId`], so no
//! wildcard or extra subject token can be smuggled in.

use crate::ids::{TokenId, validate_token_id};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "odin";

/// Which event a subject carries, with its token id where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind<'a> {
    /// `<prefix>.token.<id>.price`
    Price(&'a str),
    /// `<prefix>.token.<id>.volume`
    Volume(&'a str),
    /// `<prefix>.trades.<id>`
    Trade(&'a str),
    /// `<prefix>.token.batch.update`
    Batch,
    /// `<prefix>.market.statistics`
    MarketStats,
}

impl SubjectKind<'_> {
    /// The event `type` a payload on this subject must carry.
    pub fn event_type(&self) -> &'static str {
        match self {
            SubjectKind::Price(_) => "price_update",
            SubjectKind::Volume(_) => "volume_update",
            SubjectKind::Trade(_) => "trade_executed",
            SubjectKind::Batch => "batch_update",
            SubjectKind::MarketStats => "market_stats",
        }
    }

    /// The token id, for the per-token subjects.
    pub fn token_id(&self) -> Option<&str> {
        match *self {
            SubjectKind::Price(id) | SubjectKind::Volume(id) | SubjectKind::Trade(id) => Some(id),
            SubjectKind::Batch | SubjectKind::MarketStats => None,
        }
    }
}

/// Why a subject prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "subject prefix must be one or more dot-separated parts of A-Z, a-z, 0-9, '_' or '-' (got {0:?})"
)]
pub struct InvalidPrefix(pub String);

/// Builds and parses the subjects under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// Invariant: dot-separated parts, each a valid token id (no wildcards).
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Subjects {
    /// Subjects under `prefix`, which may itself have dots (`acme.odin`) but
    /// no wildcard, space or empty part.
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        if prefix
            .split('.')
            .all(|part| validate_token_id(part).is_ok())
        {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    /// The prefix these subjects live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The wildcard that matches every Odin subject: `<prefix>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The wildcard that matches every token's price subject:
    /// `<prefix>.token.*.price` (what a store of last prices captures).
    pub fn all_prices(&self) -> String {
        format!("{}.token.*.price", self.prefix)
    }

    /// `<prefix>.token.<id>.price`
    pub fn price(&self, id: &TokenId) -> String {
        format!("{}.token.{id}.price", self.prefix)
    }

    /// `<prefix>.token.<id>.volume`
    pub fn volume(&self, id: &TokenId) -> String {
        format!("{}.token.{id}.volume", self.prefix)
    }

    /// `<prefix>.trades.<id>`
    pub fn trade(&self, id: &TokenId) -> String {
        format!("{}.trades.{id}", self.prefix)
    }

    /// `<prefix>.token.batch.update`
    pub fn batch(&self) -> String {
        format!("{}.token.batch.update", self.prefix)
    }

    /// `<prefix>.market.statistics`
    pub fn market(&self) -> String {
        format!("{}.market.statistics", self.prefix)
    }

    /// Parses a subject received from NATS; `None` for anything that is not
    /// exactly one of the five subject forms (including invalid token ids).
    pub fn parse<'a>(&self, subject: &'a str) -> Option<SubjectKind<'a>> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let mut parts = rest.split('.');
        let kind = match (parts.next()?, parts.next(), parts.next()) {
            ("token", Some("batch"), Some("update")) => SubjectKind::Batch,
            ("token", Some(id), Some("price")) => SubjectKind::Price(id),
            ("token", Some(id), Some("volume")) => SubjectKind::Volume(id),
            ("trades", Some(id), None) => SubjectKind::Trade(id),
            ("market", Some("statistics"), None) => SubjectKind::MarketStats,
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        if let Some(id) = kind.token_id() {
            validate_token_id(id).ok()?;
        }
        Some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_every_form() {
        let s = Subjects::default();
        let id = TokenId::parse("BTC").unwrap();
        assert_eq!(s.parse(&s.price(&id)), Some(SubjectKind::Price("BTC")));
        assert_eq!(s.parse(&s.volume(&id)), Some(SubjectKind::Volume("BTC")));
        assert_eq!(s.parse(&s.trade(&id)), Some(SubjectKind::Trade("BTC")));
        assert_eq!(s.parse(&s.batch()), Some(SubjectKind::Batch));
        assert_eq!(s.parse(&s.market()), Some(SubjectKind::MarketStats));
        assert_eq!(s.all(), "odin.>");
        assert_eq!(s.all_prices(), "odin.token.*.price");
    }

    #[test]
    fn refuses_other_subjects() {
        let s = Subjects::default();
        for subj in [
            "odin.token.BTC.price.x",
            "odin.token.BTC",
            "odin.trades",
            "odin.trades.a.b",
            "odin.token.*.price",
            "odinx.token.BTC.price",
            "other.token.BTC.price",
            "odin.market.statistics.x",
            "odin",
        ] {
            assert_eq!(s.parse(subj), None, "{subj}");
        }
    }

    #[test]
    fn prefixes_may_have_dots_but_no_wildcards() {
        let s = Subjects::new("acme.odin").unwrap();
        assert_eq!(s.parse("acme.odin.trades.X"), Some(SubjectKind::Trade("X")));
        for bad in ["", "a.", "*", "a.>", "a b", "a..b"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?}");
        }
    }
}
