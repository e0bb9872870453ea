//! The subscription index (channel → subscribers) and the last price of every
//! token, which together route one ingested event to the outboxes that want it.
//!
//! Fan-out pushes the *same* shared buffer into every recipient's outbox;
//! nothing is encoded per client. Subscribing and routing take the same lock,
//! which is what makes the snapshot exact: a client gets `subscribed`, then
//! the latest price, then every later event, with nothing missed or repeated
//! in between.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use odin_protocol::{Channel, TokenId};
use parking_lot::RwLock;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::Metrics;
use crate::outbox::{ConflationKey, Frame, Outbox, Pushed};

/// A connection's id, unique for the server's lifetime.
pub type ConnId = u64;

/// Which per-token event is being routed; price and volume updates conflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEventKind {
    /// `price_update`: conflated, and remembered for snapshots.
    Price,
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

type Subscribers = IndexMap<ConnId, Arc<Outbox>>;

#[derive(Default)]
struct TokenSlot {
    /// Fixed for the slot's life; part of its conflation keys.
    number: u64,
    subscribers: Subscribers,
    /// The latest `price_update` frame, exactly as ingested.
    last_price: Option<Utf8Bytes>,
}

#[derive(Default)]
struct Index {
    tokens: HashMap<TokenId, TokenSlot>,
    batch: Subscribers,
    market: Subscribers,
    next_slot: u64,
}

impl Index {
    fn slot_mut(&mut self, id: &TokenId) -> &mut TokenSlot {
        if !self.tokens.contains_key(id.as_str()) {
            let number = self.next_slot;
            self.next_slot += 1;
            self.tokens.insert(
                id.clone(),
                TokenSlot {
                    number,
                    ..TokenSlot::default()
                },
            );
        }
        self.tokens.get_mut(id.as_str()).expect("inserted above")
    }

    fn subscribers_mut(&mut self, channel: &Channel) -> &mut Subscribers {
        match channel {
            Channel::Token(id) => &mut self.slot_mut(id).subscribers,
            Channel::Batch => &mut self.batch,
            Channel::Market => &mut self.market,
        }
    }

    /// Drops a token slot that serves nobody and remembers nothing.
    fn forget_if_idle(&mut self, id: &TokenId) {
        if self
            .tokens
            .get(id.as_str())
            .is_some_and(|s| s.subscribers.is_empty() && s.last_price.is_none())
        {
            self.tokens.remove(id.as_str());
        }
    }
}

/// The routing table shared by ingest and every connection.
pub struct Router {
    index: RwLock<Index>,
    metrics: Arc<Metrics>,
}

impl Router {
    /// An empty table reporting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            index: RwLock::new(Index::default()),
            metrics,
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
                    TokenEventKind::Price => {
                        let slot = index.slot_mut(id);
                        slot.last_price = Some(text.clone());
                        slot
                    }
                    TokenEventKind::Volume | TokenEventKind::Trade => {
                        match index.tokens.get_mut(id.as_str()) {
                            Some(slot) => slot,
                            None => return,
                        }
                    }
                };
                let conflation = match kind {
                    TokenEventKind::Price => Some(ConflationKey(slot.number << 1)),
                    TokenEventKind::Volume => Some(ConflationKey(slot.number << 1 | 1)),
                    TokenEventKind::Trade => None,
                };
                (&slot.subscribers, conflation)
            }
            Route::Batch => (&index.batch, None),
            Route::Market => (&index.market, None),
        };
        let mut conflated = 0;
        for outbox in subscribers.values() {
            let (pushed, wake) = outbox.push_deferred(Frame {
                text: text.clone(),
                conflation,
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
                index.forget_if_idle(id);
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

    /// How many tokens the table knows.
    pub fn token_count(&self) -> usize {
        self.index.read().tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

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
        router.deliver(
            Route::Token(&btc, TokenEventKind::Price),
            &"p1".into(),
            &mut w,
        );
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
        router.deliver(
            Route::Token(&btc, TokenEventKind::Price),
            &"p2".into(),
            &mut w,
        );
        assert!(drain(&a).is_empty());
        assert_eq!(router.last_price("BTC").unwrap().as_str(), "p2");
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
