//! The Docker host's tools, run as commands: the `docker` CLI
//! ([`crate::docker_cli`]), and a command inside a container's network
//! namespace.

use std::process::Command;

use anyhow::{Context, bail};

pub(crate) use crate::docker_cli::docker;
use crate::docker_cli::run;

/// Runs `program <args>` inside `container`'s network namespace
/// (`nsenter -t <pid> -n`), with the host's own executable: the images
/// hold no `tc`, `ip` or `iptables`.
pub(crate) fn in_netns(container: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let pid = pid(container)?;
    let target = pid.to_string();
    run(Command::new("nsenter")
        .args(["-t", &target, "-n", program])
        .args(args))
    .with_context(|| format!("{program} {} in {container}'s network", args.join(" ")))
}

/// Runs `iptables <action> <rule>` inside `container`'s network namespace:
/// `action` is `-I`, `-A` or `-D`, the one word a rule is added or removed by.
pub(crate) fn iptables(container: &str, action: &str, rule: &[&str]) -> anyhow::Result<String> {
    let mut args = Vec::with_capacity(rule.len() + 1);
    args.push(action);
    args.extend_from_slice(rule);
    in_netns(container, "iptables", &args)
}

/// Why host faults cannot run here (`Err`), or `Ok` when they can: Docker
/// answers and `nsenter`, `tc` and `iptables` are on the host.
pub fn docker_reachable_for_hosts() -> Result<(), String> {
    crate::nats::select::docker_reachable()?;
    for tool in ["nsenter", "tc", "iptables", "ip"] {
        let found = Command::new(tool)
            .arg(if tool == "nsenter" { "--version" } else { "-V" })
            .output()
            .is_ok();
        if !found {
            return Err(format!("`{tool}` is not on this host"));
        }
    }
    Ok(())
}

/// The process id of `container`'s main process, on the host.
fn pid(container: &str) -> anyhow::Result<u32> {
    let text = docker(&["inspect", "--format", "{{.State.Pid}}", container])?;
    match text.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => bail!("container {container} is not running (pid {text:?})"),
    }
}

/// `container`'s IPv4 address on `network`.
pub fn ip_on(container: &str, network: &str) -> anyhow::Result<String> {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let ip = docker(&["inspect", "--format", &format, container])?;
    if ip.is_empty() || ip == "<no value>" {
        bail!("container {container} has no address on network {network}");
    }
    Ok(ip)
}

/// The name of `container`'s interface on `network` (e.g. `eth1`): the one
/// holding its address there.
pub(crate) fn interface_on(container: &str, network: &str) -> anyhow::Result<String> {
    let ip = ip_on(container, network)?;
    let addrs = in_netns(container, "ip", &["-o", "-4", "addr", "show"])?;
    let needle = format!(" inet {ip}/");
    addrs
        .lines()
        .find(|line| line.contains(&needle))
        .and_then(|line| line.split_whitespace().nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .with_context(|| format!("no interface of {container} holds {ip}:\n{addrs}"))
}
