//! What a read of the store found ([`StoredPrices`]): the last valid price
//! of each token, every stored message judged like a live one
//! ([`crate::event::judge`]); applied to the router at start, or restored
//! into it after a reconnect.

use std::collections::HashMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use odin_protocol::{DedupWindow, Event, Subjects, TokenId};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::event::{Judged, judge};
use crate::metrics::Metrics;
use crate::router::{Route, Router, TokenEventKind};

/// What a read of the store found: the last valid price of each token, and
/// counts for `/stats`. Applied to the router before the first client is
/// accepted ([`StoredPrices::apply`]), or restored into it after a
/// reconnect ([`StoredPrices::restore`]).
#[derive(Debug, Default)]
pub(crate) struct StoredPrices {
    /// One frame per token with its `timestamp`, exactly as stored (and as
    /// first published).
    pub(super) prices: HashMap<TokenId, (f64, Utf8Bytes)>,
    /// The whole store was read.
    pub(super) complete: bool,
    /// Stored messages read, invalid and duplicate ones included.
    received: u64,
    /// Stored messages dropped as invalid.
    pub(super) invalid: u64,
    /// Stored messages dropped as duplicates.
    duplicates: u64,
}

impl StoredPrices {
    /// Whether the whole store was read.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// How many tokens have a price.
    pub(super) fn len(&self) -> usize {
        self.prices.len()
    }

    /// Judges one stored message (on `subject`, with `headers` and
    /// `payload`) like a live one ([`judge`]): validated, then (given a
    /// `window`) de-duplicated; a valid price replaces the token's earlier
    /// one.
    pub(super) fn take(
        &mut self,
        subjects: &Subjects,
        window: Option<&mut DedupWindow>,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) {
        self.received += 1;
        let valid = match judge(subjects, None, window, subject, headers, payload) {
            Judged::Fresh(valid) => valid,
            Judged::Duplicate => {
                self.duplicates += 1;
                return;
            }
            Judged::Invalid(e) => {
                self.invalid += 1;
                tracing::debug!(subject, error = %e, "dropped an invalid stored price");
                return;
            }
        };
        match valid.event {
            Event::PriceUpdate(p) => {
                self.prices.insert(p.token_id, (p.timestamp, valid.text));
            }
            // The consumer reads price subjects only, and validation ties the
            // type to the subject; anything else is not a price to keep.
            other => {
                self.invalid += 1;
                tracing::debug!(
                    kind = other.type_name(),
                    "dropped a stored event that is no price"
                );
            }
        }
    }

    /// Seeds the router's last prices and counts the stored messages in
    /// `/stats` (received, invalid, duplicates; not in the ingest latency,
    /// which measures live events).
    pub(crate) fn apply(self, router: &Router, metrics: &Metrics) {
        metrics.messages_received.inc_by(self.received);
        metrics.invalid_events.inc_by(self.invalid);
        metrics.duplicates_dropped.inc_by(self.duplicates);
        let mut wakes = Vec::new();
        for (id, (timestamp, text)) in &self.prices {
            router.deliver(
                Route::Token(
                    id,
                    TokenEventKind::Price {
                        timestamp: *timestamp,
                    },
                ),
                text,
                &mut wakes,
            );
        }
        // Nobody is subscribed yet, so nobody is woken; done for form.
        Router::wake_all(&mut wakes);
    }

    /// Restores the prices read after a reconnect into a serving router:
    /// each is applied, and sent to the token's subscribers, only if it is
    /// newer than the token's last price ([`Router::restore`]). Returns how
    /// many were. Stored messages are not counted as received again.
    pub(super) fn restore(self, router: &Router, metrics: &Metrics) -> u64 {
        let mut wakes = Vec::new();
        let mut restored = 0;
        for (id, (timestamp, text)) in &self.prices {
            if router.restore(id, *timestamp, text, &mut wakes) {
                restored += 1;
            }
        }
        Router::wake_all(&mut wakes);
        metrics.prices_restored.inc_by(restored);
        restored
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn stored_messages_are_judged_like_live_ones() {
        let subjects = Subjects::default();
        let mut window = DedupWindow::new(Duration::from_secs(60), 100);
        let mut stored = StoredPrices::default();
        let p1 = r#"{"type":"price_update","tokenId":"BTC","price":1.0,"source":"trade","timestamp":1.5,"nonce":"n1"}"#;
        let p2 = r#"{"type":"price_update","tokenId":"BTC","price":2.0,"source":"trade","timestamp":2.5,"nonce":"n2"}"#;
        let mut take = |subject: &str, payload: &'static str| {
            stored.take(
                &subjects,
                Some(&mut window),
                subject,
                None,
                Bytes::from_static(payload.as_bytes()),
            )
        };
        take("odin.token.BTC.price", p1);
        take("odin.token.BTC.price", p2);
        take("odin.token.BTC.price", p1);
        take("odin.token.ETH.price", "{not json");
        assert_eq!(stored.prices.len(), 1);
        assert_eq!(
            stored.prices[&TokenId::parse("BTC").unwrap()].1.as_str(),
            p2
        );
        assert_eq!(
            (stored.received, stored.invalid, stored.duplicates),
            (4, 1, 1)
        );
        assert!(window.contains("n1", std::time::Instant::now()));
    }
}
