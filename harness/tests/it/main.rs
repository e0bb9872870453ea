//! The harness's one integration-test binary: every end-to-end test of Odin
//! against real NATS, real sockets and real processes, by topic.

mod browser;
mod client;
mod faults;
mod hostile;
mod nats;
mod properties;
mod publisher;
mod schema;
mod server;
mod support;
mod tls;
