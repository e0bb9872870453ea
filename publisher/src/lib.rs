//! `odin-publisher`: the market simulator that feeds every Odin demo, test and
//! load run.
//!
//! It simulates `N` tokens (geometric-Brownian-motion prices, Poisson trades
//! with log-normal sizes, a periodic scheduler with batch, volume and market
//! figures), paces the result against an absolute wall-clock schedule, and
//! publishes every event to NATS exactly as `PROTOCOL.md` §1 and §3 say: the
//! subject from [`odin_protocol::Subjects`], the body from
//! [`odin_protocol::Event::to_json`], and the `Nats-Msg-Id` header equal to the
//! body's nonce. It can record what it published and replay a recording.
//!
//! The crate is library-first so that tests, benchmarks and the load tests can
//! run a publisher in-process with [`run`] and read back exactly what it
//! published from the returned [`Totals`]; `main.rs` only parses flags, sets up
//! logging and signals, and prints the totals.
//!
//! The pipeline, one module per job:
//! [`universe`] (which tokens exist) → [`market`] (their state and the events
//! it emits) → [`sim`] (trades and scheduler ticks merged in time, duplicates)
//! or [`replay`] (a recording) → [`runner`] (pacing against [`schedule`],
//! [`record`]ing, counting into [`totals`]) → [`sink`] (NATS; in [`run`],
//! on a thread of its own through [`pipeline`]; with
//! `--confirm-stored-prices`, prices through [`store_confirm`]).

pub mod config;
pub mod error;
pub mod health;
pub mod market;
pub mod outgoing;
pub mod pipeline;
pub mod record;
pub mod replay;
pub mod rounding;
pub mod runner;
pub mod schedule;
pub mod seed;
pub mod sim;
pub mod sink;
pub mod source;
pub mod stamp;
pub mod store_confirm;
pub mod totals;
pub mod universe;

pub use config::PublisherConfig;
pub use error::Error;
pub use runner::{run, run_with_client, run_with_sink};
pub use totals::Totals;
