//! The hostile-input suite: what a hostile client or a buggy publisher
//! does to a gateway, one file per attack family. Every test asserts the
//! refusal *and* that a healthy client subscribed throughout (the
//! [`control`] client) kept receiving every event, in order and in time.

mod auth;
mod control;
mod fairness;
mod frames;
mod http_side;
mod nats_side;
mod upgrade;
