//! Odin load tests (lands with the load-test issue).
