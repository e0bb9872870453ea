//! Events from NATS to the router: the subject names the channel, and the
//! payload, as it came, becomes one text frame that every recipient shares.
//! No validation and no de-duplication: this is the least a gateway does.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};
use odin_protocol::{SubjectKind, Subjects};

use super::frame;
use super::queue::Queue;
use super::router::Route;
use super::shared::Shared;

/// The channel of an event on `subject`; `None` for a subject that is not
/// one of the protocol's five forms.
pub(crate) fn route<'a>(subjects: &Subjects, subject: &'a str) -> Option<Route<'a>> {
    Some(match subjects.parse(subject)? {
        SubjectKind::Price(id) | SubjectKind::Volume(id) | SubjectKind::Trade(id) => {
            Route::Token(id)
        }
        SubjectKind::Batch => Route::Batch,
        SubjectKind::MarketStats => Route::Market,
    })
}

/// Most events queued before the writers they fed are woken.
const BURST: usize = 256;

/// Forwards every message of `subscription` until it ends.
///
/// Events that have already arrived are queued as one burst (up to
/// [`BURST`]) before any writer is woken, so a client gets them in one
/// `writev` (a trade's `price_update` and `trade_executed` arrive together);
/// a lone event wakes its writers at once. odin-server does the same, so the
/// comparison is of the work per delivery, not of how often writers wake.
pub(crate) async fn run(
    mut subscription: async_nats::Subscriber,
    subjects: Subjects,
    shared: Arc<Shared>,
) {
    let mut wakes = Vec::new();
    while let Some(msg) = subscription.next().await {
        forward(&shared, &subjects, &msg, &mut wakes);
        for _ in 1..BURST {
            match subscription.next().now_or_never() {
                Some(Some(msg)) => forward(&shared, &subjects, &msg, &mut wakes),
                _ => break,
            }
        }
        for queue in wakes.drain(..) {
            queue.wake();
        }
    }
    tracing::debug!("NATS subscription ended");
}

/// Frames one message once and queues it for its channel's subscribers.
fn forward(
    shared: &Shared,
    subjects: &Subjects,
    msg: &async_nats::Message,
    wakes: &mut Vec<Arc<Queue>>,
) {
    shared.events.fetch_add(1, Ordering::Relaxed);
    let Some(route) = route(subjects, msg.subject.as_str()) else {
        return;
    };
    let frame = frame::text(&msg.payload);
    let n = shared.router.fan_out(route, &frame, wakes);
    shared.deliveries.fetch_add(n as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_route_to_their_channel() {
        let s = Subjects::default();
        assert_eq!(route(&s, "odin.token.BTC.price"), Some(Route::Token("BTC")));
        assert_eq!(
            route(&s, "odin.token.BTC.volume"),
            Some(Route::Token("BTC"))
        );
        assert_eq!(route(&s, "odin.trades.BTC"), Some(Route::Token("BTC")));
        assert_eq!(route(&s, "odin.token.batch.update"), Some(Route::Batch));
        assert_eq!(route(&s, "odin.market.statistics"), Some(Route::Market));
        assert_eq!(route(&s, "odin.token.BTC"), None);
        assert_eq!(route(&s, "other.trades.BTC"), None);
    }
}
