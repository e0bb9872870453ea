//! A minimal client for the NATS monitoring endpoints (`/healthz`, `/varz`,
//! `/connz`, `/routez`, `/jsz`).
//!
//! One GET over a fresh TCP connection is all these endpoints need: the
//! harness's own client ([`crate::http`]).

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::timeout;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `path` (e.g. `"/varz?subs=1"`) from `base` (`http://host:port`) and
/// parses the JSON body; a non-2xx status is an error carrying the body.
pub async fn get_json(base: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let body = get(base, path).await?;
    serde_json::from_slice(&body).with_context(|| format!("GET {base}{path}: body is not JSON"))
}

/// GETs `path` from `base` (through [`crate::http`], the harness's one HTTP
/// client) and returns the body of a 2xx answer.
pub async fn get(base: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("{base} is not an http:// URL"))?
        .trim_end_matches('/');
    let request = async {
        let addr = tokio::net::lookup_host(authority)
            .await?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        crate::http::get(addr, path).await
    };
    let response = timeout(REQUEST_TIMEOUT, request)
        .await
        .with_context(|| format!("GET {base}{path}: no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("GET {base}{path}"))?;
    if !(200..300).contains(&response.status) {
        bail!(
            "GET {base}{path}: HTTP {}: {}",
            response.status,
            response.body
        );
    }
    Ok(response.body.into_bytes())
}
