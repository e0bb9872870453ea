//! Odin's load tests: Goose scenarios of WebSocket users (the harness's
//! reference client) against an embedded or running Odin, with end-to-end
//! latency in HdrHistograms, loss accounting against what the publisher
//! published, thresholds as data, and reports.
//!
//! The `odin-load` binary drives [`run::run`]; `LOAD_TESTING.md` at the
//! repository's top explains the scenarios and every figure. The bare
//! forwarder the fan-out benchmark measures odin-server against is a crate of
//! its own (`forwarder/`, `odin-forwarder`); [`stack::forwarder`] starts its
//! binary.

pub mod baseline;
pub mod combine;
pub mod fleet;
pub mod gate;
pub mod histogram;
pub mod judge;
pub mod lag;
pub mod limits;
pub mod merge;
pub mod observer;
pub mod options;
pub mod plan;
pub mod progress;
pub mod render;
pub mod report;
pub mod run;
pub mod scenario;
pub mod series;
pub mod soak;
pub mod stack;
pub mod steps;
pub mod summary;
pub mod sysstat;
pub mod thresholds;
pub mod timeline;
pub mod trust;
pub mod user;
pub mod worker;
