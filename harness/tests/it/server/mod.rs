//! The server against its contract (`PROTOCOL.md` §2–§7), from outside: real
//! NATS, real sockets, and the real binary where a process matters.

mod advisory;
mod auth;
mod bad_input;
mod compression;
mod delivery;
mod health_command;
mod keys;
mod lifecycle;
mod liveness;
mod refresh;
pub(crate) mod support;
mod versions;
