//! `docker-compose.yml`, `Dockerfile` and `.dockerignore` cannot be run on
//! machines without a Docker engine, so they are checked here for what would
//! break them: the YAML parses; the services, ports and images fit together;
//! every `ODIN_*` variable is one the binary reads, with a value its own
//! flag parser accepts; the Dockerfile's stages, `COPY` sources and binaries
//! exist; and the ignore file keeps the sources in the build context.

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

#[test]
fn compose_file_wires_nats_server_and_publisher() {
    let compose = compose();
    let names: Vec<&str> = compose["services"]
        .as_mapping()
        .expect("services")
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, ["nats", "server", "publisher"]);

    // NATS: JetStream on, monitoring port published.
    let nats = service(&compose, "nats");
    assert!(nats["image"].as_str().unwrap().starts_with("nats:"));
    let command = strings(nats.get("command"));
    assert!(
        command.iter().any(|a| a == "-js" || a == "--jetstream"),
        "{command:?}"
    );
    let monitor = command
        .iter()
        .position(|a| a == "-m" || a == "--http_port")
        .map(|i| command[i + 1].clone())
        .expect("a monitoring port");
    let ports = strings(nats.get("ports"));
    assert!(ports.contains(&"4222:4222".to_owned()), "{ports:?}");
    assert!(ports.contains(&format!("{monitor}:{monitor}")), "{ports:?}");

    for (name, target) in [("server", "server"), ("publisher", "publisher")] {
        let s = service(&compose, name);
        assert_eq!(s["build"]["context"].as_str(), Some("."), "{name}");
        assert_eq!(s["build"]["target"].as_str(), Some(target), "{name}");
        // Environment only: a command line would bypass it.
        assert!(s.get("command").is_none(), "{name} sets flags");
        assert!(
            s["depends_on"].get("nats").is_some(),
            "{name} must wait for nats"
        );
        let env = environment(s);
        assert_eq!(
            env.get("ODIN_NATS_URL").cloned().flatten().as_deref(),
            Some("nats://nats:4222"),
            "{name} reaches NATS by its service name"
        );
    }

    // The server: its listen addresses are the published ports, and its own
    // parser accepts every value.
    let server = service(&compose, "server");
    let env = environment(server);
    let ports = strings(server.get("ports"));
    for var in ["ODIN_WS_ADDR", "ODIN_HTTP_ADDR"] {
        let addr: std::net::SocketAddr = env[var].as_deref().unwrap().parse().unwrap();
        assert!(
            addr.ip().is_unspecified(),
            "{var} must listen on 0.0.0.0 in a container"
        );
        let mapping = format!("{0}:{0}", addr.port());
        assert!(
            ports.contains(&mapping),
            "{var}: {mapping} not in {ports:?}"
        );
    }
    let flags = as_flags(&odin_server::config::Cli::command(), &env);
    let cli = odin_server::config::Cli::try_parse_from(&flags)
        .unwrap_or_else(|e| panic!("odin-server refuses {flags:?}: {e}"));
    cli.server
        .into_config()
        .unwrap_or_else(|e| panic!("odin-server refuses {flags:?}: {e}"));

    let publisher = service(&compose, "publisher");
    let env = environment(publisher);
    let flags = as_flags(&odin_publisher::PublisherConfig::command(), &env);
    let config = odin_publisher::PublisherConfig::try_parse_from(&flags)
        .unwrap_or_else(|e| panic!("odin-publisher refuses {flags:?}: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("odin-publisher refuses {flags:?}: {e}"));
}

/// The Dockerfile as instructions: continuation lines joined, comments gone.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let joined = std::mem::take(&mut current);
                if let Some((op, rest)) = joined.trim().split_once(char::is_whitespace) {
                    out.push((op.to_ascii_uppercase(), rest.trim().to_owned()));
                }
            }
        }
    }
    out
}

#[test]
fn dockerfile_stages_sources_and_binaries_exist() {
    let text = read("Dockerfile");
    let repo = repo();
    let mut stages: Vec<String> = Vec::new();
    let mut exposed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut copied: Vec<String> = Vec::new();
    for (op, args) in instructions(&text) {
        match op.as_str() {
            "FROM" => {
                let words: Vec<&str> = args.split_whitespace().collect();
                let base = words[0];
                assert!(
                    base.contains(':') || stages.iter().any(|s| s == base),
                    "FROM {base}: neither a pinned image nor an earlier stage"
                );
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => panic!("every stage is named: FROM {args}"),
                };
                stages.push(name);
            }
            "COPY" => {
                let words: Vec<&str> = args.split_whitespace().collect();
                let (from, paths): (Vec<&str>, Vec<&str>) =
                    words.iter().partition(|w| w.starts_with("--"));
                let (dest, sources) = paths.split_last().expect("COPY has a destination");
                match from.iter().find_map(|f| f.strip_prefix("--from=")) {
                    Some(stage) => {
                        assert!(
                            stages.iter().any(|s| s == stage),
                            "COPY --from={stage}: no such earlier stage"
                        );
                        copied.push(dest.to_string());
                    }
                    None => {
                        for src in sources {
                            assert!(repo.join(src).exists(), "COPY {src}: not in the repository");
                        }
                    }
                }
            }
            "EXPOSE" => {
                let stage = stages.last().expect("EXPOSE inside a stage").clone();
                exposed
                    .entry(stage)
                    .or_default()
                    .extend(args.split_whitespace().map(str::to_owned));
            }
            "ENTRYPOINT" => {
                let argv: Vec<String> =
                    serde_json::from_str(&args).expect("ENTRYPOINT in exec form");
                assert!(
                    copied.contains(&argv[0]),
                    "ENTRYPOINT {} was not copied in",
                    argv[0]
                );
            }
            "RUN" if args.contains("cargo build") => {
                for bin in ["odin-server", "odin-publisher"] {
                    assert!(
                        args.contains(&format!("--bin {bin}")),
                        "the build makes {bin}"
                    );
                }
            }
            _ => {}
        }
    }
    // The targets compose builds are stages; the server exposes its ports.
    for target in ["server", "publisher"] {
        assert!(
            stages.iter().any(|s| s == target),
            "no stage {target}: {stages:?}"
        );
    }
    assert_eq!(
        exposed.get("server").map(Vec::as_slice),
        Some(&["8080".to_owned(), "3001".to_owned()][..])
    );
    // The binaries the build names exist in the workspace.
    for (dir, bin) in [("server", "odin-server"), ("publisher", "odin-publisher")] {
        assert!(repo.join(dir).join("src/main.rs").is_file());
        assert!(read(&format!("{dir}/Cargo.toml")).contains(&format!("name = \"{bin}\"")));
    }
}

#[test]
fn dockerignore_keeps_the_sources_in_the_build_context() {
    let text = read(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns.contains(&"target/") || patterns.contains(&"target"),
        "target/ must be ignored"
    );
    let needed = [
        "Cargo.toml",
        "Cargo.lock",
        "client",
        "protocol",
        "server",
        "publisher",
        "harness",
        "loadtests",
    ];
    for pattern in &patterns {
        let bare = pattern.trim_end_matches('/');
        assert!(
            !matches!(bare, "*" | "**" | "."),
            "{pattern} ignores everything"
        );
        assert!(
            !needed.contains(&bare),
            "{pattern} drops a part of the build"
        );
    }
    for part in needed {
        assert!(
            repo().join(part).exists(),
            "{part} is missing from the workspace"
        );
    }
}
