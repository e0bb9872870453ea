//! A slow, lossy link: `tc qdisc ... netem` on a container's interface on a
//! network, run inside its network namespace. netem shapes what leaves the
//! interface: every packet the container sends on that network is delayed
//! (with jitter, so some overtake others) and some are lost; what it
//! receives is not touched.

use std::process::Command;
use std::time::Duration;

use super::docker::{in_netns, interface_on};

/// Whether this kernel has netem (`Err` says why not): tried on the
/// loopback of a throwaway network namespace (`unshare --net`), so
/// nothing needs removing.
pub fn netem_available() -> Result<(), String> {
    let output = Command::new("unshare")
        .args(["--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem"])
        .args(["delay", "1ms"])
        .output()
        .map_err(|e| format!("cannot run unshare/tc: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "this kernel has no netem (sch_netem): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// What the link does to each packet leaving the container.
#[derive(Debug, Clone, Copy)]
pub struct NetemSpec {
    /// Mean added delay.
    pub delay: Duration,
    /// Each packet's delay is `delay` ± up to this much.
    pub jitter: Duration,
    /// Share of packets dropped, in percent.
    pub loss_percent: f64,
}

impl NetemSpec {
    /// `tc`'s words for it: `delay 100ms 20ms loss 1%`.
    fn tc_args(&self) -> Vec<String> {
        vec![
            "delay".into(),
            format!("{}ms", self.delay.as_millis()),
            format!("{}ms", self.jitter.as_millis()),
            "loss".into(),
            format!("{}%", self.loss_percent),
        ]
    }
}

/// netem on one interface of a container, removed on drop.
#[derive(Debug)]
pub struct Netem {
    container: String,
    interface: String,
}

impl Netem {
    /// Applies `spec` to `container`'s interface on `network`.
    pub fn apply(container: &str, network: &str, spec: NetemSpec) -> anyhow::Result<Netem> {
        let interface = interface_on(container, network)?;
        let mut args = vec!["qdisc", "add", "dev", &interface, "root", "netem"];
        let spec_args = spec.tc_args();
        args.extend(spec_args.iter().map(String::as_str));
        in_netns(container, "tc", &args)?;
        Ok(Netem {
            container: container.to_owned(),
            interface,
        })
    }

    /// The interface shaped (e.g. `eth0`).
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// `tc -s qdisc show` of the interface: its counters (sent, dropped),
    /// e.g. to show that the loss happened.
    pub fn stats(&self) -> anyhow::Result<String> {
        in_netns(
            &self.container,
            "tc",
            &["-s", "qdisc", "show", "dev", &self.interface],
        )
    }
}

impl Drop for Netem {
    fn drop(&mut self) {
        // Best effort: the container may be gone already.
        let _ = in_netns(
            &self.container,
            "tc",
            &["qdisc", "del", "dev", &self.interface, "root"],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_tc() {
        let spec = NetemSpec {
            delay: Duration::from_millis(100),
            jitter: Duration::from_millis(20),
            loss_percent: 1.0,
        };
        assert_eq!(spec.tc_args().join(" "), "delay 100ms 20ms loss 1%");
    }
}
