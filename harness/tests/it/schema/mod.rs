//! The wire contract as reviewed data: the JSON of one fixed instance of
//! every message type, a JSON Schema of the whole protocol generated from
//! the Rust types (also committed as `protocol/schema/odin-protocol-v2.json`)
//! and the shape of a real server's `/stats`, all as insta snapshots, so
//! that any change to what goes on the wire shows in review.
//!
//! After a deliberate change: `INSTA_UPDATE=always cargo test -p
//! odin-harness --test it schema` (or `cargo insta review`) rewrites the
//! snapshots and the schema file; review the diff and bump
//! `PROTOCOL_VERSION` if the change is not backward compatible.

mod json_schema;
mod messages;
mod stats;

use serde_json::Value;

/// `value` with the keys of every object in sorted order, whatever order
/// serde_json's map keeps (its `preserve_order` feature may be switched on
/// by any crate in a build), so snapshots and the schema file stay
/// byte-stable.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
