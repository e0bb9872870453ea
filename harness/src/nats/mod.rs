//! Real NATS on demand, for tests and load runs.
//!
//! A [`NatsServer`] is a guard in the spirit of async-nats's own test crate:
//! it starts a real server on a free loopback port, hands out its URL, can be
//! stopped, restarted on the same port, paused and resumed, and kills and
//! cleans up everything on `Drop`. Readiness is polled (a TCP connect that
//! gets the server's `INFO {` line), never slept for.
//!
//! Two backends run the same API:
//! - **container**: a locally built image (`odin-nats:local`, never pulled)
//!   through `testcontainers`, the tests' default where Docker answers;
//! - **binary**: the `nats-server` executable (`NATS_SERVER_BIN` or `PATH`),
//!   the fallback without Docker, the load runs' default (no port proxy in
//!   their figures), and what backs [`NatsCluster`].
//!
//! `ODIN_NATS_BACKEND=auto|binary-first|binary|container` picks one (see
//! [`select`]).

mod binary;
mod cluster;
mod container;
pub mod monitor;
mod options;
mod probe;
pub mod select;
mod server;

pub use cluster::NatsCluster;
pub use container::{DEFAULT_IMAGE, IMAGE_ENV};
pub use options::{Backend, NatsOptions};
pub use select::{BackendChoice, BackendError};
pub use server::NatsServer;
