//! The value ranges of `PROTOCOL.md` §1 that the JSON schema alone does not
//! say: prices above zero, volumes and amounts not below it, a timestamp
//! after the epoch. Gateways refuse an event that breaks one as invalid.

use crate::message::Event;

impl Event {
    /// Which value, if any, is out of the range `PROTOCOL.md` §1 allows:
    /// `timestamp` and every price (`price`, `previousPrice`, a batch
    /// entry's `price`) must be greater than zero, every `amount` and
    /// volume at least zero. (JSON cannot carry NaN or infinities, and an
    /// out-of-range number does not parse, so every value is finite.)
    pub fn out_of_range(&self) -> Option<&'static str> {
        let positive = |v: f64| v > 0.0;
        let non_negative = |v: f64| v >= 0.0;
        if !positive(self.timestamp()) {
            return Some("timestamp");
        }
        match self {
            Event::PriceUpdate(e) => {
                if !positive(e.price) {
                    Some("price")
                } else if e.previous_price.is_some_and(|p| !positive(p)) {
                    Some("previousPrice")
                } else {
                    None
                }
            }
            Event::VolumeUpdate(e) => (!non_negative(e.volume_24h)).then_some("volume24h"),
            Event::TradeExecuted(e) => {
                if !positive(e.price) {
                    Some("price")
                } else if !non_negative(e.amount) {
                    Some("amount")
                } else {
                    None
                }
            }
            Event::BatchUpdate(e) => e.updates.iter().find_map(|u| {
                if !positive(u.price) {
                    Some("updates[].price")
                } else if u.volume_24h.is_some_and(|v| !non_negative(v)) {
                    Some("updates[].volume24h")
                } else {
                    None
                }
            }),
            Event::MarketStats(e) => {
                (!non_negative(e.total_volume_24h)).then_some("totalVolume24h")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::message::Event;

    #[test]
    fn values_out_of_range_are_named() {
        let event = |v: serde_json::Value| serde_json::from_value::<Event>(v).unwrap();
        let base = |ty: &str| json!({"type": ty, "tokenId": "BTC", "timestamp": 1.0, "nonce": "n"});
        let with = |ty: &str, fields: serde_json::Value| {
            let mut v = base(ty);
            v.as_object_mut()
                .unwrap()
                .extend(fields.as_object().unwrap().clone());
            event(v)
        };
        let price = |p: f64, prev: Option<f64>| {
            let mut f = json!({"price": p, "source": "trade"});
            if let Some(prev) = prev {
                f["previousPrice"] = json!(prev);
            }
            with("price_update", f)
        };
        assert_eq!(price(1.0, Some(0.5)).out_of_range(), None);
        assert_eq!(price(0.0, None).out_of_range(), Some("price"));
        assert_eq!(price(-5.0, None).out_of_range(), Some("price"));
        assert_eq!(price(1.0, Some(0.0)).out_of_range(), Some("previousPrice"));
        let at = |t: f64| {
            let mut v = base("volume_update");
            v["volume24h"] = json!(0.0);
            v["timestamp"] = json!(t);
            event(v).out_of_range()
        };
        assert_eq!(at(1.0), None);
        assert_eq!(at(0.0), Some("timestamp"));
        assert_eq!(at(-1e308), Some("timestamp"));
        let trade = |p: f64, a: f64| {
            with(
                "trade_executed",
                json!({"tradeId": "t", "side": "buy", "price": p, "amount": a}),
            )
            .out_of_range()
        };
        assert_eq!(trade(1.0, 0.0), None);
        assert_eq!(trade(0.0, 1.0), Some("price"));
        assert_eq!(trade(1.0, -1.0), Some("amount"));
        assert_eq!(
            with("volume_update", json!({"volume24h": -1.0})).out_of_range(),
            Some("volume24h")
        );
        let batch = |entry: serde_json::Value| {
            event(
                json!({"type": "batch_update", "source": "scheduler", "updates": [
                {"tokenId": "A", "price": 2.0}, entry], "timestamp": 1.0, "nonce": "n"}),
            )
            .out_of_range()
        };
        assert_eq!(
            batch(json!({"tokenId": "B", "price": 1.0, "volume24h": 0.0})),
            None
        );
        assert_eq!(
            batch(json!({"tokenId": "B", "price": 0.0})),
            Some("updates[].price")
        );
        assert_eq!(
            batch(json!({"tokenId": "B", "price": 1.0, "volume24h": -3.0})),
            Some("updates[].volume24h")
        );
        let market = |v: f64| {
            event(
                json!({"type": "market_stats", "totalVolume24h": v, "totalTrades24h": 1,
                         "activeTokens": 1, "timestamp": 1.0, "nonce": "n"}),
            )
            .out_of_range()
        };
        assert_eq!(market(0.0), None);
        assert_eq!(market(-0.5), Some("totalVolume24h"));
    }
}
