//! The release gate (`odin-load gate`): a candidate's binaries against a
//! baseline's, under one load scenario, in alternating pairs on the same
//! machine, judged on the pairs' ratios rather than on absolute limits.
//!
//! Absolute limits set at "about twice today" cannot see a regression
//! smaller than 2×, and one run against a stored report compares two
//! machines' moods. Here every pair runs back to back (A B, then B A, …), so
//! slow drifts of the machine hit both sides alike, and the verdict is taken
//! on the distribution of the pair ratios ([`decide`]).
//!
//! Layers point one way: [`spec`] (what to compare, from `fixtures/gate.toml`)
//! and [`metric`] (reading a figure off a run's report) are data;
//! [`decide`] is pure statistics; [`runner`] runs the pairs as child
//! `odin-load run` processes and [`render`] turns the result into a table,
//! `gate.json` and `gate.md`.

pub mod decide;
pub mod metric;
pub mod render;
pub mod runner;
pub mod spec;

pub use runner::{GateOptions, GateReport, GateVerdict, run};
pub use spec::{GateFile, GateSpec};
