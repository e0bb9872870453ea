//! `odin-server health`: asks an HTTP health endpoint whether it answers
//! `200`, for container health checks. The images are `FROM scratch` (no
//! shell, no curl), so the binary that is already in them does the asking;
//! the same command checks NATS's monitoring `/healthz` where `odin-server`
//! is copied in beside `nats-server`.
//!
//! One plain HTTP/1.1 `GET` on a blocking socket, the status line read and
//! nothing else: a health check needs no HTTP client library, and the server
//! carries none (axum only serves).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a health check failed, in one line.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Not an `http://host:port/path` URL.
    #[error("{0}: not an http://host:port/path URL")]
    Url(String),
    /// The host name resolves to no address.
    #[error("{0}: cannot resolve the address: {1}")]
    Resolve(String, String),
    /// Nothing accepts a connection there.
    #[error("{url}: cannot connect: {source}")]
    Connect {
        /// The URL asked.
        url: String,
        /// What the socket said.
        source: std::io::Error,
    },
    /// Connected, but the answer did not come (in time, or at all).
    #[error("{url}: no answer: {source}")]
    NoAnswer {
        /// The URL asked.
        url: String,
        /// What the socket said.
        source: std::io::Error,
    },
    /// The first line of the answer is not an HTTP status line.
    #[error("{url}: not an HTTP answer: {line:?}")]
    NotHttp {
        /// The URL asked.
        url: String,
        /// The line that came instead.
        line: String,
    },
    /// An answer other than `200`.
    #[error("{url}: answered {status}")]
    Unhealthy {
        /// The URL asked.
        url: String,
        /// The status line's code and reason, as sent.
        status: String,
    },
}

/// The URL `odin-server health` asks by default: the server's own `/health`
/// at its HTTP address, on loopback when it listens on every interface.
pub fn default_url(http_addr: SocketAddr) -> String {
    let mut addr = http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/health")
}

/// GETs `url` and returns the status line when the answer is `200`; every
/// other outcome (no connection, no answer within `timeout`, another status)
/// is an error that names the URL and says what happened.
pub fn check(url: &str, timeout: Duration) -> Result<String, HealthError> {
    let (authority, path) = split_url(url).ok_or_else(|| HealthError::Url(url.to_owned()))?;
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| HealthError::Resolve(url.to_owned(), e.to_string()))?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining(deadline)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| HealthError::Connect {
        url: url.to_owned(),
        source: last,
    })?;
    let no_answer = |source| HealthError::NoAnswer {
        url: url.to_owned(),
        source,
    };
    stream
        .set_write_timeout(Some(remaining(deadline)))
        .map_err(no_answer)?;
    stream
        .set_read_timeout(Some(remaining(deadline)))
        .map_err(no_answer)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    (&stream).write_all(request.as_bytes()).map_err(no_answer)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .take(1024)
        .read_line(&mut line)
        .map_err(no_answer)?;
    let line = line.trim_end().to_owned();
    let status = match line.split_once(' ') {
        Some((version, status)) if version.starts_with("HTTP/") => status.to_owned(),
        _ => {
            return Err(HealthError::NotHttp {
                url: url.to_owned(),
                line,
            });
        }
    };
    if status.split(' ').next() == Some("200") {
        Ok(line)
    } else {
        Err(HealthError::Unhealthy {
            url: url.to_owned(),
            status,
        })
    }
}

/// What is left until `deadline`, never zero (a zero timeout means "none"
/// to the socket calls).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// `http://host:port/path?query` → (`host:port`, `/path?query`).
pub(crate) fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    // A port is required: a health check names exactly what it asks.
    let (host, port) = authority.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok()).then_some((authority, path))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A one-shot HTTP peer that answers `reply` to the first request and
    /// hands back what it was asked.
    fn peer(reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut asked = Vec::new();
            let mut buf = [0; 1024];
            while !asked.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                asked.extend_from_slice(&buf[..n]);
            }
            socket.write_all(reply.as_bytes()).unwrap();
            String::from_utf8(asked).unwrap()
        });
        (
            format!("http://{addr}/healthz?js-enabled-only=true"),
            handle,
        )
    }

    #[test]
    fn a_200_is_healthy_and_the_request_names_path_and_host() {
        let (url, asked) = peer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let line = check(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(line, "HTTP/1.1 200 OK");
        let asked = asked.join().unwrap();
        let authority = url.trim_start_matches("http://").split('/').next().unwrap();
        assert!(
            asked.starts_with("GET /healthz?js-enabled-only=true HTTP/1.1\r\n"),
            "{asked}"
        );
        assert!(asked.contains(&format!("Host: {authority}\r\n")), "{asked}");
    }

    #[test]
    fn any_other_status_is_unhealthy_with_the_status_in_the_message() {
        let (url, _) = peer("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = check(&url, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, HealthError::Unhealthy { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{url}: answered 503 Service Unavailable")
        );
    }

    #[test]
    fn garbage_silence_and_a_closed_port_are_errors() {
        let (url, _) = peer("SSH-2.0-OpenSSH\r\n");
        assert!(matches!(
            check(&url, Duration::from_secs(5)),
            Err(HealthError::NotHttp { .. })
        ));

        // Accepts (the backlog does) but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", silent.local_addr().unwrap());
        let started = Instant::now();
        let err = check(&url, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, HealthError::NoAnswer { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));

        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = check(&format!("http://{closed}/health"), Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, HealthError::Connect { .. }), "{err}");
    }

    #[test]
    fn urls_need_http_a_host_and_a_port() {
        for bad in [
            "https://127.0.0.1:3001/health",
            "http://127.0.0.1/health",
            "http://:3001/health",
            "127.0.0.1:3001",
        ] {
            assert!(
                matches!(check(bad, Duration::from_secs(1)), Err(HealthError::Url(_))),
                "{bad}"
            );
        }
        assert_eq!(split_url("http://h:1"), Some(("h:1", "/")));
    }

    #[test]
    fn the_default_url_is_the_servers_own_health_on_loopback() {
        assert_eq!(
            default_url("0.0.0.0:3001".parse().unwrap()),
            "http://127.0.0.1:3001/health"
        );
        assert_eq!(
            default_url("[::]:3002".parse().unwrap()),
            "http://[::1]:3002/health"
        );
        assert_eq!(
            default_url("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80/health"
        );
    }
}
