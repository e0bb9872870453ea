//! `odin-publisher`'s integration tests, without NATS: the exact bytes of one
//! event of each kind for a fixed seed (snapshots), and whole runs of the
//! runner against an in-memory sink on tokio's paused clock. The end-to-end
//! tests against a real NATS server live in the harness
//! (`harness/tests/it/publisher/`).

mod events;
mod runs;
