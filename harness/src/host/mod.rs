//! Faults only hosts can have, on the container backend: a container cut
//! off a Docker network and put back ([`NetworkCut`]), a container
//! partitioned from some peers while everyone else still reaches it
//! ([`Partition`]), a slow and lossy link (`tc netem`, [`Netem`]; where
//! the kernel has no netem, loss alone through `iptables`,
//! [`PacketLoss`]), and the
//! gateway as a host of its own, a container on the NATS cluster's network
//! ([`GatewayContainer`]), so that cutting it off is a real network cut.
//!
//! Each fault is a guard: undone on drop, also when the test fails, so no
//! container is left cut, partitioned or slowed. The tools run on the
//! Docker host: the `docker` CLI, and `tc` and `iptables` inside a
//! container's network namespace (`nsenter -t <pid> -n`), which needs root,
//! as Docker itself does. The images hold neither tool nor shell.

mod docker;
mod gateway;
mod loss;
mod netem;
mod network;
mod partition;

pub use docker::{docker_reachable_for_hosts, ip_on};
pub use gateway::GatewayContainer;
pub use loss::PacketLoss;
pub use netem::{Netem, NetemSpec, netem_available};
pub use network::NetworkCut;
pub use partition::Partition;
