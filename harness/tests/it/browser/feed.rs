//! Publishes protocol events to NATS the way the publisher does (subject from
//! `Event::subject`, `Nats-Msg-Id` header = nonce), so a browser test controls
//! exactly what the page must show.

use async_nats::HeaderMap;
use odin_protocol::ids::NonceSource;
use odin_protocol::message::{
    BatchEntry, BatchSource, BatchUpdate, MarketStats, PriceSource, PriceUpdate, Side,
    TradeExecuted, VolumeUpdate,
};
use odin_protocol::time::now_millis;
use odin_protocol::{Event, Nonce, Subjects, TokenId};

use super::chrome::COMMAND_TIMEOUT;

/// A NATS connection publishing hand-made events.
pub(crate) struct Feed {
    client: async_nats::Client,
    subjects: Subjects,
    nonces: NonceSource,
    trades: u64,
}

impl Feed {
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Feed> {
        let client = tokio::time::timeout(COMMAND_TIMEOUT, async_nats::connect(url)).await??;
        Ok(Feed {
            client,
            subjects: Subjects::default(),
            nonces: NonceSource::random(),
            trades: 0,
        })
    }

    fn nonce(&self) -> Nonce {
        self.nonces.next()
    }

    /// Publishes `event` on its subject with its nonce as `Nats-Msg-Id`, and
    /// flushes, so it has reached NATS when this returns.
    pub(crate) async fn publish(&self, event: &Event) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.nonce().as_str());
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            self.client
                .publish_with_headers(
                    event.subject(&self.subjects),
                    headers,
                    event.to_json().into(),
                )
                .await?;
            self.client.flush().await?;
            anyhow::Ok(())
        })
        .await?
    }

    /// Waits for a NATS round trip (so the server's subscription, set up
    /// before, is known to NATS).
    pub(crate) async fn flush(&self) -> anyhow::Result<()> {
        tokio::time::timeout(COMMAND_TIMEOUT, self.client.flush()).await??;
        Ok(())
    }

    pub(crate) fn price(&self, token: &str, price: f64, change_24h: Option<f64>) -> Event {
        Event::PriceUpdate(PriceUpdate {
            token_id: token_id(token),
            price,
            source: PriceSource::Trade,
            previous_price: None,
            change_24h,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    pub(crate) fn trade(&mut self, token: &str, side: Side, price: f64, amount: f64) -> Event {
        self.trades += 1;
        Event::TradeExecuted(TradeExecuted {
            token_id: token_id(token),
            trade_id: format!("browser-trade-{}", self.trades),
            side,
            price,
            amount,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    pub(crate) fn volume(&self, token: &str, volume_24h: f64) -> Event {
        Event::VolumeUpdate(VolumeUpdate {
            token_id: token_id(token),
            volume_24h,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    pub(crate) fn batch(&self, entries: &[(&str, f64, f64)]) -> Event {
        Event::BatchUpdate(BatchUpdate {
            source: BatchSource::Scheduler,
            updates: entries
                .iter()
                .map(|&(token, price, volume)| BatchEntry {
                    token_id: token_id(token),
                    price,
                    volume_24h: Some(volume),
                })
                .collect(),
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }

    pub(crate) fn market(&self, volume: f64, trades: u64, tokens: u64) -> Event {
        Event::MarketStats(MarketStats {
            total_volume_24h: volume,
            total_trades_24h: trades,
            active_tokens: tokens,
            timestamp: now_millis(),
            nonce: self.nonce(),
        })
    }
}

fn token_id(s: &str) -> TokenId {
    TokenId::parse(s).expect("test token ids are valid")
}
