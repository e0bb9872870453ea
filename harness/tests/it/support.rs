//! Helpers shared by the topics of this test binary: a NATS publisher of
//! protocol events, and the check that a server's NATS subscription is in
//! place, so that nothing published afterwards can miss it. (The bound on
//! every wait and the loop that waits are the library's: `odin_harness::wait`.)

use async_nats::HeaderMap;
use odin_harness::nats::NatsServer;
use odin_harness::server::Endpoint;
use odin_harness::wait::{LIMIT, eventually};
use odin_protocol::ids::NonceSource;
use odin_protocol::message::{MarketStats, PriceSource, PriceUpdate, Side, TradeExecuted};
use odin_protocol::time::now_millis;
use odin_protocol::{Event, Nonce, Subjects, TokenId};

/// Every field of `/stats`, as PROTOCOL.md §6 lists them.
pub(crate) const STATS_FIELDS: &[&str] = &[
    "serverId",
    "uptimeSeconds",
    "connectionCount",
    "messagesReceived",
    "messagesDelivered",
    "duplicatesDropped",
    "invalidEvents",
    "conflated",
    "slowConsumerDisconnects",
    "authFailures",
    "addressLimited",
    "tokensHeld",
    "compressedConnections",
    "eventsCompressed",
    "messagesCompressed",
    "tokensEvicted",
    "tokensRefused",
    "tlsReloads",
    "tlsReloadFailures",
    "tlsHandshakeFailures",
    "averageLatency",
    "peakLatency",
    "natsConnected",
];

/// Whether `nats` has the NATS connection of the odin-server `server_id`
/// with a subscription to `subject`, as its `/connz` lists them.
///
/// The server names its NATS connection `odin-server <serverId>`, which is
/// what tells two servers on one NATS (or one cluster node) apart.
pub(crate) async fn subscribed_on(
    nats: &NatsServer,
    server_id: &str,
    subject: &str,
) -> anyhow::Result<bool> {
    let name = format!("odin-server {server_id}");
    let connz = nats.monitor_json("/connz?subs=1").await?;
    Ok(connz["connections"].as_array().is_some_and(|conns| {
        conns.iter().any(|c| {
            c["name"] == name.as_str()
                && c["subscriptions_list"]
                    .as_array()
                    .is_some_and(|subs| subs.iter().any(|s| s == subject))
        })
    }))
}

/// Waits until `server` reports NATS connected and `nats` lists the
/// server's subscription to `subject` (its `<prefix>.>`).
pub(crate) async fn wait_subscribed_in_nats(nats: &NatsServer, server: &Endpoint, subject: &str) {
    let stats = server
        .wait_for_stats(LIMIT, |s| s.nats_connected)
        .await
        .expect("server connects to NATS");
    let what = format!(
        "the subscription of {} to {subject} in /connz of {}",
        stats.server_id,
        nats.url()
    );
    eventually(LIMIT, &what, async || {
        subscribed_on(nats, &stats.server_id, subject)
            .await
            .expect("NATS monitoring answers")
            .then_some(())
    })
    .await;
}

/// Publishes protocol events to NATS the way the publisher does.
pub(crate) struct Publisher {
    pub(crate) client: async_nats::Client,
    pub(crate) subjects: Subjects,
    nonces: NonceSource,
}

impl Publisher {
    pub(crate) async fn connect(url: &str) -> Publisher {
        let client = async_nats::connect(url).await.expect("publisher connects");
        Publisher {
            client,
            subjects: Subjects::default(),
            nonces: NonceSource::random(),
        }
    }

    fn nonce(&mut self) -> Nonce {
        self.nonces.next()
    }

    /// Publishes raw bytes on `subject` with an optional `Nats-Msg-Id`.
    pub(crate) async fn raw(
        &self,
        subject: String,
        msg_id: Option<&str>,
        payload: impl Into<bytes::Bytes>,
    ) {
        let payload = payload.into();
        match msg_id {
            Some(id) => {
                let mut headers = HeaderMap::new();
                headers.insert("Nats-Msg-Id", id);
                self.client
                    .publish_with_headers(subject, headers, payload)
                    .await
            }
            None => self.client.publish(subject, payload).await,
        }
        .expect("publish");
    }

    /// Publishes `event` on its subject with the header, and flushes.
    pub(crate) async fn event(&self, event: &Event) -> String {
        let text = event.to_json();
        self.raw(
            event.subject(&self.subjects),
            Some(event.nonce().as_str()),
            text.clone(),
        )
        .await;
        self.client.flush().await.expect("flush");
        text
    }

    pub(crate) fn price_event(&mut self, token: &str, price: f64) -> Event {
        Event::PriceUpdate(PriceUpdate {
            token_id: TokenId::parse(token).unwrap(),
            price,
            source: PriceSource::Trade,
            previous_price: None,
            change_24h: None,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    pub(crate) fn trade_event(&mut self, token: &str, seq: u64) -> Event {
        Event::TradeExecuted(TradeExecuted {
            token_id: TokenId::parse(token).unwrap(),
            trade_id: format!("t{seq}"),
            side: Side::Buy,
            price: 1.0,
            amount: seq as f64,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    pub(crate) fn market_event(&mut self, trades: u64) -> Event {
        Event::MarketStats(MarketStats {
            total_volume_24h: 1.0,
            total_trades_24h: trades,
            active_tokens: 1,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    /// Publishes a price update and returns the exact JSON sent.
    pub(crate) async fn price(&mut self, token: &str, price: f64) -> String {
        let e = self.price_event(token, price);
        self.event(&e).await
    }
}
