//! Which connections get an event: each channel's subscribed queues. An event
//! is fanned out under the read lock and a subscribe queues its `subscribed`
//! under the write lock, so an event lands wholly before or wholly after a
//! connection's `subscribed`: live events follow it, as `PROTOCOL.md` §4.3
//! asks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use odin_protocol::Channel;
use parking_lot::RwLock;

use super::queue::Queue;

/// The channel an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `token.<id>`: price, volume and trade events of one token.
    Token(&'a str),
    /// `batch`.
    Batch,
    /// `market`.
    Market,
}

#[derive(Debug, Default)]
struct Index {
    /// Token id → subscribed queues. Invariant: no empty lists.
    tokens: HashMap<Box<str>, Vec<Arc<Queue>>>,
    batch: Vec<Arc<Queue>>,
    market: Vec<Arc<Queue>>,
}

impl Index {
    fn list(&mut self, channel: &Channel) -> &mut Vec<Arc<Queue>> {
        match channel {
            Channel::Token(id) => self.tokens.entry(id.as_str().into()).or_default(),
            Channel::Batch => &mut self.batch,
            Channel::Market => &mut self.market,
        }
    }
}

/// The channel index every connection and the ingest share.
#[derive(Debug, Default)]
pub(crate) struct Router {
    index: RwLock<Index>,
}

impl Router {
    /// Queues `frame` (one buffer, shared) on every queue subscribed to
    /// `route` and returns how many; the queues whose writer must be woken
    /// are added to `wakes`, for the caller to wake once its burst of events
    /// is queued.
    pub(crate) fn fan_out(
        &self,
        route: Route<'_>,
        frame: &Bytes,
        wakes: &mut Vec<Arc<Queue>>,
    ) -> usize {
        let index = self.index.read();
        let list = match route {
            Route::Token(id) => match index.tokens.get(id) {
                Some(list) => list,
                None => return 0,
            },
            Route::Batch => &index.batch,
            Route::Market => &index.market,
        };
        for queue in list {
            if let (_, true) = queue.push_deferred(frame.clone()) {
                wakes.push(queue.clone());
            }
        }
        list.len()
    }

    /// Adds `queue` to `channels` (none of which it is on yet) and queues
    /// `ack` on it in the same step, before any event that follows.
    pub(crate) fn subscribe(&self, channels: &[Channel], queue: &Arc<Queue>, ack: Bytes) {
        let mut index = self.index.write();
        for channel in channels {
            index.list(channel).push(queue.clone());
        }
        queue.push(ack);
    }

    /// Takes `queue` off `channels`.
    pub(crate) fn unsubscribe(&self, channels: &[Channel], queue: &Arc<Queue>) {
        let mut index = self.index.write();
        for channel in channels {
            let list = index.list(channel);
            if let Some(i) = list.iter().position(|q| Arc::ptr_eq(q, queue)) {
                list.swap_remove(i);
            }
            if list.is_empty()
                && let Channel::Token(id) = channel
            {
                index.tokens.remove(id.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn events_reach_subscribers_of_their_channel_only() {
        let router = Router::default();
        let a = Arc::new(Queue::new(1 << 20));
        let b = Arc::new(Queue::new(1 << 20));
        let btc = Channel::parse("token.BTC").unwrap();
        router.subscribe(
            &[btc.clone(), Channel::Batch],
            &a,
            Bytes::from_static(b"ack"),
        );
        router.subscribe(std::slice::from_ref(&btc), &b, Bytes::from_static(b"ack"));
        let frame = Bytes::from_static(b"event");
        let mut wakes = Vec::new();
        assert_eq!(router.fan_out(Route::Token("BTC"), &frame, &mut wakes), 2);
        assert_eq!(router.fan_out(Route::Token("ETH"), &frame, &mut wakes), 0);
        assert_eq!(router.fan_out(Route::Batch, &frame, &mut wakes), 1);
        assert_eq!(router.fan_out(Route::Market, &frame, &mut wakes), 0);
        // The acks are not taken yet: their push owes the wake-ups.
        assert!(wakes.is_empty());
        router.unsubscribe(std::slice::from_ref(&btc), &a);
        assert_eq!(router.fan_out(Route::Token("BTC"), &frame, &mut wakes), 1);
        router.unsubscribe(&[btc], &b);
        assert!(router.index.read().tokens.is_empty());
        let mut got = VecDeque::new();
        a.take(&mut got);
        // The ack first, then the events, each the same shared buffer.
        assert_eq!(got, [&b"ack"[..], b"event", b"event"]);
        assert_eq!(got[1].as_ptr(), frame.as_ptr());
        // An emptied queue owes a wake-up again.
        router.subscribe(&[Channel::Market], &a, Bytes::from_static(b"ack"));
        a.take(&mut got);
        router.fan_out(Route::Market, &frame, &mut wakes);
        assert_eq!(wakes.len(), 1);
        assert!(Arc::ptr_eq(&wakes[0], &a));
    }
}
