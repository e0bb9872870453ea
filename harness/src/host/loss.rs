//! Packet loss without netem: `iptables`' `statistic` match drops a share
//! of the packets in and out of a container's interface on a network, at
//! random, inside its network namespace. For kernels built without
//! `sch_netem` (some VM kernels), where [`super::Netem`] cannot run; it
//! adds no delay.

use super::docker::{in_netns, interface_on, iptables};

/// The comment that marks this harness's loss rules.
const MARK: &str = "odin-harness-loss";

/// Random loss on one interface of a container, both ways; removed on drop.
#[derive(Debug)]
pub struct PacketLoss {
    container: String,
    interface: String,
    probability: String,
}

impl PacketLoss {
    /// Drops `percent` % of the packets `container` sends and receives on
    /// `network`, each direction on its own.
    pub fn apply(container: &str, network: &str, percent: f64) -> anyhow::Result<PacketLoss> {
        let loss = PacketLoss {
            container: container.to_owned(),
            interface: interface_on(container, network)?,
            probability: format!("{:.4}", percent / 100.0),
        };
        for rule in loss.rules() {
            iptables(container, "-I", &rule)?;
        }
        Ok(loss)
    }

    /// The two rules, without their `-I`/`-D`.
    fn rules(&self) -> [[&str; 16]; 2] {
        let rule = |chain, way| {
            [
                chain,
                "-w",
                way,
                self.interface.as_str(),
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                self.probability.as_str(),
                "-m",
                "comment",
                "--comment",
                MARK,
                "-j",
                "DROP",
            ]
        };
        [rule("INPUT", "-i"), rule("OUTPUT", "-o")]
    }

    /// `iptables -L -v` of the rules: how many packets were dropped.
    pub fn stats(&self) -> anyhow::Result<String> {
        Ok(self.rule_lines()?.join("; "))
    }

    /// Packets dropped so far, both ways.
    pub fn dropped(&self) -> anyhow::Result<u64> {
        Ok(self
            .rule_lines()?
            .iter()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    fn rule_lines(&self) -> anyhow::Result<Vec<String>> {
        let out = in_netns(&self.container, "iptables", &["-w", "-L", "-v", "-n", "-x"])?;
        Ok(out
            .lines()
            .filter(|l| l.contains(MARK))
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for PacketLoss {
    fn drop(&mut self) {
        for rule in self.rules() {
            // Best effort: the container may be gone already.
            let _ = iptables(&self.container, "-D", &rule);
        }
    }
}
