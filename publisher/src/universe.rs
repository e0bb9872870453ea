//! The simulated tokens: ids, starting prices, volatilities, how often each
//! trades, spreads and typical trade sizes.
//!
//! The first tokens are well-known tickers at roughly realistic prices; the
//! rest are `TKN0031`, `TKN0032`, … with prices spread log-uniformly from
//! $0.0001 to $1000. Activity follows Zipf's law by rank (a few tokens trade
//! most), as on a real exchange.

use odin_protocol::TokenId;
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// Seconds in a (365-day) year: volatilities are annualised.
pub const SECONDS_PER_YEAR: f64 = 365.0 * 24.0 * 3600.0;

/// Lowest price the simulation lets a token reach.
pub const MIN_PRICE: f64 = 1e-12;
/// Highest price the simulation lets a token reach.
pub const MAX_PRICE: f64 = 1e12;

/// Well-known tickers with a rough price and annualised volatility.
const KNOWN: &[(&str, f64, f64)] = &[
    ("BTC", 65_000.0, 0.55),
    ("ETH", 3_200.0, 0.70),
    ("SOL", 150.0, 0.95),
    ("BNB", 580.0, 0.60),
    ("XRP", 0.55, 0.80),
    ("ADA", 0.45, 0.85),
    ("DOGE", 0.12, 1.00),
    ("AVAX", 35.0, 1.00),
    ("DOT", 7.0, 0.90),
    ("LINK", 15.0, 0.90),
    ("TRX", 0.12, 0.60),
    ("MATIC", 0.70, 0.95),
    ("LTC", 80.0, 0.75),
    ("ATOM", 9.0, 0.90),
    ("UNI", 8.0, 1.00),
    ("XLM", 0.11, 0.80),
    ("NEAR", 5.0, 1.05),
    ("APT", 9.0, 1.10),
    ("ARB", 1.10, 1.10),
    ("OP", 2.50, 1.10),
    ("FIL", 6.0, 1.00),
    ("ICP", 12.0, 1.05),
    ("HBAR", 0.08, 0.95),
    ("INJ", 25.0, 1.20),
    ("SUI", 1.20, 1.20),
    ("PEPE", 0.000_01, 1.40),
    ("SHIB", 0.000_02, 1.10),
    ("WIF", 2.50, 1.50),
    ("BONK", 0.000_02, 1.50),
    ("AAVE", 95.0, 1.00),
];

/// What the market needs to know about one token; fixed for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenProfile {
    /// The token's id (valid per `PROTOCOL.md` §1 by construction).
    pub id: TokenId,
    /// Mid price at the start of the run, in `[MIN_PRICE, MAX_PRICE]`.
    pub initial_price: f64,
    /// The price 24 hours before the start, so `change24h` is meaningful
    /// from the first event on.
    pub open_price: f64,
    /// Annualised volatility of the price (σ of the GBM), ≥ 0.
    pub volatility: f64,
    /// Relative trade intensity: the token's share of the Poisson arrivals is
    /// `activity / Σ activity`. Always > 0.
    pub activity: f64,
    /// Relative bid-ask spread: buys fill at `mid · (1 + spread/2)`, sells
    /// at `mid · (1 − spread/2)`. In `(0, 0.05]`.
    pub spread: f64,
    /// Median value of one trade, in dollars (sizes are log-normal around it).
    pub median_notional: f64,
}

/// How the universe is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct UniverseParams {
    /// Number of tokens (≥ 1).
    pub tokens: usize,
    /// Multiplies every token's volatility (1 = realistic, 0 = flat prices).
    pub volatility_scale: f64,
    /// Zipf exponent of activity by rank (0 = every token equally active).
    pub skew: f64,
}

/// The id of the token of rank `rank` (0-based).
pub fn token_id(rank: usize) -> TokenId {
    let id = match KNOWN.get(rank) {
        Some((ticker, _, _)) => (*ticker).to_owned(),
        None => format!("TKN{:04}", rank + 1),
    };
    TokenId::parse(&id).expect("generated token ids follow the grammar")
}

/// Draws the tokens of a run.
pub fn generate(params: &UniverseParams, rng: &mut StdRng) -> Vec<TokenProfile> {
    (0..params.tokens)
        .map(|rank| {
            let jitter: f64 = rng.sample(StandardNormal);
            let (price, volatility) = match KNOWN.get(rank) {
                Some(&(_, price, vol)) => {
                    let vol_jitter: f64 = rng.sample(StandardNormal);
                    (
                        price * (0.03 * jitter).exp(),
                        vol * (0.1 * vol_jitter).exp(),
                    )
                }
                None => {
                    let log_price = rng.random_range((1e-4f64).ln()..(1e3f64).ln());
                    let log_vol = rng.random_range((0.6f64).ln()..(2.0f64).ln());
                    (log_price.exp(), log_vol.exp())
                }
            };
            let volatility = volatility * params.volatility_scale;
            let initial_price = price.clamp(MIN_PRICE, MAX_PRICE);
            // A day of the same GBM before the start.
            let day: f64 = StandardNormal.sample(rng);
            let open_price = (initial_price.ln() + volatility * (1.0 / 365.0f64).sqrt() * day)
                .clamp(MIN_PRICE.ln(), MAX_PRICE.ln())
                .exp();
            let r = (rank + 1) as f64;
            TokenProfile {
                id: token_id(rank),
                initial_price,
                open_price,
                volatility,
                activity: r.powf(-params.skew),
                spread: (0.000_2 * r.sqrt()).min(0.02),
                median_notional: 5_000.0 * r.powf(-0.4),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{Stream, rng};

    #[test]
    fn ids_are_known_tickers_then_numbered() {
        assert_eq!(token_id(0).as_str(), "BTC");
        assert_eq!(token_id(30).as_str(), "TKN0031");
        assert_eq!(token_id(99_999).as_str(), "TKN100000");
    }

    #[test]
    fn profiles_are_sane() {
        let params = UniverseParams {
            tokens: 500,
            volatility_scale: 1.0,
            skew: 1.0,
        };
        let tokens = generate(&params, &mut rng(1, Stream::Universe));
        assert_eq!(tokens.len(), 500);
        let mut ids: Vec<_> = tokens.iter().map(|t| t.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 500, "ids are unique");
        for t in &tokens {
            assert!(t.initial_price > 0.0 && t.open_price > 0.0);
            assert!(t.activity > 0.0 && t.spread > 0.0 && t.median_notional > 0.0);
        }
        assert!(tokens[0].activity > tokens[499].activity);
    }
}
