//! `docker-compose.yml` checked without a Docker engine, for what would
//! break it (`make compose-test` runs it for real): the YAML parses; the
//! services, images, ports, routes, volumes and health checks fit together;
//! every `ODIN_*` variable is one the binary reads, with a value its own
//! flag parser accepts, and the gateways' settings are the ones the stack
//! needs (the last-prices stream on all three nodes, no per-address budget
//! behind Docker's port proxy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser};
use serde_norway::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the workspace root")
}

fn read(name: &str) -> String {
    let path = repo().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn compose() -> Value {
    serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is valid YAML")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose
        .get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("service {name} is missing"))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string item").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A service's environment: name → value, `None` for a pass-through
/// variable (`NAME:` with no value). `${VAR:-default}` reads as `default`,
/// what it is when the variable is not set.
fn environment(service: &Value) -> BTreeMap<String, Option<String>> {
    let env = service
        .get("environment")
        .and_then(Value::as_mapping)
        .expect("environment is a mapping");
    env.iter()
        .map(|(k, v)| {
            let name = k.as_str().expect("variable names are strings").to_owned();
            let value = match v {
                Value::Null => None,
                Value::String(s) => Some(default_of(s)),
                other => panic!("{name} must be a quoted string, not {other:?}"),
            };
            (name, value)
        })
        .collect()
}

fn default_of(s: &str) -> String {
    match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default(),
        None => s.to_owned(),
    }
}

/// Turns `ODIN_*` variables into the flags they stand for, per `command`'s
/// own definitions; panics on a variable the binary does not read.
fn as_flags(command: &clap::Command, env: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut flags = vec![command.get_name().to_owned()];
    for (name, value) in env {
        assert!(
            name.starts_with("ODIN_") || name == "RUST_LOG",
            "{name}: not an Odin setting"
        );
        if name == "RUST_LOG" {
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| panic!("{} does not read {name}", command.get_name()));
        let long = arg.get_long().expect("every setting has a long flag");
        let Some(value) = value else { continue };
        if arg.get_action().takes_values() {
            flags.push(format!("--{long}={value}"));
        } else if matches!(value.as_str(), "1" | "true" | "yes" | "on") {
            flags.push(format!("--{long}"));
        }
    }
    flags
}

/// `${VAR:-default}` parts of a port mapping read as their defaults.
fn port_mapping(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("a closed ${") + i;
        out.push_str(&default_of(&rest[i..=end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The host ports a service publishes, by container port.
fn published(service: &Value) -> BTreeMap<String, String> {
    strings(service.get("ports"))
        .iter()
        .map(|p| {
            let mapping = port_mapping(p);
            let parts: Vec<&str> = mapping.split(':').collect();
            let [bind, host, container] = parts[..] else {
                panic!("{p}: not bind:host:container")
            };
            assert_eq!(bind, "127.0.0.1", "{p}: published on loopback by default");
            (container.to_owned(), host.to_owned())
        })
        .collect()
}

/// The services a service waits for, each to be healthy.
fn waits_for(service: &Value) -> Vec<String> {
    let deps = service["depends_on"].as_mapping().expect("depends_on");
    deps.iter()
        .map(|(k, v)| {
            assert_eq!(
                v["condition"].as_str(),
                Some("service_healthy"),
                "waits for {k:?} to be healthy"
            );
            k.as_str().unwrap().to_owned()
        })
        .collect()
}

/// The health check's command, which must be a binary in the image
/// (FROM scratch: no shell).
fn health_check(service: &Value) -> Vec<String> {
    let test = strings(service["healthcheck"].get("test"));
    assert_eq!(test.first().map(String::as_str), Some("CMD"), "{test:?}");
    test[1..].to_vec()
}

const NODES: [&str; 3] = ["nats1", "nats2", "nats3"];

#[test]
fn compose_file_runs_a_nats_cluster_two_gateways_and_the_publisher() {
    let compose = compose();
    let names: Vec<&str> = compose["services"]
        .as_mapping()
        .expect("services")
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "nats1",
            "nats2",
            "nats3",
            "gateway1",
            "gateway2",
            "publisher"
        ]
    );
    for name in &names {
        let image = service(&compose, name)["image"].as_str().unwrap();
        assert!(
            image.ends_with(":${ODIN_IMAGE_TAG:-local}"),
            "{name}: {image} is one of make images' (no registry)"
        );
        assert!(
            service(&compose, name).get("build").is_none(),
            "{name} builds nothing"
        );
    }

    // NATS: a cluster routed by service name, JetStream in its own volume,
    // monitoring on, healthy when its /healthz says so.
    let volumes = compose["volumes"].as_mapping().expect("volumes");
    for node in NODES {
        let s = service(&compose, node);
        assert!(s["image"].as_str().unwrap().starts_with("odin-nats-node:"));
        let command = strings(s.get("command"));
        let arg = |flag: &str| {
            command
                .iter()
                .position(|a| a == flag)
                .map(|i| command[i + 1].clone())
                .unwrap_or_else(|| panic!("{node}: no {flag} in {command:?}"))
        };
        assert!(command.iter().any(|a| a == "-js"), "{node}: JetStream");
        assert_eq!(arg("--name"), node);
        assert_eq!(arg("--cluster_name"), "odin");
        assert_eq!(arg("--cluster"), "nats://0.0.0.0:6222");
        let others: Vec<String> = NODES
            .iter()
            .filter(|n| **n != node)
            .map(|n| format!("nats://{n}:6222"))
            .collect();
        assert_eq!(arg("--routes"), others.join(","), "{node}");
        assert_eq!(arg("-m"), "8222");
        let store = arg("-sd");
        let volume = format!("{node}-data");
        assert_eq!(strings(s.get("volumes")), [format!("{volume}:{store}")]);
        assert!(volumes.contains_key(volume.as_str()), "{volume} declared");
        assert_eq!(
            health_check(s),
            [
                "/odin-server",
                "health",
                "--url",
                "http://127.0.0.1:8222/healthz"
            ]
        );
    }
    let nats1 = published(service(&compose, "nats1"));
    assert_eq!(nats1.get("4222").map(String::as_str), Some("4222"));
    assert_eq!(nats1.get("8222").map(String::as_str), Some("8222"));
    let all_nodes = "nats://nats1:4222,nats://nats2:4222,nats://nats3:4222";

    // The gateways: each setting parsed by the server's own command line,
    // and the settings the stack needs.
    let mut host_ports = Vec::new();
    for gateway in ["gateway1", "gateway2"] {
        let s = service(&compose, gateway);
        assert!(s["image"].as_str().unwrap().starts_with("odin-server:"));
        assert!(s.get("command").is_none(), "{gateway} sets flags");
        assert_eq!(waits_for(s), NODES);
        assert_eq!(health_check(s), ["/odin-server", "health"]);
        let env = environment(s);
        let flags = as_flags(&odin_server::config::Cli::command(), &env);
        let cli = odin_server::config::Cli::try_parse_from(&flags)
            .unwrap_or_else(|e| panic!("odin-server refuses {flags:?}: {e}"));
        let config = cli
            .server
            .into_config()
            .unwrap_or_else(|e| panic!("odin-server refuses {flags:?}: {e}"));
        assert_eq!(
            config.nats_url, all_nodes,
            "{gateway} reaches every node by name"
        );
        let stream = config.last_prices.expect("the last-prices stream is on");
        assert_eq!(
            stream.replicas, 3,
            "{gateway}: the stream on all three nodes"
        );
        let limits = config.address_limits;
        assert!(
            limits.max_connections.is_none()
                && limits.connect_rate.is_none()
                && limits.auth_failures.is_none(),
            "{gateway}: per-address budgets off behind Docker's port proxy: {limits:?}"
        );
        let ports = published(s);
        for (var, addr) in [
            ("ODIN_WS_ADDR", config.ws_addr),
            ("ODIN_HTTP_ADDR", config.http_addr),
        ] {
            assert!(
                addr.ip().is_unspecified(),
                "{gateway} {var}: 0.0.0.0 in a container"
            );
            let host = ports
                .get(&addr.port().to_string())
                .unwrap_or_else(|| panic!("{gateway} publishes {var}'s port"));
            host_ports.push(host.clone());
        }
    }
    assert_eq!(host_ports, ["8080", "3001", "8081", "3002"]);

    // The publisher: after the gateways (their stream holds its first
    // price), healthy while its events are on NATS.
    let publisher = service(&compose, "publisher");
    assert_eq!(waits_for(publisher), ["gateway1", "gateway2"]);
    assert_eq!(health_check(publisher)[..2], ["/odin-publisher", "health"]);
    let env = environment(publisher);
    let flags = as_flags(&odin_publisher::PublisherConfig::command(), &env);
    let config = odin_publisher::PublisherConfig::try_parse_from(&flags)
        .unwrap_or_else(|e| panic!("odin-publisher refuses {flags:?}: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("odin-publisher refuses {flags:?}: {e}"));
    assert_eq!(config.nats_url, "nats://nats3:4222");
    odin_publisher::health::HealthArgs::try_parse_from(
        std::iter::once("health").chain(health_check(publisher)[2..].iter().map(String::as_str)),
    )
    .expect("the publisher's health flags parse");
}
