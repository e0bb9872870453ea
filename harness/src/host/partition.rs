//! A container partitioned from some of its peers: `iptables` rules inside
//! its network namespace stop every packet to and from their addresses,
//! while everyone else, the Docker host's clients included, still reaches
//! it. What a NATS node cut off from the rest of its cluster is.
//!
//! TCP between them is answered with a reset, the rest dropped: the
//! connections across the partition break at once, as they do when a
//! partition outlasts their keep-alives. Dropped quietly instead, a
//! partition of a few seconds is no partition to TCP: it retransmits
//! what was held up once the partition heals, and nothing is lost.

use super::docker::{ip_on, iptables};

/// The comment that marks this harness's rules, so that only they are
/// removed.
const MARK: &str = "odin-harness-partition";

/// `container` partitioned from `peers`; healed on drop.
#[derive(Debug)]
pub struct Partition {
    container: String,
    /// The peers' addresses, each with the rules added for it.
    peers: Vec<String>,
    /// Invariant: true until the rules are removed.
    active: bool,
}

impl Partition {
    /// Drops all traffic between `container` and each of `peers` (container
    /// names or ids) on `network`.
    pub fn isolate(container: &str, peers: &[&str], network: &str) -> anyhow::Result<Partition> {
        let mut partition = Partition {
            container: container.to_owned(),
            peers: Vec::new(),
            active: true,
        };
        for peer in peers {
            let ip = ip_on(peer, network)?;
            for rule in rules(&ip) {
                iptables(container, "-A", &rule)?;
            }
            // Kept from the first rule on, so a failure half-way still
            // removes what was added.
            partition.peers.push(ip);
        }
        Ok(partition)
    }

    /// Removes the rules: the peers hear the container again.
    pub fn heal(mut self) -> anyhow::Result<()> {
        self.remove()
    }

    fn remove(&mut self) -> anyhow::Result<()> {
        self.active = false;
        let mut first_error = None;
        for ip in &self.peers {
            for rule in rules(ip) {
                if let Err(e) = iptables(&self.container, "-D", &rule) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The rules (without their `-A`/`-D`) that cut `ip` off, in order: TCP
/// from it is answered with a reset and TCP to it is reset locally
/// (`REJECT --reject-with tcp-reset`), the resets themselves let out, and
/// everything else dropped.
fn rules(ip: &str) -> Vec<Vec<&str>> {
    let tag = ["-m", "comment", "--comment", MARK];
    let rule = |head: &[&'static str], way: &'static str, tail: &[&'static str]| {
        let mut rule = head.to_vec();
        rule.extend(["-w", way, ip]);
        rule.extend(tag);
        rule.extend(tail);
        rule
    };
    let reset = ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"];
    vec![
        rule(&["INPUT"], "-s", &reset),
        rule(&["INPUT"], "-s", &["-j", "DROP"]),
        rule(
            &["OUTPUT"],
            "-d",
            &["-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "ACCEPT"],
        ),
        rule(&["OUTPUT"], "-d", &reset),
        rule(&["OUTPUT"], "-d", &["-j", "DROP"]),
    ]
}

impl Drop for Partition {
    fn drop(&mut self) {
        if self.active {
            // Best effort: the container may be gone already.
            let _ = self.remove();
        }
    }
}
