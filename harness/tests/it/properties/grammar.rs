//! The string grammars of the contract: channels (`PROTOCOL.md` §3), token
//! ids and nonces (§1, §3), subject prefixes and NATS subjects (§1).
//!
//! Each grammar is written out again here by hand, from the contract, and
//! the crate must agree with it both ways: every string generated from the
//! grammar is accepted, and of arbitrary and near-miss strings (valid ones
//! with a separator, wildcard, space, control or non-ASCII character put in,
//! swapped in or taken out) exactly the grammatical ones are. Then: no
//! accepted channel leads to a subject with a wildcard, white space, an empty
//! or an extra token (subject injection), and subjects parse back into the
//! parts that built them and into nothing else.

use odin_protocol::channel::Channel;
use odin_protocol::{Nonce, SubjectKind, Subjects, TokenId};
use proptest::prelude::*;
use proptest::sample::Index;

use super::{token_id, token_id_string};

/// `^[A-Za-z0-9_-]{1,64}$` (§1), by hand.
fn is_token_id(s: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    (1..=64).contains(&s.chars().count()) && s.chars().all(allowed)
}

/// `token.<tokenId>`, `batch` or `market` (§3 Channels), by hand.
fn is_channel(s: &str) -> bool {
    s == "batch" || s == "market" || s.strip_prefix("token.").is_some_and(is_token_id)
}

/// 1–128 characters (characters, not bytes) of anything (§3).
fn is_nonce(s: &str) -> bool {
    (1..=128).contains(&s.chars().count())
}

/// Odin's reading of "the subject prefix is configurable" (§1): one or more
/// dot-separated parts, each shaped like a token id, so that a prefix can
/// never bring in a wildcard or an empty token either.
fn is_prefix(s: &str) -> bool {
    s.split('.').all(is_token_id)
}

/// Characters that break the grammars in the ways that matter: NATS
/// separators and wildcards, white space, control and non-ASCII characters,
/// and (to keep valid strings valid now and then) allowed ones.
const HOSTILE: &[char] = &[
    '.', '*', '>', ' ', '\t', '\n', '\r', '\0', '\u{a0}', '\u{2028}', 'é', '€', '/', '+', 'A', 'z',
    '0', '_', '-',
];

/// One edit of a valid string into a near miss.
#[derive(Debug, Clone)]
enum Edit {
    /// Puts a character in at a position.
    Insert(Index, char),
    /// Swaps the character at a position for another.
    Replace(Index, char),
    /// Takes the character at a position out.
    Remove(Index),
}

/// A random [`Edit`] with a character from [`HOSTILE`].
fn edit() -> impl Strategy<Value = Edit> {
    let hostile = || prop::sample::select(HOSTILE);
    prop_oneof![
        (any::<Index>(), hostile()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<Index>(), hostile()).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<Index>().prop_map(Edit::Remove),
    ]
}

/// Strings from `valid` with one to three [`Edit`]s: the near misses where a
/// hand-rolled validator usually goes wrong.
fn mutated(valid: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (valid, prop::collection::vec(edit(), 1..=3)).prop_map(|(s, edits)| {
        let mut chars: Vec<char> = s.chars().collect();
        for edit in edits {
            match edit {
                Edit::Insert(i, c) => chars.insert(i.index(chars.len() + 1), c),
                Edit::Replace(i, c) if !chars.is_empty() => {
                    let at = i.index(chars.len());
                    chars[at] = c;
                }
                Edit::Remove(i) if !chars.is_empty() => {
                    chars.remove(i.index(chars.len()));
                }
                Edit::Replace(..) | Edit::Remove(_) => {}
            }
        }
        chars.into_iter().collect()
    })
}

/// Channel strings generated from the grammar of §3.
fn valid_channel() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("batch".to_owned()),
        1 => Just("market".to_owned()),
        4 => token_id_string().prop_map(|id| format!("token.{id}")),
    ]
}

/// `token.` followed by a near-miss token id: where a channel could carry
/// something into a subject.
fn near_miss_token_channel() -> impl Strategy<Value = String> {
    mutated(token_id_string()).prop_map(|id| format!("token.{id}"))
}

/// Channel strings that are mostly not channels: near misses, strings over
/// the characters that matter, and arbitrary text.
fn near_miss_channel() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => mutated(valid_channel()),
        3 => near_miss_token_channel(),
        2 => "(token|batch|market|Token|BATCH|tokens)?[.]?[A-Za-z0-9_.*> \t-]{0,66}",
        1 => any::<String>(),
    ]
}

/// Subject prefixes generated from [`is_prefix`]'s grammar.
fn valid_prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("odin".to_owned()),
        "[A-Za-z0-9_-]{1,8}(\\.[A-Za-z0-9_-]{1,8}){0,3}",
    ]
}

/// The five subject forms of §1, for building and naming them in order.
const FORMS: [&str; 5] = ["price", "volume", "trade", "batch", "market"];

/// The subject of form `FORMS[form]` under `subjects`, for token `id`.
fn build(subjects: &Subjects, form: usize, id: &TokenId) -> String {
    match form {
        0 => subjects.price(id),
        1 => subjects.volume(id),
        2 => subjects.trade(id),
        3 => subjects.batch(),
        _ => subjects.market(),
    }
}

/// How many tokens a subject of form `FORMS[form]` has after the prefix's:
/// `token.<id>.price`, `token.<id>.volume`, `trades.<id>`, `token.batch.update`,
/// `market.statistics`.
const FIXED_TOKENS: [usize; 5] = [3, 3, 2, 3, 2];

/// The subject a parsed [`SubjectKind`] was built from, written out from §1
/// rather than with the crate's builders.
fn unparse(prefix: &str, kind: SubjectKind<'_>) -> String {
    match kind {
        SubjectKind::Price(id) => format!("{prefix}.token.{id}.price"),
        SubjectKind::Volume(id) => format!("{prefix}.token.{id}.volume"),
        SubjectKind::Trade(id) => format!("{prefix}.trades.{id}"),
        SubjectKind::Batch => format!("{prefix}.token.batch.update"),
        SubjectKind::MarketStats => format!("{prefix}.market.statistics"),
    }
}

/// A valid prefix with candidate subjects under it: subjects of the five
/// forms with edits or with more tokens after them, per-token forms around a
/// near-miss token id, and the prefix followed by near-miss text.
fn prefix_and_candidate() -> impl Strategy<Value = (String, String)> {
    valid_prefix().prop_flat_map(|prefix| {
        let valid = || {
            let subjects = Subjects::new(&prefix).expect("grammatical prefix");
            (0..FORMS.len(), token_id()).prop_map(move |(form, id)| build(&subjects, form, &id))
        };
        let near_miss_id = {
            let prefix = prefix.clone();
            (0..3usize, mutated(token_id_string())).prop_map(move |(form, id)| match form {
                0 => format!("{prefix}.token.{id}.price"),
                1 => format!("{prefix}.token.{id}.volume"),
                _ => format!("{prefix}.trades.{id}"),
            })
        };
        let near_miss = {
            let prefix = prefix.clone();
            "(token|trades|market)?[.]?[A-Za-z0-9_.*> -]{0,30}"
                .prop_map(move |rest| format!("{prefix}.{rest}"))
        };
        let candidate = prop_oneof![
            1 => valid(),
            3 => mutated(valid()),
            2 => (valid(), "[.][A-Za-z0-9_.*>]{0,4}").prop_map(|(s, more)| s + &more),
            3 => near_miss_id,
            2 => near_miss,
        ];
        (Just(prefix), candidate)
    })
}

/// Checks that `subject` is safe to hand to NATS: no wildcard, white space,
/// empty token, or token beyond the `expected` count.
fn check_subject(subject: &str, expected: usize) -> Result<(), TestCaseError> {
    prop_assert!(
        !subject.contains(['*', '>']),
        "wildcard in subject {:?}",
        subject
    );
    prop_assert!(
        !subject.contains(|c: char| c.is_whitespace() || c.is_control()),
        "white space or control character in subject {:?}",
        subject
    );
    prop_assert!(
        !subject.split('.').any(str::is_empty),
        "empty token in subject {:?}",
        subject
    );
    prop_assert_eq!(
        subject.split('.').count(),
        expected,
        "wrong number of tokens in subject {:?}",
        subject
    );
    Ok(())
}

proptest! {
    // Each case is a few microseconds; more of them find rarer near misses.
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every channel the grammar allows is accepted, as the right kind, and
    /// prints back as the same string.
    #[test]
    fn every_channel_the_grammar_allows_is_accepted(s in valid_channel()) {
        let channel = Channel::parse(&s);
        prop_assert!(channel.is_ok(), "{:?} refused: {:?}", s, channel);
        let channel = channel.unwrap();
        match (&channel, s.strip_prefix("token.")) {
            (Channel::Token(id), Some(expected)) => prop_assert_eq!(id.as_str(), expected),
            (Channel::Batch, None) => prop_assert_eq!(s.as_str(), "batch"),
            (Channel::Market, None) => prop_assert_eq!(s.as_str(), "market"),
            _ => prop_assert!(false, "{:?} parsed as {:?}", s, channel),
        }
        prop_assert_eq!(channel.to_string(), s);
    }

    /// Of near-miss and arbitrary strings, exactly the grammatical ones are
    /// accepted as channels.
    #[test]
    fn only_channels_the_grammar_allows_are_accepted(s in near_miss_channel()) {
        prop_assert_eq!(
            Channel::parse(&s).is_ok(),
            is_channel(&s),
            "Channel::parse and the grammar of §3 disagree on {:?}",
            s
        );
    }

    /// Token ids and nonces are accepted exactly by their grammars, both by
    /// `parse` and when read from JSON.
    #[test]
    fn token_ids_and_nonces_are_accepted_exactly_by_their_grammars(
        id in prop_oneof![1 => token_id_string(), 3 => mutated(token_id_string()), 1 => any::<String>()],
        nonce in prop_oneof![
            prop::collection::vec(prop::sample::select(vec!['a', 'é', '€', '😀']), 0..=140),
            prop::collection::vec(any::<char>(), 0..=140),
        ].prop_map(String::from_iter),
    ) {
        prop_assert_eq!(TokenId::parse(&id).is_ok(), is_token_id(&id), "token id {:?}", id);
        prop_assert_eq!(
            serde_json::from_value::<TokenId>(id.clone().into()).is_ok(),
            is_token_id(&id),
            "token id {:?} from JSON",
            id
        );
        prop_assert_eq!(Nonce::parse(&nonce).is_ok(), is_nonce(&nonce), "nonce {:?}", nonce);
        prop_assert_eq!(
            serde_json::from_value::<Nonce>(nonce.clone().into()).is_ok(),
            is_nonce(&nonce),
            "nonce {:?} from JSON",
            nonce
        );
    }

    /// Subject prefixes are accepted exactly by their grammar.
    #[test]
    fn subject_prefixes_are_accepted_exactly_by_their_grammar(
        prefix in prop_oneof![valid_prefix(), mutated(valid_prefix()), any::<String>()],
    ) {
        prop_assert_eq!(
            Subjects::new(&prefix).is_ok(),
            is_prefix(&prefix),
            "Subjects::new and the prefix grammar disagree on {:?}",
            prefix
        );
    }

    /// No accepted channel yields a subject with a wildcard, white space,
    /// an empty token or an extra token: its subjects (those whose events
    /// it delivers, §3) have exactly the prefix's tokens plus the form's.
    #[test]
    fn accepted_channels_never_yield_an_unsafe_subject(
        prefix in valid_prefix(),
        s in prop_oneof![valid_channel(), near_miss_token_channel(), near_miss_channel()],
    ) {
        let Ok(channel) = Channel::parse(&s) else {
            return Ok(());
        };
        let subjects = Subjects::new(&prefix).expect("grammatical prefix");
        let prefix_tokens = prefix.split('.').count();
        let forms: Vec<(usize, String)> = match &channel {
            Channel::Token(id) => (0..3).map(|form| (form, build(&subjects, form, id))).collect(),
            Channel::Batch => vec![(3, subjects.batch())],
            Channel::Market => vec![(4, subjects.market())],
        };
        for (form, subject) in forms {
            check_subject(&subject, prefix_tokens + FIXED_TOKENS[form])?;
            prop_assert!(
                subjects.parse(&subject).is_some(),
                "the {} subject {:?} of channel {:?} does not parse back",
                FORMS[form],
                subject,
                s
            );
        }
    }

    /// Every subject built from a prefix and a token id parses back into its
    /// form, its event `type` (§1's table) and the same token id.
    #[test]
    fn subjects_parse_back_to_what_built_them(prefix in valid_prefix(), id in token_id()) {
        let subjects = Subjects::new(&prefix).expect("grammatical prefix");
        let expected = [
            (SubjectKind::Price(id.as_str()), "price_update"),
            (SubjectKind::Volume(id.as_str()), "volume_update"),
            (SubjectKind::Trade(id.as_str()), "trade_executed"),
            (SubjectKind::Batch, "batch_update"),
            (SubjectKind::MarketStats, "market_stats"),
        ];
        for (form, (kind, event_type)) in expected.into_iter().enumerate() {
            let subject = build(&subjects, form, &id);
            let parsed = subjects.parse(&subject);
            prop_assert_eq!(parsed, Some(kind), "{} subject {:?}", FORMS[form], subject);
            prop_assert_eq!(kind.event_type(), event_type);
        }
    }

    /// A subject parses only if it is exactly the subject its parts build
    /// (so nothing extra, wildcard or foreign is let through), with a token
    /// id that follows the grammar.
    #[test]
    fn a_subject_parses_only_into_the_parts_that_build_it(
        (prefix, subject) in prefix_and_candidate(),
    ) {
        let subjects = Subjects::new(&prefix).expect("grammatical prefix");
        if let Some(kind) = subjects.parse(&subject) {
            prop_assert_eq!(unparse(&prefix, kind), subject.clone(), "{:?} parsed as {:?}", subject, kind);
            if let Some(id) = kind.token_id() {
                prop_assert!(is_token_id(id), "{:?} parsed with token id {:?}", subject, id);
            }
        }
    }
}
