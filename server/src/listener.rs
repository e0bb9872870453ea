//! Accepts TCP connections on the WebSocket address and runs each upgrade:
//! the descriptor share and the source address's budgets at accept (`503`
//! or `429`, see [`crate::fairness`]), then path check, protocol version
//! (`400`), failed-auth bar (`429`), connection limit (`503`), token check
//! (`401` with the JSON body of `PROTOCOL.md` §2), then hands the socket to
//! [`crate::connection`].
//! With TLS the handshake comes first, inside the same deadline and under
//! the same budget of upgrades under way: a client that never finishes it
//! holds one slot for the handshake timeout, like one that never sends its
//! request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use odin_protocol::ProtocolVersion;
use odin_protocol::message::AuthErrorBody;
use odin_protocol::version::{QUERY_PARAMETER, UnsupportedVersion};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, token_from_request};
use crate::connection::{self, Admitted};
use crate::fairness::{CountedConnection, TurnedAway, retry_after_secs};
use crate::inflating::Inflating;
use crate::shared::Shared;
use crate::socket::{ClientSocket, RequestHead, answer_and_close, read_request_head};
use crate::stream::{ClientStream, WriteHalf};

/// The WebSocket endpoint's path.
pub const WS_PATH: &str = "/ws";

/// Sockets turned away at accept that are answered at once (each reads the
/// request, answers and closes within [`REFUSAL_TIME`]); beyond this many,
/// they are answered only if the request is there already, and closed.
const POLITE_REFUSALS: usize = 64;

/// How long a socket turned away at accept may take to send its request.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Accepts connections until shutdown; every connection task is tracked so
/// shutdown can wait for them.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    let config = websocket_config(&shared);
    // Sockets that have not finished the handshake hold a descriptor for up
    // to the handshake timeout each: they have a budget of their own.
    let upgrades = Arc::new(Semaphore::new(shared.config.max_pending_upgrades));
    let refusals = Arc::new(Semaphore::new(POLITE_REFUSALS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly
                // instead of spinning; the listener stays usable.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The WebSocket share of the descriptors (admitted connections and
        // sockets in the handshake) is never exceeded, so HTTP and NATS keep
        // theirs; within it, sockets in the handshake have their own cap.
        let handshaking = shared.config.max_pending_upgrades - upgrades.available_permits();
        let refusing = POLITE_REFUSALS - refusals.available_permits();
        let within_share =
            shared.admitted() + handshaking + refusing < shared.descriptors.websocket;
        let upgrading = within_share
            .then(|| upgrades.clone().try_acquire_owned().ok())
            .flatten();
        let Some(upgrading) = upgrading else {
            shared.metrics.upgrades_refused.inc();
            if shared.may_log_refusal() {
                tracing::info!(%peer, "too many sockets on the WebSocket port; connection dropped");
            }
            continue;
        };
        let address = match shared.fairness.connect(peer.ip()) {
            Ok(counted) => counted,
            Err(why) => {
                drop(upgrading);
                turn_away(stream, peer, why, &shared, &refusals, &tracker);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let connections = tracker.clone();
        tracker.spawn(async move {
            let timeout = shared.config.handshake_timeout;
            let upgraded =
                tokio::time::timeout(timeout, upgrade(stream, peer, address, &shared, config))
                    .await;
            drop(upgrading);
            match upgraded {
                // A task of its own, so the handshake's state does not stay
                // allocated for the connection's lifetime.
                Ok(Some((ws, writer, admitted))) => {
                    connections.spawn(connection::serve(ws, writer, admitted, shared));
                }
                Ok(None) => {}
                Err(_) => tracing::debug!("handshake timed out"),
            }
        });
    }
}

/// Answers a socket its source address's budget turned away, `503` or
/// `429` with `Retry-After`, and closes it.
fn turn_away(
    stream: TcpStream,
    peer: SocketAddr,
    why: TurnedAway,
    shared: &Shared,
    refusals: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    let answer = match why {
        TurnedAway::Connections => {
            shared.metrics.address_busy.inc();
            refusal_answer(
                "503 Service Unavailable",
                ADDRESS_BUSY_RETRY,
                r#"{"error":"too many connections from this address","code":"address_busy"}"#,
            )
        }
        TurnedAway::ConnectRate(wait) => {
            shared.metrics.connect_rate_limited.inc();
            refusal_answer(
                "429 Too Many Requests",
                retry_after_secs(wait),
                r#"{"error":"this address opens connections too fast; retry later","code":"connect_rate_limited"}"#,
            )
        }
    };
    if shared.may_log_refusal() {
        tracing::info!(%peer, reason = ?why, "connection turned away by its address's budget");
    }
    if shared.tls.is_some() {
        // The answer would need a TLS handshake, the very work the budget
        // saves: the socket is closed unanswered.
        return;
    }
    match refusals.clone().try_acquire_owned() {
        Ok(permit) => {
            tracker.spawn(async move {
                let _ = tokio::time::timeout(REFUSAL_TIME, answer_and_close(stream, &answer)).await;
                drop(permit);
            });
        }
        // Too many being answered already: answer only if the request is
        // in, never waiting; the descriptor goes back at once.
        Err(_) => {
            let _ = stream.try_read(&mut [0u8; 2048]);
            let _ = stream.try_write(&answer);
        }
    }
}

/// `Retry-After` for a source address with its share of connections open.
const ADDRESS_BUSY_RETRY: u64 = 5;

/// A whole HTTP answer refusing an upgrade with a JSON body.
fn refusal_answer(status: &str, retry_after: u64, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nRetry-After: {retry_after}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn websocket_config(shared: &Shared) -> WebSocketConfig {
    let max = shared.config.max_message_bytes;
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        // Client messages are small; a small read buffer keeps idle
        // connections cheap (tungstenite's default is 128 KiB).
        .read_buffer_size(512)
        // After the upgrade tungstenite writes nothing that reaches the
        // socket (see `crate::socket`): hand its replies over at once
        // instead of collecting them.
        .write_buffer_size(0)
}

// The callback's `Result<Response, ErrorResponse>` is tungstenite's type.
#[allow(clippy::result_large_err)]
async fn upgrade(
    stream: TcpStream,
    peer: SocketAddr,
    address: CountedConnection,
    shared: &Arc<Shared>,
    config: WebSocketConfig,
) -> Option<(
    WebSocketStream<Inflating<ClientSocket>>,
    WriteHalf,
    Admitted,
)> {
    let mut admitted = None;
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let mut client =
            admit(req, peer, address, shared).map_err(|r| r.into_response(peer, shared))?;
        let enabled = shared.config.compression.is_some();
        if let Some(answer) = crate::compression::negotiate(enabled, req.headers()) {
            resp.headers_mut()
                .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, answer);
            client.compression = true;
        }
        admitted = Some(client);
        Ok(resp)
    };
    let stream = match &shared.tls {
        None => ClientStream::Plain(stream),
        Some(tls) => match tls.acceptor().accept(stream).await {
            Ok(stream) => ClientStream::Tls(Box::new(stream)),
            Err(e) => {
                shared.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return None;
            }
        },
    };
    let socket = match read_request_head(stream).await {
        RequestHead::Complete(socket) => socket,
        RequestHead::TooLarge => {
            if shared.may_log_refusal() {
                tracing::info!(%peer, "upgrade request header block too large (431)");
            }
            return None;
        }
        RequestHead::Gone => return None,
    };
    let socket = Inflating::new(socket);
    match tokio_tungstenite::accept_hdr_async_with_config(socket, callback, Some(config)).await {
        Ok(mut ws) => {
            let writer = ws.get_mut().get_mut().take_writer().expect("taken once");
            let admitted = admitted.expect("callback admitted the client");
            if admitted.compression {
                // The client's compressed messages, inflated within the
                // same limit as plain ones.
                ws.get_mut().enable(shared.config.max_message_bytes);
                shared.metrics.compressed_connections.inc();
            }
            Some((ws, writer, admitted))
        }
        Err(e) => {
            tracing::debug!(error = %e, "upgrade refused or failed");
            None
        }
    }
}

/// Why an upgrade request was refused.
enum Refusal {
    NotFound,
    /// `?protocol=` names a version the server does not speak.
    Version(UnsupportedVersion),
    Full,
    Auth(AuthError),
    /// The address spent its failed authentications; it may try again
    /// after this.
    AuthBarred(Duration),
}

impl Refusal {
    fn into_response(self, peer: SocketAddr, shared: &Shared) -> ErrorResponse {
        match self {
            Refusal::NotFound => json_error(
                StatusCode::NOT_FOUND,
                r#"{"error":"not found: the WebSocket endpoint is /ws","code":"not_found"}"#.into(),
            ),
            Refusal::Version(e) => json_error(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": e.to_string(), "code": "protocol_unsupported"})
                    .to_string(),
            ),
            Refusal::Full => json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"server is at its connection limit","code":"server_full"}"#.into(),
            ),
            Refusal::AuthBarred(wait) => {
                shared.metrics.auth_rate_limited.inc();
                if shared.may_log_refusal() {
                    tracing::info!(%peer, "upgrade refused unchecked: too many failed authentications from its address");
                }
                let mut resp = json_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"error":"too many failed authentications from this address; retry later","code":"auth_rate_limited"}"#.into(),
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
                resp
            }
            Refusal::Auth(e) => {
                shared.metrics.auth_failures.inc();
                shared.fairness.auth_failed(peer.ip());
                // Why, and from where; never the token itself.
                if shared.may_log_refusal() {
                    tracing::info!(%peer, code = ?e.code(), reason = %e, "authentication failed");
                }
                let body = AuthErrorBody {
                    error: e.to_string(),
                    code: e.code(),
                };
                json_error(
                    StatusCode::UNAUTHORIZED,
                    serde_json::to_string(&body).expect("serializable"),
                )
            }
        }
    }
}

/// Decides whether an upgrade request may become a connection.
fn admit(
    req: &Request,
    peer: SocketAddr,
    address: CountedConnection,
    shared: &Arc<Shared>,
) -> Result<Admitted, Refusal> {
    if req.uri().path() != WS_PATH {
        return Err(Refusal::NotFound);
    }
    let version = requested_version(req.uri().query()).map_err(Refusal::Version)?;
    if let Some(wait) = shared.fairness.auth_barred(peer.ip()) {
        return Err(Refusal::AuthBarred(wait));
    }
    let slot = shared.admit().ok_or(Refusal::Full)?;
    let token = token_from_request(
        req.uri().query(),
        req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
    );
    let claims = token
        .ok_or(AuthError::Missing)
        .and_then(|t| shared.authenticator.verify(&t))
        .map_err(Refusal::Auth)?;
    Ok(Admitted {
        version,
        expires_at: claims.expires_at,
        subject: claims.sub,
        slot,
        address,
        compression: false,
    })
}

/// The version the upgrade's first `?protocol=` parameter asks for.
fn requested_version(query: Option<&str>) -> Result<ProtocolVersion, UnsupportedVersion> {
    let asked = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == QUERY_PARAMETER)
            .map(|(_, v)| v)
    });
    ProtocolVersion::from_param(asked.as_deref())
}

fn json_error(status: StatusCode, body: String) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
