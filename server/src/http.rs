//! The HTTP endpoints of `PROTOCOL.md` §6: `/health`, `/stats` and
//! `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;

use crate::shared::Shared;

/// The page's Content-Security-Policy: its own scripts and stylesheet only
/// (no inline code), WebSocket connections to any gateway the user names,
/// and no framing, plugins, base or form targets. It is sent with every
/// HTTP answer (it costs nothing on the JSON ones).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src ws: wss:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The HTTP routes, served on the HTTP address.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .merge(crate::client_page::routes())
        .layer(axum::middleware::map_response(security_headers))
        .with_state(shared)
}

/// The headers every HTTP answer carries: the page may not be framed
/// (clickjacking), run foreign or inline code, or leak its address (with
/// whatever it holds) to other sites, and no answer is sniffed into another
/// type.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `200` while the server can serve; `503` while NATS is unreachable (clients
/// stay connected, but no live events flow). With a second NATS connection,
/// events flow while either is up; both are then named (`natsFirst`,
/// `natsSecond`). With a last-prices store, `503` also while the store does
/// not answer (`lastPrices`: the gateway's NATS node is likely cut off from
/// its cluster, and prices published elsewhere do not reach it;
/// [`crate::last_prices::StoreHealth`]).
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let connected = shared.nats_connected();
    let store = shared.store.as_ref().map(|s| s.is_reachable());
    let serving = connected && store != Some(false);
    let word = |up: bool| if up { "connected" } else { "disconnected" };
    let mut body = json!({
        "status": if serving { "ok" } else { "degraded" },
        "nats": word(connected),
        "serverId": shared.server_id,
        "connections": shared.metrics.connections.get(),
        "uptimeSeconds": shared.metrics.uptime_seconds(),
    });
    if let (first, Some(second)) = shared.nats_connections() {
        body["natsFirst"] = word(first).into();
        body["natsSecond"] = word(second).into();
    }
    if let Some(reachable) = store {
        body["lastPrices"] = if reachable {
            "reachable"
        } else {
            "unreachable"
        }
        .into();
    }
    let body = Json(body);
    let status = if serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(
        shared
            .metrics
            .snapshot(&shared.server_id, shared.nats_connected()),
    )
    .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}
