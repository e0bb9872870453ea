//! Property tests of `odin-protocol`'s pure logic, each checked against the
//! contract (`PROTOCOL.md`) rather than against the code it tests: the nonce
//! de-duplication window, the reconnect back-off, the channel, token id,
//! nonce and subject grammars, and the JSON of every message.
//!
//! Nothing here touches a socket or a process, so the whole module runs in a
//! few seconds: `cargo test -p odin-harness --test it -- properties`.

mod backoff;
mod dedup;
mod grammar;
mod round_trip;

use odin_protocol::{Nonce, TokenId};
use proptest::prelude::*;

/// Token id strings generated from the grammar of `PROTOCOL.md` §1,
/// `^[A-Za-z0-9_-]{1,64}$`, so both bounds of the length are reached. Built
/// as a list of characters rather than from a regex so that a failure
/// shrinks to a short id.
fn token_id_string() -> impl Strategy<Value = String> {
    let chars = |len: std::ops::RangeInclusive<usize>| {
        prop::collection::vec(prop::sample::select(TOKEN_ID_CHARS), len).prop_map(String::from_iter)
    };
    prop_oneof![chars(1..=8), chars(1..=64), chars(60..=64)]
}

/// The characters of a token id, simplest first (what shrinking aims for).
const TOKEN_ID_CHARS: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's',
    't', 'u', 'v', 'w', 'x', 'y', 'z', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L',
    'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', '0', '1', '2', '3', '4',
    '5', '6', '7', '8', '9', '_', '-',
];

/// A valid [`TokenId`], for messages and subjects.
fn token_id() -> impl Strategy<Value = TokenId> {
    token_id_string().prop_map(|s| TokenId::parse(&s).expect("the grammar's own strings parse"))
}

/// A valid [`Nonce`]: 1–128 characters of any kind (multi-byte and control
/// characters included, since the contract limits only the length), or one
/// of the `<instance>-<counter>` form Odin's own sources make.
fn nonce() -> impl Strategy<Value = Nonce> {
    prop_oneof![
        "[0-9a-f]{16}-[0-9a-f]{1,16}",
        prop::collection::vec(any::<char>(), 1..=128).prop_map(String::from_iter),
    ]
    .prop_map(|s| Nonce::parse(&s).expect("1 to 128 characters is a nonce"))
}
