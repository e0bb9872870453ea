//! Which version of the wire contract a connection speaks (`PROTOCOL.md`
//! "Versions"), negotiated on the upgrade with the query parameter
//! `?protocol=<n>`: browsers cannot set headers on a WebSocket, so a query
//! parameter is the one way every client can ask.

use std::fmt;

/// The query parameter a client names its version with.
pub const QUERY_PARAMETER: &str = "protocol";

/// A version of the wire contract the server speaks.
///
/// Ordered: a later version is greater, so "version 2 or later" reads
/// `version >= ProtocolVersion::V2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ProtocolVersion {
    /// The first contract: what a client that asks for nothing gets.
    #[default]
    V1,
    /// Version 1 plus the `reconnect` advisory before a shutdown's or a
    /// lifetime's close.
    V2,
}

impl ProtocolVersion {
    /// The newest version this crate speaks.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V2;

    /// The number announced in `connection_established.protocolVersion`.
    pub fn number(self) -> u32 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => 2,
        }
    }

    /// The version a number names, if this crate speaks it.
    pub fn from_number(n: u32) -> Option<ProtocolVersion> {
        match n {
            1 => Some(ProtocolVersion::V1),
            2 => Some(ProtocolVersion::V2),
            _ => None,
        }
    }

    /// The version a `?protocol=` value asks for: none (or an empty one) is
    /// version 1. A value that names no version this crate speaks is
    /// refused, with the value (cut to 32 characters) for the error text.
    /// The caller picks the parameter out of the query string (the first
    /// `protocol`, percent-decoded, as it does the token).
    pub fn from_param(asked: Option<&str>) -> Result<ProtocolVersion, UnsupportedVersion> {
        match asked {
            None | Some("") => Ok(ProtocolVersion::V1),
            // Exactly the digits: `+2` or `02` name no version.
            Some("1") => Ok(ProtocolVersion::V1),
            Some("2") => Ok(ProtocolVersion::V2),
            Some(v) => Err(UnsupportedVersion(v.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A `?protocol=` value naming no version the server speaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol version {0:?} is not supported; this server speaks versions 1 and 2")]
pub struct UnsupportedVersion(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_or_empty_is_version_1_and_names_1_and_2() {
        assert_eq!(ProtocolVersion::from_param(None), Ok(ProtocolVersion::V1));
        assert_eq!(
            ProtocolVersion::from_param(Some("")),
            Ok(ProtocolVersion::V1)
        );
        assert_eq!(
            ProtocolVersion::from_param(Some("1")),
            Ok(ProtocolVersion::V1)
        );
        assert_eq!(
            ProtocolVersion::from_param(Some("2")),
            Ok(ProtocolVersion::V2)
        );
    }

    #[test]
    fn refuses_every_other_value_with_a_bounded_echo() {
        for bad in ["7", "0", "two", "2x", "-1", " 2", "+2", "02"] {
            assert!(ProtocolVersion::from_param(Some(bad)).is_err(), "{bad}");
        }
        let err = ProtocolVersion::from_param(Some(&"9".repeat(100))).unwrap_err();
        assert_eq!(err.0.len(), 32);
    }

    #[test]
    fn numbers_round_trip_and_order() {
        for v in [ProtocolVersion::V1, ProtocolVersion::V2] {
            assert_eq!(ProtocolVersion::from_number(v.number()), Some(v));
        }
        assert!(ProtocolVersion::V2 > ProtocolVersion::V1);
        assert_eq!(ProtocolVersion::LATEST.number(), crate::PROTOCOL_VERSION);
    }
}
