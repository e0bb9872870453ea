//! The subscription index (channel → subscribers) and the last price of every
//! token, which together route one ingested event to the outboxes that want it.
//!
//! Fan-out pushes the *same* shared buffer into every recipient's outbox;
//! nothing is encoded per client. Subscribing and routing take the same lock,
//! which is what makes the snapshot exact: a client gets `subscribed`, then
//! the latest price, then every later event, with nothing missed or repeated
//! in between.
//!
//! The tokens' slots, and the budget that bounds them, are
//! [`crate::token_table`]'s.
//!
//! After a NATS reconnect the gateway reads the stored last prices back
//! ([`Router::restore`], see [`crate::last_prices`]): a stored price newer
//! than the token's is applied and fanned out like a live one, and until a
//! live price newer than it arrives, older live prices of that token (queued
//! before the read) are dropped as superseded, so per-token order holds.

use std::sync::Arc;

use odin_protocol::{Channel, TokenId};
use parking_lot::RwLock;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::compression::Deflated;
use crate::metrics::Metrics;
use crate::outbox::{ConflationKey, Frame, Outbox, Pushed};
pub use crate::token_table::{ConnId, TokenLimits};
use crate::token_table::{Stored, Subscribers, TableChange, TokenTable};

/// Which per-token event is being routed; price and volume updates conflate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenEventKind {
    /// `price_update`: conflated, and remembered for snapshots with its
    /// `timestamp` (protocol milliseconds), which orders it against a price
    /// restored from the store.
    Price {
        /// The event's `timestamp`.
        timestamp: f64,
    },
    /// `volume_update`: conflated.
    Volume,
    /// `trade_executed`: never conflated.
    Trade,
}

/// Where an ingested event goes.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// To the subscribers of `token.<id>`.
    Token(&'a TokenId, TokenEventKind),
    /// To the subscribers of `batch`.
    Batch,
    /// To the subscribers of `market`.
    Market,
}

/// The routing index: every token's slot, and the subscribers of the
/// other channels.
struct Index {
    tokens: TokenTable,
    batch: Subscribers,
    market: Subscribers,
}

impl Index {
    fn subscribers_mut(&mut self, channel: &Channel) -> &mut Subscribers {
        match channel {
            Channel::Token(id) => &mut self.tokens.slot_mut(id).subscribers,
            Channel::Batch => &mut self.batch,
            Channel::Market => &mut self.market,
        }
    }
}

/// The routing table shared by ingest and every connection.
pub struct Router {
    index: RwLock<Index>,
    metrics: Arc<Metrics>,
    /// With permessage-deflate on, the smallest event that gets a shared
    /// compressed payload (see [`crate::compression`]).
    compress_from: Option<usize>,
}

impl Router {
    /// An empty table reporting into `metrics`, with the default limits.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_limits(metrics, TokenLimits::default())
    }

    /// An empty table reporting into `metrics`, holding at most `limits`.
    pub fn with_limits(metrics: Arc<Metrics>, limits: TokenLimits) -> Self {
        Self {
            index: RwLock::new(Index {
                tokens: TokenTable::new(limits),
                batch: Subscribers::default(),
                market: Subscribers::default(),
            }),
            metrics,
            compress_from: None,
        }
    }

    /// Gives every fanned-out event of at least `min_bytes` (when `Some`)
    /// a slot for its compressed payload, made once by the first writer
    /// whose client negotiated permessage-deflate.
    pub fn with_compression(mut self, min_bytes: Option<usize>) -> Self {
        self.compress_from = min_bytes;
        self
    }

    /// Counts what storing a price changed in the table.
    fn record(&self, change: &TableChange) {
        if change.evicted > 0 {
            self.metrics.tokens_evicted.inc_by(change.evicted as u64);
        }
        if change.refused {
            self.metrics.tokens_refused.inc();
        }
        if let Some(priced) = change.priced {
            self.metrics
                .tokens_held
                .set(i64::try_from(priced).unwrap_or(i64::MAX));
        }
    }

    /// Routes one ingested event to its subscribers. Writers that now have
    /// something to send are added to `wakes` rather than woken, so a burst
    /// of events wakes each writer once ([`Router::wake_all`]).
    pub fn deliver(&self, route: Route<'_>, text: &Utf8Bytes, wakes: &mut Vec<Arc<Outbox>>) {
        let mut index = self.index.write();
        let (subscribers, conflation) = match route {
            Route::Token(id, kind) => {
                let slot = match kind {
                    TokenEventKind::Price { timestamp } => {
                        let mut change = TableChange::default();
                        let stored = index.tokens.store_live(id, timestamp, text, &mut change);
                        self.record(&change);
                        match stored {
                            Stored::In(slot) => slot,
                            Stored::Superseded => {
                                self.metrics.prices_superseded.inc();
                                return;
                            }
                            Stored::Refused => return,
                        }
                    }
                    TokenEventKind::Volume | TokenEventKind::Trade => {
                        match index.tokens.get_mut(id.as_str()) {
                            Some(slot) => slot,
                            None => return,
                        }
                    }
                };
                let conflation = match kind {
                    TokenEventKind::Price { .. } => Some(ConflationKey(slot.number << 1)),
                    TokenEventKind::Volume => Some(ConflationKey(slot.number << 1 | 1)),
                    TokenEventKind::Trade => None,
                };
                (&slot.subscribers, conflation)
            }
            Route::Batch => (&index.batch, None),
            Route::Market => (&index.market, None),
        };
        self.fan_out(subscribers, text, conflation, wakes);
    }

    /// Applies a price read back from the last-prices store after a NATS
    /// reconnect, if it is newer than the token's last price (or the token
    /// has none): it becomes the snapshot and goes to the subscribers like a
    /// live price, and older live prices of the token that are still on
    /// their way are dropped ([`TokenEventKind::Price`]). Returns whether it
    /// was applied.
    pub fn restore(
        &self,
        id: &TokenId,
        timestamp: f64,
        text: &Utf8Bytes,
        wakes: &mut Vec<Arc<Outbox>>,
    ) -> bool {
        let mut index = self.index.write();
        let mut change = TableChange::default();
        let stored = index
            .tokens
            .store_restored(id, timestamp, text, &mut change);
        self.record(&change);
        let Some(slot) = stored else {
            return false;
        };
        let conflation = Some(ConflationKey(slot.number << 1));
        self.fan_out(&slot.subscribers, text, conflation, wakes);
        true
    }

    /// Pushes one shared frame into every outbox of `subscribers`.
    fn fan_out(
        &self,
        subscribers: &Subscribers,
        text: &Utf8Bytes,
        conflation: Option<ConflationKey>,
        wakes: &mut Vec<Arc<Outbox>>,
    ) {
        let mut conflated = 0;
        // One slot per event, shared by every recipient; only when someone
        // gets it and compression is on.
        let deflated = self
            .compress_from
            .filter(|&min| text.len() >= min && !subscribers.is_empty())
            .map(|_| Arc::new(Deflated::default()));
        for outbox in subscribers.values() {
            let (pushed, wake) = outbox.push_deferred(Frame {
                text: text.clone(),
                conflation,
                deflated: deflated.clone(),
            });
            if pushed == Pushed::Conflated {
                conflated += 1;
            }
            if wake {
                wakes.push(outbox.clone());
            }
        }
        if conflated > 0 {
            self.metrics.conflated.inc_by(conflated);
        }
    }

    /// Wakes every writer collected by [`Router::deliver`].
    pub fn wake_all(wakes: &mut Vec<Arc<Outbox>>) {
        for outbox in wakes.drain(..) {
            outbox.wake();
        }
    }

    /// Adds `conn` to `channels`, then queues `ack` (the `subscribed` frame)
    /// and the latest price of every newly subscribed token, all under the
    /// routing lock so no live event can slip in between or before them.
    pub fn subscribe(&self, conn: ConnId, outbox: &Arc<Outbox>, channels: &[Channel], ack: Frame) {
        let mut index = self.index.write();
        for channel in channels {
            index.subscribers_mut(channel).insert(conn, outbox.clone());
        }
        outbox.push(ack);
        for channel in channels {
            if let Channel::Token(id) = channel
                && let Some(text) = index
                    .tokens
                    .get(id.as_str())
                    .and_then(|s| s.last_price.as_ref())
            {
                outbox.push(Frame::plain(text.clone()));
            }
        }
    }

    /// Removes `conn` from `channels`; no event for them is queued after this
    /// returns.
    pub fn unsubscribe(&self, conn: ConnId, channels: &[Channel]) {
        let mut index = self.index.write();
        for channel in channels {
            index.subscribers_mut(channel).swap_remove(&conn);
            if let Channel::Token(id) = channel {
                index.tokens.forget_if_idle(id);
            }
        }
    }

    /// The latest price frame of `id`, if any (for diagnostics and tests).
    pub fn last_price(&self, id: &str) -> Option<Utf8Bytes> {
        self.index
            .read()
            .tokens
            .get(id)
            .and_then(|s| s.last_price.clone())
    }

    /// Every token the table knows (subscribed to, or with a last price).
    pub fn token_ids(&self) -> Vec<TokenId> {
        self.index.read().tokens.ids().cloned().collect()
    }

    /// How many tokens the table knows.
    pub fn token_count(&self) -> usize {
        self.index.read().tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn price(timestamp: f64) -> TokenEventKind {
        TokenEventKind::Price { timestamp }
    }

    fn drain(o: &Outbox) -> Vec<String> {
        let mut q = VecDeque::new();
        o.take(&mut q);
        q.iter().map(|f| f.text.to_string()).collect()
    }

    #[test]
    fn routes_by_channel_and_snapshots_on_subscribe() {
        let router = Router::new(Arc::new(Metrics::new()));
        let btc = TokenId::parse("BTC").unwrap();
        let a = Arc::new(Outbox::new(1 << 20, 0));
        let mut w = Vec::new();
        router.deliver(Route::Token(&btc, price(1.0)), &"p1".into(), &mut w);
        router.subscribe(1, &a, &[Channel::Token(btc.clone())], Frame::plain("ack"));
        router.deliver(
            Route::Token(&btc, TokenEventKind::Trade),
            &"t1".into(),
            &mut w,
        );
        router.deliver(Route::Batch, &"b1".into(), &mut w);
        assert!(w.is_empty(), "the ack already woke the writer");
        assert_eq!(drain(&a), ["ack", "p1", "t1"]);

        router.deliver(
            Route::Token(&btc, TokenEventKind::Trade),
            &"t2".into(),
            &mut w,
        );
        router.deliver(
            Route::Token(&btc, TokenEventKind::Trade),
            &"t3".into(),
            &mut w,
        );
        assert_eq!(w.len(), 1, "one wake per writer per burst");
        Router::wake_all(&mut w);
        assert!(w.is_empty());
        assert_eq!(drain(&a), ["t2", "t3"]);

        router.unsubscribe(1, &[Channel::Token(btc.clone())]);
        router.deliver(Route::Token(&btc, price(2.0)), &"p2".into(), &mut w);
        assert!(drain(&a).is_empty());
        assert_eq!(router.last_price("BTC").unwrap().as_str(), "p2");
    }

    #[test]
    fn a_restored_price_supersedes_older_live_ones_until_a_newer_one() {
        let metrics = Arc::new(Metrics::new());
        let router = Router::new(metrics.clone());
        let btc = TokenId::parse("BTC").unwrap();
        let a = Arc::new(Outbox::new(1 << 20, 0));
        let mut w = Vec::new();
        router.deliver(Route::Token(&btc, price(10.0)), &"p10".into(), &mut w);
        router.subscribe(1, &a, &[Channel::Token(btc.clone())], Frame::plain("ack"));
        assert_eq!(drain(&a), ["ack", "p10"]);

        // Not newer than what the gateway has: ignored.
        assert!(!router.restore(&btc, 10.0, &"s10".into(), &mut w));
        assert!(!router.restore(&btc, 9.0, &"s9".into(), &mut w));
        assert!(drain(&a).is_empty());
        assert_eq!(router.last_price("BTC").unwrap().as_str(), "p10");

        // Newer: the snapshot and a delivery.
        assert!(router.restore(&btc, 30.0, &"p30".into(), &mut w));
        assert_eq!(router.last_price("BTC").unwrap().as_str(), "p30");
        assert_eq!(drain(&a), ["p30"]);
        // Live prices published before it, and its own live copy, are
        // superseded; trades are not touched.
        router.deliver(Route::Token(&btc, price(20.0)), &"p20".into(), &mut w);
        router.deliver(
            Route::Token(&btc, TokenEventKind::Trade),
            &"t".into(),
            &mut w,
        );
        router.deliver(Route::Token(&btc, price(30.0)), &"p30".into(), &mut w);
        assert_eq!(metrics.prices_superseded.get(), 2);
        assert_eq!(router.last_price("BTC").unwrap().as_str(), "p30");
        assert_eq!(drain(&a), ["t"]);
        // A newer live price passes, and ends the superseding (a later live
        // price is taken as it comes, as without a restore).
        router.deliver(Route::Token(&btc, price(40.0)), &"p40".into(), &mut w);
        assert_eq!(drain(&a), ["p40"]);
        router.deliver(Route::Token(&btc, price(35.0)), &"p35".into(), &mut w);
        assert_eq!(drain(&a), ["p35"]);
        assert_eq!(metrics.prices_superseded.get(), 2);

        // A token the gateway never heard of takes any stored price.
        let eth = TokenId::parse("ETH").unwrap();
        assert!(router.restore(&eth, 1.0, &"e1".into(), &mut w));
        assert_eq!(router.last_price("ETH").unwrap().as_str(), "e1");
    }

    #[test]
    fn idle_slots_are_forgotten() {
        let router = Router::new(Arc::new(Metrics::new()));
        let a = Arc::new(Outbox::new(1 << 20, 0));
        let x = Channel::Token(TokenId::parse("X").unwrap());
        router.subscribe(1, &a, std::slice::from_ref(&x), Frame::plain("ack"));
        assert_eq!(router.token_count(), 1);
        router.unsubscribe(1, &[x]);
        assert_eq!(router.token_count(), 0);
    }
}
