//! A JSON Schema of the whole protocol, generated from odin-protocol's Rust
//! types with schemars: kept as an insta snapshot (so a wire change shows in
//! review) and as the committed file `protocol/schema/odin-protocol-v2.json`
//! (so other languages' clients can validate against it), which must be
//! exactly what the types generate. `odin-protocol-v1.json` stays as version
//! 1 was published.

use odin_protocol::message::AuthErrorBody;
use odin_protocol::stats::StatsSnapshot;
use odin_protocol::{ClientMessage, Event, PROTOCOL_VERSION, ServerMessage};
use schemars::JsonSchema;
use serde_json::Value;

use super::sorted;

/// Every JSON document of Odin's wire contract: one schema whose `$defs`
/// hold every message type, validating any document the protocol defines.
#[derive(JsonSchema)]
#[schemars(
    untagged,
    title = "Odin wire protocol, version 2",
    description = "Every JSON document of Odin's wire contract (PROTOCOL.md, protocolVersion 2; version 1 is the same without the reconnect message): a frame the server sends, a frame a client sends, an event published to NATS, the body of a refused WebSocket upgrade, and the body of GET /stats. Generated from the odin-protocol crate; do not edit by hand."
)]
// Only its schema is used; it is never built.
#[allow(dead_code)]
enum OdinProtocolV2 {
    /// A text frame from the server to a client (PROTOCOL.md §3).
    ServerMessage(ServerMessage),
    /// A text frame from a client to the server (PROTOCOL.md §3).
    ClientMessage(ClientMessage),
    /// A NATS payload (PROTOCOL.md §1): byte for byte the frame a client
    /// receives.
    Event(Event),
    /// The JSON body of a 401 answer to the upgrade request (PROTOCOL.md §2).
    AuthErrorBody(AuthErrorBody),
    /// The JSON body of GET /stats (PROTOCOL.md §6).
    Stats(StatsSnapshot),
}

/// The committed schema file.
const SCHEMA_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/schema/odin-protocol-v2.json"
);

/// Set to `1` to (re)write [`SCHEMA_FILE`] from the types instead of failing
/// when it differs; `INSTA_UPDATE=always` does the same, so one command
/// updates the snapshots and the file together.
const UPDATE_ENV: &str = "ODIN_UPDATE_SCHEMA";

/// The protocol's schema, keys sorted.
fn protocol_schema() -> Value {
    sorted(serde_json::to_value(schemars::schema_for!(OdinProtocolV2)).unwrap())
}

fn update_asked() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1")
        || std::env::var("INSTA_UPDATE").is_ok_and(|v| v == "always")
}

#[test]
fn the_protocol_schema_has_its_snapshot() {
    insta::assert_json_snapshot!("odin_protocol_v2", protocol_schema());
}

#[test]
fn the_committed_schema_file_is_what_the_types_generate() {
    assert_eq!(
        PROTOCOL_VERSION, 2,
        "the protocol version changed: add protocol/schema/odin-protocol-v{PROTOCOL_VERSION}.json \
         (and this test's OdinProtocolV{PROTOCOL_VERSION}) rather than rewriting version 2"
    );
    let generated = serde_json::to_string_pretty(&protocol_schema()).unwrap() + "\n";
    let committed = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    if committed == generated {
        return;
    }
    if update_asked() {
        let dir = std::path::Path::new(SCHEMA_FILE).parent().unwrap();
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        std::fs::write(SCHEMA_FILE, &generated)
            .unwrap_or_else(|e| panic!("cannot write {SCHEMA_FILE}: {e}"));
        return;
    }
    let line = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    panic!(
        "{SCHEMA_FILE} is not the schema odin-protocol's types generate (first difference at \
         line {}: committed {:?}, generated {:?}).\nIf the wire change is intended, review it and \
         regenerate with `{UPDATE_ENV}=1 cargo test -p odin-harness --test it schema` \
         (or `INSTA_UPDATE=always`, which also updates the snapshots).",
        line + 1,
        committed.lines().nth(line).unwrap_or("<end of file>"),
        generated.lines().nth(line).unwrap_or("<end of file>"),
    );
}
