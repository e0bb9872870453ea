//! The server's side of the permessage-deflate negotiation (RFC 7692 §5,
//! §7.1): reads the client's offers from its `Sec-WebSocket-Extensions`
//! headers and picks the first one the server can honour, or none.
//!
//! The server compresses every message with a fresh context and a 32 KiB
//! window, and inflates the client's messages with a fresh context each: so
//! it answers `server_no_context_takeover` and `client_no_context_takeover`
//! whether or not they were offered (§7.1.1.1 and §7.1.1.2 allow both), and
//! declines an offer asking it for a smaller window (`server_max_window_bits`
//! below 15), as its compressor cannot use one. `client_max_window_bits`
//! only tells that the client could limit its own window: a 32 KiB inflater
//! reads any window, so it is not answered. An offer with an unknown, a
//! repeated or an ill-formed parameter is declined (§7).

/// The extension's name in the header.
pub const EXTENSION: &str = "permessage-deflate";

/// The answer to an accepted offer, for the response's
/// `Sec-WebSocket-Extensions` header.
pub const RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// An offer the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted;

impl Accepted {
    /// The value of the response's `Sec-WebSocket-Extensions` header.
    pub fn response(&self) -> &'static str {
        RESPONSE
    }
}

/// Picks the first offer of permessage-deflate the server can honour among
/// the values of the request's `Sec-WebSocket-Extensions` headers (each a
/// comma-separated list of offers, in the client's order of preference).
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Accepted> {
    headers
        .into_iter()
        .flat_map(split_outside_quotes(','))
        .find_map(|offer| acceptable(offer).then_some(Accepted))
}

/// Whether one offer (`name; param; param=value`) is permessage-deflate with
/// parameters the server can honour.
fn acceptable(offer: &str) -> bool {
    let mut parts = split_outside_quotes(';')(offer);
    if !parts
        .next()
        .is_some_and(|name| name.trim().eq_ignore_ascii_case(EXTENSION))
    {
        return false;
    }
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (param.trim(), None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return false;
        }
        let ok = match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
            // The client may offer its own limit with or without a value.
            ("client_max_window_bits", None) => true,
            ("client_max_window_bits", Some(Some(v))) => window_bits(v).is_some(),
            // Only a window as large as the compressor's can be honoured.
            ("server_max_window_bits", Some(Some(v))) => window_bits(v) == Some(15),
            _ => false,
        };
        if !ok {
            return false;
        }
        seen.push(name);
    }
    true
}

/// A window size parameter's value: 8 to 15, plain digits, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// A parameter value with a quoted string's quotes (and escapes) removed
/// (RFC 7692 §7.1: either form is the same value); `None` for a malformed
/// quoted string.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        None => Some(value),
        // The allowed values are digits: no escape is ever needed.
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\'])),
    }
}

/// Splits at `sep` outside double-quoted strings.
fn split_outside_quotes(sep: char) -> impl Fn(&str) -> std::vec::IntoIter<&str> {
    move |text: &str| {
        let mut parts = Vec::new();
        let (mut start, mut quoted) = (0, false);
        for (i, c) in text.char_indices() {
            if c == '"' {
                quoted = !quoted;
            } else if c == sep && !quoted {
                parts.push(&text[start..i]);
                start = i + 1;
            }
        }
        parts.push(&text[start..]);
        parts.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(headers: &[&str]) -> bool {
        negotiate(headers.iter().copied()).is_some()
    }

    #[test]
    fn browsers_and_common_clients_are_accepted() {
        // Chromium and Firefox.
        assert!(accepts(&["permessage-deflate; client_max_window_bits"]));
        // Python websockets.
        assert!(accepts(&[
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits"
        ]));
        assert!(accepts(&["PerMessage-Deflate ;Server_No_Context_Takeover"]));
        assert!(accepts(&["x-other, permessage-deflate"]));
        assert!(accepts(&[
            "x-other",
            "permessage-deflate; client_max_window_bits=\"10\""
        ]));
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined_and_the_next_one_taken() {
        // A smaller server window than the compressor's 32 KiB.
        assert!(!accepts(&["permessage-deflate; server_max_window_bits=10"]));
        assert!(accepts(&[
            "permessage-deflate; server_max_window_bits=10, permessage-deflate"
        ]));
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=\"1\"5\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert!(!accepts(&[bad]), "{bad}");
        }
        assert!(!accepts(&[]));
    }
}
