//! Channels a client subscribes to: `token.<tokenId>`, `batch` and `market`.

use std::fmt;

use crate::ids::{InvalidTokenId, TokenId};

/// A channel, parsed from the string a client sent.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Channel {
    /// `token.<tokenId>`: price, volume and trade events of one token.
    Token(TokenId),
    /// `batch`: `batch_update` events.
    Batch,
    /// `market`: `market_stats` events.
    Market,
}

/// Why a channel string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChannel {
    /// The string matches none of `token.<id>`, `batch`, `market`.
    #[error("unknown channel; expected token.<tokenId>, batch or market")]
    Unknown,
    /// It starts with `token.` but the id is not valid.
    #[error("invalid token id: {0}")]
    TokenId(#[from] InvalidTokenId),
}

/// The prefix of token channels.
pub const TOKEN_CHANNEL_PREFIX: &str = "token.";

impl Channel {
    /// Parses a channel string exactly as `PROTOCOL.md` §3 allows.
    pub fn parse(s: &str) -> Result<Self, InvalidChannel> {
        match s {
            "batch" => Ok(Channel::Batch),
            "market" => Ok(Channel::Market),
            _ => match s.strip_prefix(TOKEN_CHANNEL_PREFIX) {
                Some(id) => Ok(Channel::Token(TokenId::parse(id)?)),
                None => Err(InvalidChannel::Unknown),
            },
        }
    }

    /// The channel of one token.
    pub fn token(id: TokenId) -> Self {
        Channel::Token(id)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Token(id) => write!(f, "{TOKEN_CHANNEL_PREFIX}{id}"),
            Channel::Batch => f.write_str("batch"),
            Channel::Market => f.write_str("market"),
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = InvalidChannel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_and_round_trips() {
        for s in ["batch", "market", "token.BTC", "token.a_b-1"] {
            assert_eq!(Channel::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn refuses_injection_attempts() {
        for s in [
            "token.*",
            "token.>",
            "token.a.b",
            "token.",
            "token",
            "tokens.a",
            "BATCH",
            "market ",
            "token. a",
            "",
        ] {
            assert!(Channel::parse(s).is_err(), "{s:?} was accepted");
        }
    }
}
