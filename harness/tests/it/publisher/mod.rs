//! End-to-end tests of `odin-publisher` against a real NATS server: what a
//! short run puts on the wire (subjects, `Nats-Msg-Id` headers, bodies and
//! their consistency), a replay of the committed fixture, the binary's
//! signals, exit codes and one-line errors, its health check, and a NATS restart mid-run.

mod health;
mod process;
mod replay;
mod restart;
mod support;
mod wire;
