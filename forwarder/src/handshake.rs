//! The HTTP/1.1 upgrade to a WebSocket (RFC 6455 §4.2) on `GET /ws`, any
//! query string, no token check: it answers `101` with the accept key, or a
//! short error status and no WebSocket. Hand-written on `httparse` so the
//! connection is a bare `TcpStream` afterwards, with no library between the
//! writer and the socket.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The WebSocket endpoint's path: `odin-server`'s (`PROTOCOL.md` §2; a test
/// holds the two equal).
pub const WS_PATH: &str = "/ws";

/// Largest upgrade request; a longer one gets `431`.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Most headers read from the request.
const MAX_HEADERS: usize = 32;

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The request is not complete yet.
    Partial,
    /// A valid upgrade: the request's length and the `Sec-WebSocket-Accept`
    /// value to answer with.
    Upgrade {
        /// Bytes of the request (anything after it is WebSocket data).
        consumed: usize,
        /// The accept key.
        accept: String,
    },
    /// Not an upgrade we serve: the status line's code and reason.
    Refuse(u16, &'static str),
}

/// Reads the upgrade request from `buf`.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST_BYTES => {
            return Parsed::Refuse(431, "Request Header Fields Too Large");
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refuse(431, "Request Header Fields Too Large");
        }
        Err(_) => return Parsed::Refuse(400, "Bad Request"),
    };
    if request.method != Some("GET") {
        return Parsed::Refuse(405, "Method Not Allowed");
    }
    let path = request.path.unwrap_or("");
    if path.split('?').next() != Some(WS_PATH) {
        return Parsed::Refuse(404, "Not Found");
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Parsed::Refuse(400, "Bad Request");
    }
    if header("sec-websocket-version") != Some("13") {
        return Parsed::Refuse(426, "Upgrade Required");
    }
    match header("sec-websocket-key") {
        Some(key) if !key.is_empty() => Parsed::Upgrade {
            consumed,
            accept: derive_accept_key(key.as_bytes()),
        },
        _ => Parsed::Refuse(400, "Bad Request"),
    }
}

/// Reads the upgrade request from `stream` and answers it. `Ok(true)`: the
/// connection is a WebSocket now, and `buf` holds whatever the client sent
/// after its request. `Ok(false)`: refused (and answered); close it.
pub(crate) async fn accept(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    loop {
        match parse(buf) {
            Parsed::Partial => {
                buf.reserve(1024);
                if stream.read_buf(buf).await? == 0 {
                    return Ok(false);
                }
            }
            Parsed::Upgrade { consumed, accept } => {
                let _ = buf.split_to(consumed);
                let response = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                stream.write_all(response.as_bytes()).await?;
                return Ok(true);
            }
            Parsed::Refuse(status, reason) => {
                let response = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(response.as_bytes()).await?;
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "GET /ws?token=anything HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn upgrades_with_the_rfc_accept_key_and_any_query() {
        // The example of RFC 6455 §1.3.
        let mut bytes = REQUEST.as_bytes().to_vec();
        bytes.extend_from_slice(b"\x81\x80");
        assert_eq!(
            parse(&bytes),
            Parsed::Upgrade {
                consumed: REQUEST.len(),
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
        assert_eq!(parse(&REQUEST.as_bytes()[..40]), Parsed::Partial);
    }

    #[test]
    fn the_path_is_odin_servers() {
        assert_eq!(WS_PATH, odin_server::WS_PATH);
    }

    #[test]
    fn refuses_other_requests() {
        let with = |from: &str, to: &str| REQUEST.replace(from, to);
        assert_eq!(
            parse(with("GET /ws?", "GET /other?").as_bytes()),
            Parsed::Refuse(404, "Not Found")
        );
        assert!(matches!(
            parse(with("GET", "POST").as_bytes()),
            Parsed::Refuse(405, _)
        ));
        assert!(matches!(
            parse(with("Upgrade: websocket", "Upgrade: h2c").as_bytes()),
            Parsed::Refuse(400, _)
        ));
        assert!(matches!(
            parse(with("Version: 13", "Version: 8").as_bytes()),
            Parsed::Refuse(426, _)
        ));
        assert!(matches!(
            parse(with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "").as_bytes()),
            Parsed::Refuse(400, _)
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Parsed::Refuse(400, _)
        ));
        let endless = format!("GET /ws HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST_BYTES));
        assert!(matches!(parse(endless.as_bytes()), Parsed::Refuse(431, _)));
    }
}
