//! permessage-deflate on the server (RFC 7692; the pure parts are
//! [`odin_protocol::deflate`]): the negotiation's answer at the upgrade, and
//! an event's compressed payload, made at most once per event and shared by
//! every client that negotiated the extension, as the plain payload is.
//!
//! The server compresses with no context carried between messages
//! (`server_no_context_takeover`), so a compressed event is the same bytes for
//! every recipient: there is no per-connection compressor. The compressed
//! form is made lazily by the first writer that needs it ([`Deflated`]), so a
//! server whose clients all take plain frames never compresses anything.

use std::cell::RefCell;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::{Compress, Compression};
use http::HeaderValue;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use odin_protocol::deflate;

use crate::metrics::Metrics;

thread_local! {
    /// One compressor per thread, reset for every message: about 300 KiB of
    /// tables allocated once instead of once per event.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
}

/// The `Sec-WebSocket-Extensions` answer to an upgrade request, when the
/// server compresses (`enabled`) and the request offers permessage-deflate
/// with parameters the server can honour.
pub(crate) fn negotiate(enabled: bool, request: &http::HeaderMap) -> Option<HeaderValue> {
    if !enabled {
        return None;
    }
    let offers = request
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    deflate::negotiate(offers).map(|accepted| HeaderValue::from_static(accepted.response()))
}

/// An event's compressed payload, shared by every recipient's frame: made
/// by the first writer that sends the event compressed. `None` inside when
/// compressing did not make it smaller (sent plain).
#[derive(Debug, Default)]
pub struct Deflated(OnceLock<Option<Bytes>>);

impl Deflated {
    /// The compressed form of `text` (the event this belongs to), made now
    /// if no writer has made it yet; `None` when plain is as small.
    pub fn get(&self, text: &[u8], metrics: &Metrics) -> Option<&[u8]> {
        self.0
            .get_or_init(|| {
                metrics.events_compressed.inc();
                let compressed = COMPRESSOR.with_borrow_mut(|c| deflate::deflate_with(c, text));
                (compressed.len() < text.len()).then(|| Bytes::from(compressed))
            })
            .as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_compressed_once_however_many_ask() {
        let metrics = Metrics::new();
        let slot = Deflated::default();
        let text = br#"{"type":"price_update","tokenId":"BTC","price":64012.5,"source":"trade","timestamp":1765000000000.5,"nonce":"n-1"}"#;
        let first = slot.get(text, &metrics).unwrap().to_vec();
        for _ in 0..10 {
            assert_eq!(slot.get(text, &metrics).unwrap(), first);
        }
        assert_eq!(metrics.events_compressed.get(), 1);
        assert_eq!(first, deflate::deflate(text));
        // Incompressible: plain.
        let slot = Deflated::default();
        assert!(slot.get(b"x", &metrics).is_none());
    }

    #[test]
    fn only_an_enabled_server_answers_an_acceptable_offer() {
        let mut headers = http::HeaderMap::new();
        headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static("x-foo"));
        headers.append(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        );
        assert_eq!(
            negotiate(true, &headers).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(negotiate(false, &headers).is_none());
        assert!(negotiate(true, &http::HeaderMap::new()).is_none());
    }
}
