//! A minimal client for the NATS monitoring endpoints (`/healthz`, `/varz`,
//! `/connz`, `/routez`, `/jsz`).
//!
//! One HTTP/1.0 GET over a fresh TCP connection is all these endpoints need;
//! it keeps a full HTTP client out of the harness's dependencies.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Monitoring answers of a test server are small; this bounds a bad one.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// GETs `path` (e.g. `"/varz?subs=1"`) from `base` (`http://host:port`) and
/// parses the JSON body; a non-2xx status is an error carrying the body.
pub async fn get_json(base: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let body = get(base, path).await?;
    serde_json::from_slice(&body).with_context(|| format!("GET {base}{path}: body is not JSON"))
}

/// GETs `path` from `base` and returns the body of a 2xx answer.
pub async fn get(base: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("{base} is not an http:// URL"))?
        .trim_end_matches('/');
    let request = async {
        let mut stream = TcpStream::connect(authority).await?;
        let head =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = timeout(REQUEST_TIMEOUT, request)
        .await
        .with_context(|| format!("GET {base}{path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("GET {base}{path}"))?;
    let (status, body) = split_response(&response)
        .with_context(|| format!("GET {base}{path}: malformed HTTP answer"))?;
    if !(200..300).contains(&status) {
        bail!(
            "GET {base}{path}: HTTP {status}: {}",
            String::from_utf8_lossy(body)
        );
    }
    Ok(body.to_vec())
}

/// The status code and body of a raw HTTP/1.x response.
fn split_response(response: &[u8]) -> Option<(u16, &[u8])> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, &response[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_status_and_body() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}";
        assert_eq!(split_response(r), Some((200, &b"{\"a\":1}"[..])));
        assert_eq!(split_response(b"garbage"), None);
    }
}
