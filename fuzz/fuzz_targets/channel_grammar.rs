//! Arbitrary strings against the channel, token-id, nonce and NATS subject
//! grammars (`odin_protocol::{channel, ids, subject}`).
//!
//! Each parser must accept exactly what PROTOCOL.md allows (checked against
//! the reference grammar in `odin_fuzz`, written from the document), and
//! whatever it accepts must print back as the very same string: a token id
//! that reaches a NATS subject can never carry `.`, `*`, `>` or white space.
//! Input: any bytes (not UTF-8: read lossily); a first line, when there is
//! one, is also tried as a subject prefix for the rest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use odin_fuzz::{is_channel, is_nonce, is_token_id};
use odin_protocol::ids::{validate_nonce, validate_token_id};
use odin_protocol::{Channel, Nonce, SubjectKind, Subjects, TokenId};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();

    check_token_id(s);
    check_channel(s);
    check_nonce(s);
    check_subject(&Subjects::default(), s);
    if let Some((prefix, rest)) = s.split_once('\n') {
        let valid_prefix = !prefix.is_empty() && prefix.split('.').all(is_token_id);
        match Subjects::new(prefix) {
            Ok(subjects) => {
                assert!(valid_prefix, "prefix {prefix:?} accepted");
                assert_eq!(subjects.prefix(), prefix);
                check_subject(&subjects, rest);
            }
            Err(_) => assert!(!valid_prefix, "prefix {prefix:?} refused"),
        }
    }
});

fn check_token_id(s: &str) {
    let parsed = TokenId::parse(s);
    assert_eq!(parsed.is_ok(), is_token_id(s), "token id {s:?}: {parsed:?}");
    assert_eq!(validate_token_id(s).is_ok(), parsed.is_ok());
    assert_eq!(s.parse::<TokenId>().ok(), parsed.clone().ok());
    // The same string arriving as JSON (a `tokenId` field of an event).
    let json = serde_json::to_string(s).unwrap();
    let from_json = serde_json::from_str::<TokenId>(&json);
    assert_eq!(from_json.is_ok(), parsed.is_ok(), "JSON {json}");
    if let Ok(id) = parsed {
        assert_eq!(id.as_str(), s);
        assert_eq!(id.to_string(), s);
        assert_eq!(serde_json::to_string(&id).unwrap(), json);
        assert_eq!(from_json.unwrap(), id);
        // Safe inside a subject: exactly one subject token, no wildcard.
        assert!(!s.contains(['.', '*', '>']) && !s.chars().any(char::is_whitespace));
        let subjects = Subjects::default();
        assert_eq!(
            subjects.parse(&subjects.price(&id)),
            Some(SubjectKind::Price(s))
        );
        assert_eq!(
            subjects.parse(&subjects.volume(&id)),
            Some(SubjectKind::Volume(s))
        );
        assert_eq!(
            subjects.parse(&subjects.trade(&id)),
            Some(SubjectKind::Trade(s))
        );
        let channel = Channel::token(id);
        assert_eq!(Channel::parse(&channel.to_string()), Ok(channel));
    }
}

fn check_channel(s: &str) {
    let parsed = Channel::parse(s);
    assert_eq!(parsed.is_ok(), is_channel(s), "channel {s:?}: {parsed:?}");
    assert_eq!(s.parse::<Channel>().ok(), parsed.clone().ok());
    if let Ok(channel) = parsed {
        // Canonical: what the server acknowledges is what the client sent.
        assert_eq!(channel.to_string(), s);
        assert_eq!(Channel::parse(&channel.to_string()), Ok(channel.clone()));
        match channel {
            Channel::Token(id) => assert_eq!(s.strip_prefix("token."), Some(id.as_str())),
            Channel::Batch => assert_eq!(s, "batch"),
            Channel::Market => assert_eq!(s, "market"),
        }
    }
}

fn check_nonce(s: &str) {
    let parsed = Nonce::parse(s);
    assert_eq!(
        parsed.is_ok(),
        is_nonce(s),
        "nonce of {} chars",
        s.chars().count()
    );
    assert_eq!(validate_nonce(s).is_ok(), parsed.is_ok());
    let json = serde_json::to_string(s).unwrap();
    assert_eq!(
        serde_json::from_str::<Nonce>(&json).ok(),
        parsed.clone().ok()
    );
    if let Ok(nonce) = parsed {
        assert_eq!(nonce.as_str(), s);
        assert_eq!(nonce.to_string(), s);
    }
}

/// A subject parses only in one of the five forms, and builds back to itself.
fn check_subject(subjects: &Subjects, s: &str) {
    let Some(kind) = subjects.parse(s) else {
        return;
    };
    assert!(
        !s.contains(['*', '>']) && !s.chars().any(char::is_whitespace),
        "subject {s:?} accepted"
    );
    if let Some(id) = kind.token_id() {
        assert!(is_token_id(id), "token id {id:?} of subject {s:?}");
    }
    let id = || TokenId::parse(kind.token_id().unwrap()).unwrap();
    let rebuilt = match kind {
        SubjectKind::Price(_) => subjects.price(&id()),
        SubjectKind::Volume(_) => subjects.volume(&id()),
        SubjectKind::Trade(_) => subjects.trade(&id()),
        SubjectKind::Batch => subjects.batch(),
        SubjectKind::MarketStats => subjects.market(),
    };
    assert_eq!(rebuilt, s, "{kind:?}");
}
