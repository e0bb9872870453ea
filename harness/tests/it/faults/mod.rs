//! End-to-end fault tests against real NATS and the real binaries: the
//! server killed and restarted under its clients, a publisher's duplicate
//! storm, two servers on one NATS, a NATS cluster losing nodes under two
//! servers, a thousand clients reconnecting at once, the last prices kept
//! in JetStream serving the first snapshots of a starting gateway, and a
//! gateway with a second NATS connection losing nothing with a node, and
//! the publisher sending again the prices the last-prices store missed.
//!
//! Each checks what a client's application sees (the reference client's
//! delivered events, or a bare connection's frames) against what was
//! published, and the server's own `/stats`.

mod duplicates;
mod gateway_cut;
mod hosts;
mod last_prices;
mod netem;
mod partition;
mod reconnect_storm;
mod scale_out;
mod second_connection;
mod server_restart;
mod stored_prices;
mod support;
