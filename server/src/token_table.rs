//! Every token the gateway knows, one slot each: its subscribers, and its
//! last price (what a new subscriber gets as the snapshot). The router
//! ([`crate::router`]) holds it under its lock; this module decides what a
//! price does to a slot, and keeps the table within its budget.
//!
//! The budget ([`TokenLimits`]): at most `--max-tokens` priced tokens and
//! `--max-price-bytes` bytes of their prices. When a price for a token the
//! table does not hold would go beyond it, the least recently priced tokens
//! nobody is subscribed to are evicted, a sixteenth of the token budget at a
//! time (so eviction costs little per event however many arrive); when none
//! can be, the new token's price is not kept (it has no subscriber to lose
//! it). A token someone is subscribed to is never evicted, and its prices are
//! always kept: what subscribers hold is bounded by the client budgets.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use odin_protocol::TokenId;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::outbox::Outbox;

/// A connection's id, unique for the server's lifetime.
pub type ConnId = u64;

/// The outboxes of a channel's subscribers, by connection.
pub(crate) type Subscribers = IndexMap<ConnId, Arc<Outbox>>;

/// How many priced tokens the table holds at most, and how many bytes of
/// last prices (`--max-tokens`, `--max-price-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// Tokens with a last price.
    pub max_tokens: usize,
    /// Bytes of their last prices.
    pub max_price_bytes: usize,
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self {
            max_tokens: 100_000,
            max_price_bytes: 64 << 20,
        }
    }
}

/// One token's slot.
#[derive(Default)]
pub(crate) struct TokenSlot {
    /// Fixed for the slot's life; part of its conflation keys.
    pub(crate) number: u64,
    pub(crate) subscribers: Subscribers,
    /// The latest `price_update` frame, exactly as ingested.
    pub(crate) last_price: Option<Utf8Bytes>,
    /// `last_price`'s `timestamp`.
    last_price_at: f64,
    /// `last_price` was restored from the store and no live price has passed
    /// it yet: live prices up to it are superseded.
    restored: bool,
    /// When its last price was stored, on the table's price clock: orders
    /// eviction.
    priced_at: u64,
}

impl TokenSlot {
    /// Whether a live price at `timestamp` with bytes `text` comes after a
    /// restored last price: older, or the restored price itself (its live
    /// copy), it does not. Clears the restored mark once one does.
    fn admits_live(&mut self, timestamp: f64, text: &Utf8Bytes) -> bool {
        if !self.restored {
            return true;
        }
        if timestamp < self.last_price_at
            || (timestamp == self.last_price_at && self.last_price.as_ref() == Some(text))
        {
            return false;
        }
        self.restored = false;
        true
    }
}

/// What storing a price changed in the table, for the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TableChange {
    /// Tokens evicted to make room.
    pub(crate) evicted: usize,
    /// A new token's price was not kept for want of room.
    pub(crate) refused: bool,
    /// The priced tokens now held, when that changed.
    pub(crate) priced: Option<usize>,
}

/// What a live price came to.
pub(crate) enum Stored<'a> {
    /// Stored: the token's slot.
    In(&'a mut TokenSlot),
    /// Older than the token's restored price: dropped.
    Superseded,
    /// A new token, and no room for it: dropped.
    Refused,
}

/// What the table's prices hold.
#[derive(Debug, Default)]
struct Held {
    /// Tokens with a last price.
    priced: usize,
    /// The bytes of their last prices.
    bytes: usize,
    /// Counts stored prices; a slot's `priced_at` is read off it.
    clock: u64,
}

impl Held {
    /// Makes `text` (at `timestamp`) the last price of `slot`, noting in
    /// `change` when the number of priced tokens changed.
    fn put(
        &mut self,
        slot: &mut TokenSlot,
        timestamp: f64,
        text: &Utf8Bytes,
        restored: bool,
        change: &mut TableChange,
    ) {
        match &slot.last_price {
            Some(old) => self.bytes -= old.len(),
            None => {
                self.priced += 1;
                change.priced = Some(self.priced);
            }
        }
        self.bytes += text.len();
        self.clock += 1;
        slot.last_price = Some(text.clone());
        slot.last_price_at = timestamp;
        slot.priced_at = self.clock;
        slot.restored = restored;
    }
}

/// The slots, and what their prices hold against the budget.
pub(crate) struct TokenTable {
    slots: HashMap<TokenId, TokenSlot>,
    next_number: u64,
    limits: TokenLimits,
    held: Held,
    /// Whether an unsubscribed priced token may exist: cleared by an
    /// eviction that found none, set again when a priced token loses its
    /// last subscriber, so a full table of subscribed tokens is not searched
    /// for every new token.
    maybe_evictable: bool,
}

impl TokenTable {
    pub(crate) fn new(limits: TokenLimits) -> Self {
        Self {
            slots: HashMap::new(),
            next_number: 0,
            limits,
            held: Held::default(),
            maybe_evictable: true,
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&TokenSlot> {
        self.slots.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut TokenSlot> {
        self.slots.get_mut(id)
    }

    /// The slot of `id`, made when missing.
    pub(crate) fn slot_mut(&mut self, id: &TokenId) -> &mut TokenSlot {
        if !self.slots.contains_key(id.as_str()) {
            self.insert(id);
        }
        self.slots.get_mut(id.as_str()).expect("inserted above")
    }

    fn insert(&mut self, id: &TokenId) {
        let number = self.next_number;
        self.next_number += 1;
        self.slots.insert(
            id.clone(),
            TokenSlot {
                number,
                ..TokenSlot::default()
            },
        );
    }

    /// Every token known (subscribed to, or with a last price).
    pub(crate) fn ids(&self) -> impl Iterator<Item = &TokenId> {
        self.slots.keys()
    }

    /// How many tokens are known.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Stores a live price of `id`, unless a restored one supersedes it or
    /// the token is new and there is no room; `change` says what that did to
    /// the table.
    pub(crate) fn store_live(
        &mut self,
        id: &TokenId,
        timestamp: f64,
        text: &Utf8Bytes,
        change: &mut TableChange,
    ) -> Stored<'_> {
        if !self.slots.contains_key(id.as_str()) {
            if !self.make_room(text.len(), change) {
                return Stored::Refused;
            }
            self.insert(id);
        }
        let slot = self.slots.get_mut(id.as_str()).expect("held or inserted");
        if !slot.admits_live(timestamp, text) {
            return Stored::Superseded;
        }
        self.held.put(slot, timestamp, text, false, change);
        Stored::In(slot)
    }

    /// Stores a price read back from the last-prices store if it is newer
    /// than the token's (or the token has none) and there is room: the
    /// token's slot, marked restored, or `None`.
    pub(crate) fn store_restored(
        &mut self,
        id: &TokenId,
        timestamp: f64,
        text: &Utf8Bytes,
        change: &mut TableChange,
    ) -> Option<&mut TokenSlot> {
        if !self.slots.contains_key(id.as_str()) {
            if !self.make_room(text.len(), change) {
                return None;
            }
            self.insert(id);
        }
        let slot = self.slots.get_mut(id.as_str()).expect("held or inserted");
        if slot.last_price.is_some() && timestamp <= slot.last_price_at {
            return None;
        }
        self.held.put(slot, timestamp, text, true, change);
        Some(slot)
    }

    fn fits(&self, incoming: usize) -> bool {
        self.held.priced < self.limits.max_tokens
            && self.held.bytes + incoming <= self.limits.max_price_bytes
    }

    /// Whether a new token's price of `incoming` bytes may be kept: when
    /// the budget has room, after evicting idle tokens if need be.
    fn make_room(&mut self, incoming: usize, change: &mut TableChange) -> bool {
        if self.fits(incoming) {
            return true;
        }
        if self.maybe_evictable {
            change.evicted += self.evict_idle(incoming);
            change.priced = Some(self.held.priced);
        }
        change.refused = !self.fits(incoming);
        !change.refused
    }

    /// Evicts the least recently priced tokens nobody is subscribed to: a
    /// sixteenth of the token budget at least, and as many more as the byte
    /// budget needs to take `incoming` more. Returns how many went.
    fn evict_idle(&mut self, incoming: usize) -> usize {
        let mut idle: Vec<(u64, TokenId)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.subscribers.is_empty() && s.last_price.is_some())
            .map(|(id, s)| (s.priced_at, id.clone()))
            .collect();
        if idle.is_empty() {
            self.maybe_evictable = false;
            return 0;
        }
        idle.sort_unstable_by_key(|(priced_at, _)| *priced_at);
        let batch = (self.limits.max_tokens / 16).max(1);
        let mut evicted = 0;
        for (_, id) in idle {
            if evicted >= batch && self.fits(incoming) {
                break;
            }
            if let Some(slot) = self.slots.remove(id.as_str()) {
                let price = slot.last_price.expect("idle tokens are priced");
                self.held.priced -= 1;
                self.held.bytes -= price.len();
                evicted += 1;
            }
        }
        evicted
    }

    /// After `id` lost a subscriber: drops its slot if it serves nobody and
    /// remembers nothing; one that serves nobody but has a price may now be
    /// evicted.
    pub(crate) fn forget_if_idle(&mut self, id: &TokenId) {
        let Some(slot) = self.slots.get(id.as_str()) else {
            return;
        };
        if !slot.subscribers.is_empty() {
            return;
        }
        if slot.last_price.is_none() {
            self.slots.remove(id.as_str());
        } else {
            self.maybe_evictable = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TokenId {
        TokenId::parse(s).unwrap()
    }

    fn live(table: &mut TokenTable, token: &str, timestamp: f64, text: &str) -> TableChange {
        let mut change = TableChange::default();
        let _ = table.store_live(&id(token), timestamp, &text.into(), &mut change);
        change
    }

    fn subscribe(table: &mut TokenTable, token: &str) {
        table
            .slot_mut(&id(token))
            .subscribers
            .insert(1, Arc::new(Outbox::new(1 << 20, 0)));
    }

    #[test]
    fn at_the_token_budget_the_least_recently_priced_idle_tokens_go() {
        let mut table = TokenTable::new(TokenLimits {
            max_tokens: 32,
            max_price_bytes: 1 << 20,
        });
        for n in 0..32 {
            live(&mut table, &format!("T{n}"), 1.0, "p");
        }
        // T0 is priced again: now the most recent.
        live(&mut table, "T0", 2.0, "p");
        let change = live(&mut table, "NEW", 1.0, "p");
        assert_eq!(change.evicted, 2, "a sixteenth of the budget: {change:?}");
        assert!(!change.refused);
        assert_eq!(change.priced, Some(31));
        assert!(table.get("T0").is_some(), "recently priced: kept");
        assert!(table.get("T1").is_none() && table.get("T2").is_none());
        assert!(table.get("T3").is_some() && table.get("NEW").is_some());
    }

    #[test]
    fn the_byte_budget_evicts_as_many_as_it_needs() {
        let mut table = TokenTable::new(TokenLimits {
            max_tokens: 1000,
            max_price_bytes: 100,
        });
        for n in 0..10 {
            live(&mut table, &format!("T{n}"), 1.0, "0123456789");
        }
        let change = live(&mut table, "BIG", 1.0, &"x".repeat(50));
        assert!(change.evicted >= 5, "{change:?}");
        assert!(table.held.bytes <= 100, "{}", table.held.bytes);
        assert!(table.get("BIG").is_some());
    }

    #[test]
    fn subscribed_tokens_are_never_evicted_and_a_new_one_is_refused() {
        let mut table = TokenTable::new(TokenLimits {
            max_tokens: 2,
            max_price_bytes: 1 << 20,
        });
        subscribe(&mut table, "A");
        subscribe(&mut table, "B");
        live(&mut table, "A", 1.0, "a");
        live(&mut table, "B", 1.0, "b");
        let change = live(&mut table, "C", 1.0, "c");
        assert!(change.refused, "{change:?}");
        assert!(table.get("C").is_none());
        // The search is not repeated until a token loses its subscribers.
        assert!(!table.maybe_evictable);
        assert!(live(&mut table, "D", 1.0, "d").refused);
        // Prices of subscribed tokens are kept whatever the budget.
        live(&mut table, "A", 2.0, "a2");
        assert_eq!(table.get("A").unwrap().last_price.as_deref(), Some("a2"));
        table.get_mut("A").unwrap().subscribers.clear();
        table.forget_if_idle(&id("A"));
        let change = live(&mut table, "C", 1.0, "c");
        assert_eq!((change.evicted, change.refused), (1, false), "{change:?}");
        assert!(table.get("A").is_none() && table.get("C").is_some());
    }

    #[test]
    fn restored_prices_count_against_the_budget_too() {
        let mut table = TokenTable::new(TokenLimits {
            max_tokens: 1,
            max_price_bytes: 1 << 20,
        });
        subscribe(&mut table, "A");
        let mut change = TableChange::default();
        assert!(
            table
                .store_restored(&id("A"), 1.0, &"a".into(), &mut change)
                .is_some()
        );
        let mut change = TableChange::default();
        assert!(
            table
                .store_restored(&id("B"), 1.0, &"b".into(), &mut change)
                .is_none()
        );
        assert!(change.refused);
    }
}
