//! The market's state and the events it emits: geometric-Brownian-motion
//! mid prices, trades, and the scheduler's periodic figures.
//!
//! Pure and deterministic: given a seed, the times it is asked about and a
//! [`Stamper`], it emits the same events every time. Time is the run's
//! schedule time in seconds (the wall clock only decides *when* events go
//! out, never *what* they say), which is what makes a seed reproduce a run.
//!
//! Invariants the tests check:
//! - every price is finite and in `[MIN_PRICE, MAX_PRICE]` (the log-price is
//!   clamped, so no volatility or gap can reach zero, infinity or NaN);
//! - a token's `volume24h` is the sum of `price · amount` over the trades of
//!   that token published in the last 24 hours (all of them in runs shorter
//!   than a day), and `market_stats` sums the same window over all tokens;
//! - `change24h` is measured against the price 24 hours earlier (before the
//!   run: the token's [`TokenProfile::open_price`]);
//! - a `batch_update` entry carries the token's latest published price.

use odin_protocol::message::{
    BatchEntry, BatchSource, BatchUpdate, MarketStats, PriceSource, PriceUpdate, Side,
    TradeExecuted, VolumeUpdate,
};
use odin_protocol::{Event, TokenId};
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, StandardNormal};

use crate::rounding::{round_dp, round_sig};
use crate::stamp::Stamper;
use crate::universe::{MAX_PRICE, MIN_PRICE, SECONDS_PER_YEAR, TokenProfile};

/// Length of the rolling window of `volume24h`, `change24h` and the market
/// figures, in seconds.
pub const DAY: f64 = 24.0 * 3600.0;
/// How often the window's reference points are taken, in seconds: after the
/// first day the window is 24 hours to within this.
pub const CHECKPOINT_EVERY: f64 = 3600.0;
/// Significant digits of published prices.
pub const PRICE_DIGITS: i32 = 8;
/// Significant digits of published trade amounts.
pub const AMOUNT_DIGITS: i32 = 6;
/// Log-normal σ of trade sizes (in log-dollars).
pub const SIZE_SIGMA: f64 = 1.0;

/// One event the market emitted, with the index of its token.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// The event, stamped.
    pub event: Event,
    /// Index of its token, for per-token events.
    pub token: Option<u32>,
}

/// One token's moving state.
#[derive(Debug, Clone)]
struct TokenState {
    /// Natural log of the mid price; clamped to `[ln MIN_PRICE, ln MAX_PRICE]`.
    log_mid: f64,
    /// Schedule time the mid was last moved to.
    mid_at: f64,
    /// The last price published for the token (trade or scheduler).
    last_price: Option<f64>,
    /// Whether a `price_update` went out since the previous tick.
    fresh: bool,
    /// Sum of `price · amount` of every trade since the start.
    cum_volume: f64,
    /// Number of trades since the start.
    cum_trades: u64,
    /// The `volume24h` last published in a `volume_update` (starts at 0).
    published_volume: f64,
}

/// A reference point of the rolling window: the figures at time `at`.
#[derive(Debug, Clone)]
struct Checkpoint {
    at: f64,
    price: Vec<f64>,
    cum_volume: Vec<f64>,
    cum_trades: Vec<u64>,
}

/// The simulated market.
#[derive(Debug)]
pub struct Market {
    profiles: Vec<TokenProfile>,
    state: Vec<TokenState>,
    /// Picks which token trades next, by activity: the superposition of the
    /// per-token Poisson processes, each arrival labelled `i` with
    /// probability `activity_i / Σ activity`.
    picker: WeightedAliasIndex<f64>,
    rng: StdRng,
    /// Instance part of trade ids, so ids differ between runs.
    run_id: u64,
    trades: u64,
    /// Reference points taken every [`CHECKPOINT_EVERY`], oldest first;
    /// only those that may still become the 24-hour reference are kept.
    checkpoints: std::collections::VecDeque<Checkpoint>,
    next_checkpoint: f64,
    /// The current 24-hour reference (the start state until a day has passed).
    reference: Checkpoint,
}

impl Market {
    /// A market of `profiles` (at least one), moved by `rng`, whose trade ids
    /// carry `run_id`.
    pub fn new(profiles: Vec<TokenProfile>, rng: StdRng, run_id: u64) -> Self {
        assert!(!profiles.is_empty(), "a market needs at least one token");
        let picker = WeightedAliasIndex::new(profiles.iter().map(|p| p.activity).collect())
            .expect("activities are positive and finite");
        let state = profiles
            .iter()
            .map(|p| TokenState {
                log_mid: p.initial_price.ln(),
                mid_at: 0.0,
                last_price: None,
                fresh: false,
                cum_volume: 0.0,
                cum_trades: 0,
                published_volume: 0.0,
            })
            .collect();
        let n = profiles.len();
        let reference = Checkpoint {
            at: f64::NEG_INFINITY,
            price: profiles.iter().map(|p| p.open_price).collect(),
            cum_volume: vec![0.0; n],
            cum_trades: vec![0; n],
        };
        Self {
            profiles,
            state,
            picker,
            rng,
            run_id,
            trades: 0,
            checkpoints: Default::default(),
            next_checkpoint: 0.0,
            reference,
        }
    }

    /// The tokens, in index order.
    pub fn profiles(&self) -> &[TokenProfile] {
        &self.profiles
    }

    /// The current mid price of token `index`.
    pub fn mid(&self, index: usize) -> f64 {
        self.state[index].log_mid.exp()
    }

    /// The last price published for token `index`.
    pub fn last_price(&self, index: usize) -> Option<f64> {
        self.state[index].last_price
    }

    /// Moves token `i`'s mid along its GBM to time `t` (no-op if `t` is not
    /// later than the last move).
    fn evolve(&mut self, i: usize, t: f64) {
        let state = &mut self.state[i];
        let dt = t - state.mid_at;
        if dt > 0.0 {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            state.log_mid = gbm_step(
                state.log_mid,
                self.profiles[i].volatility,
                dt / SECONDS_PER_YEAR,
                z,
            );
            state.mid_at = t;
        }
    }

    /// `change24h` of token `i` at `price`, in percent.
    fn change_24h(&self, i: usize, price: f64) -> f64 {
        round_dp((price / self.reference.price[i] - 1.0) * 100.0, 2)
    }

    /// `volume24h` of token `i`, in dollars.
    fn volume_24h(&self, i: usize) -> f64 {
        round_dp(
            (self.state[i].cum_volume - self.reference.cum_volume[i]).max(0.0),
            2,
        )
    }

    /// One trade at schedule time `t`: which token trades follows the
    /// activities; emits its `trade_executed` and the `price_update` it
    /// causes (`source: "trade"`).
    pub fn trade<S: Stamper>(&mut self, t: f64, stamper: &mut S, out: &mut Vec<Emitted>) {
        let i = self.picker.sample(&mut self.rng);
        self.evolve(i, t);
        let profile = &self.profiles[i];
        let side = if self.rng.random_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let half_spread = profile.spread / 2.0;
        let fill = match side {
            Side::Buy => 1.0 + half_spread,
            Side::Sell => 1.0 - half_spread,
        };
        let price = round_sig(
            (self.state[i].log_mid.exp() * fill).clamp(MIN_PRICE, MAX_PRICE),
            PRICE_DIGITS,
        );
        let z: f64 = StandardNormal.sample(&mut self.rng);
        let notional = profile.median_notional * (SIZE_SIGMA * z).exp();
        let amount = round_sig(notional / price, AMOUNT_DIGITS);
        let id = profile.id.clone();
        let trade_id = format!("{:016x}-t{:x}", self.run_id, self.trades);
        self.trades += 1;

        let state = &mut self.state[i];
        let previous_price = state.last_price.replace(price);
        state.fresh = true;
        state.cum_volume += price * amount;
        state.cum_trades += 1;
        let change_24h = Some(self.change_24h(i, price));

        let token = Some(i as u32);
        let (timestamp, nonce) = stamper.stamp();
        out.push(Emitted {
            event: Event::TradeExecuted(TradeExecuted {
                token_id: id.clone(),
                trade_id,
                side,
                price,
                amount,
                timestamp,
                nonce,
            }),
            token,
        });
        let (timestamp, nonce) = stamper.stamp();
        out.push(Emitted {
            event: Event::PriceUpdate(PriceUpdate {
                token_id: id,
                price,
                source: PriceSource::Trade,
                previous_price,
                change_24h,
                timestamp,
                nonce,
            }),
            token,
        });
    }

    /// The scheduler's tick at schedule time `t`, in this order:
    /// a `price_update` (`source: "scheduler"`) for every token with no
    /// price update since the previous tick (so every token has a fresh
    /// price at least once a tick, and the first tick announces them all);
    /// a `volume_update` for every token whose `volume24h` changed since it
    /// was last published; the `batch_update` of all tokens (split into
    /// messages of at most `batch_size` entries, to stay under NATS's
    /// payload limit); one `market_stats`.
    pub fn tick<S: Stamper>(
        &mut self,
        t: f64,
        batch_size: usize,
        stamper: &mut S,
        out: &mut Vec<Emitted>,
    ) {
        self.roll_window(t);
        for i in 0..self.state.len() {
            if !self.state[i].fresh {
                self.evolve(i, t);
                let price = round_sig(self.state[i].log_mid.exp(), PRICE_DIGITS);
                let previous_price = self.state[i].last_price.replace(price);
                let (timestamp, nonce) = stamper.stamp();
                out.push(Emitted {
                    event: Event::PriceUpdate(PriceUpdate {
                        token_id: self.profiles[i].id.clone(),
                        price,
                        source: PriceSource::Scheduler,
                        previous_price,
                        change_24h: Some(self.change_24h(i, price)),
                        timestamp,
                        nonce,
                    }),
                    token: Some(i as u32),
                });
            }
            self.state[i].fresh = false;
        }

        let mut total_volume = 0.0;
        let mut total_trades = 0;
        let mut active = 0;
        for i in 0..self.state.len() {
            let volume = self.volume_24h(i);
            total_volume += volume;
            let trades = self.state[i].cum_trades - self.reference.cum_trades[i];
            total_trades += trades;
            active += u64::from(trades > 0);
            if volume != self.state[i].published_volume {
                self.state[i].published_volume = volume;
                let (timestamp, nonce) = stamper.stamp();
                out.push(Emitted {
                    event: Event::VolumeUpdate(VolumeUpdate {
                        token_id: self.profiles[i].id.clone(),
                        volume_24h: volume,
                        timestamp,
                        nonce,
                    }),
                    token: Some(i as u32),
                });
            }
        }

        for chunk in (0..self.state.len())
            .collect::<Vec<_>>()
            .chunks(batch_size.max(1))
        {
            let updates = chunk
                .iter()
                .map(|&i| BatchEntry {
                    token_id: self.profiles[i].id.clone(),
                    price: self.state[i]
                        .last_price
                        .expect("every token got a price above"),
                    volume_24h: Some(self.state[i].published_volume),
                })
                .collect();
            let (timestamp, nonce) = stamper.stamp();
            out.push(Emitted {
                event: Event::BatchUpdate(BatchUpdate {
                    source: BatchSource::Scheduler,
                    updates,
                    timestamp,
                    nonce,
                }),
                token: None,
            });
        }

        let (timestamp, nonce) = stamper.stamp();
        out.push(Emitted {
            event: Event::MarketStats(MarketStats {
                total_volume_24h: round_dp(total_volume, 2),
                total_trades_24h: total_trades,
                active_tokens: active,
                timestamp,
                nonce,
            }),
            token: None,
        });
    }

    /// Takes a checkpoint when one is due and moves the 24-hour reference
    /// to the newest checkpoint at least a day old.
    fn roll_window(&mut self, t: f64) {
        if t >= self.next_checkpoint {
            self.checkpoints.push_back(Checkpoint {
                at: t,
                price: (0..self.state.len())
                    .map(|i| self.state[i].last_price.unwrap_or_else(|| self.mid(i)))
                    .collect(),
                cum_volume: self.state.iter().map(|s| s.cum_volume).collect(),
                cum_trades: self.state.iter().map(|s| s.cum_trades).collect(),
            });
            // From the checkpoint's own time, so a late tick does not make
            // every later checkpoint late too.
            self.next_checkpoint =
                (t / CHECKPOINT_EVERY).floor() * CHECKPOINT_EVERY + CHECKPOINT_EVERY;
        }
        while self.checkpoints.front().is_some_and(|c| c.at <= t - DAY) {
            self.reference = self.checkpoints.pop_front().expect("checked above");
        }
    }

    /// The id of token `index`.
    pub fn token_id(&self, index: usize) -> &TokenId {
        &self.profiles[index].id
    }
}

/// One step of geometric Brownian motion (no drift) on the log-price:
/// `x + σ√τ·z − σ²τ/2`, clamped to `[ln MIN_PRICE, ln MAX_PRICE]`, with `τ` in
/// years. A non-finite result (absurd `σ`) keeps the old price.
pub fn gbm_step(log_price: f64, sigma: f64, years: f64, z: f64) -> f64 {
    let next = log_price + sigma * years.sqrt() * z - 0.5 * sigma * sigma * years;
    if next.is_finite() {
        next.clamp(MIN_PRICE.ln(), MAX_PRICE.ln())
    } else {
        log_price
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::{Stream, rng};
    use crate::stamp::FixedStamper;
    use crate::universe::{UniverseParams, generate};
    use proptest::prelude::*;

    fn market(seed: u64, tokens: usize, volatility: f64) -> Market {
        let params = UniverseParams {
            tokens,
            volatility_scale: volatility,
            skew: 1.0,
        };
        let profiles = generate(&params, &mut rng(seed, Stream::Universe));
        Market::new(profiles, rng(seed, Stream::Market), 1)
    }

    /// Every price an event carries.
    fn prices(event: &Event) -> Vec<f64> {
        match event {
            Event::PriceUpdate(e) => std::iter::once(e.price).chain(e.previous_price).collect(),
            Event::TradeExecuted(e) => vec![e.price],
            Event::BatchUpdate(e) => e.updates.iter().map(|u| u.price).collect(),
            Event::VolumeUpdate(_) | Event::MarketStats(_) => vec![],
        }
    }

    fn valid_price(p: f64) -> bool {
        p.is_finite() && (MIN_PRICE..=MAX_PRICE).contains(&p)
    }

    proptest! {
        /// Prices stay positive and finite for any seed, any volatility the
        /// settings allow (and far beyond), and any gaps between events.
        #[test]
        fn prices_stay_positive_and_finite(
            seed: u64,
            volatility in prop_oneof![0.0f64..5.0, 5.0f64..1e6],
            gaps in prop::collection::vec(prop_oneof![0.0f64..1.0, 1.0f64..1e9], 1..60),
        ) {
            let mut m = market(seed, 4, volatility);
            let mut stamper = FixedStamper::new(0.0, 1.0, 0);
            let mut out = Vec::new();
            let mut t = 0.0;
            m.tick(t, 2, &mut stamper, &mut out);
            for (n, gap) in gaps.into_iter().enumerate() {
                t += gap;
                if n % 7 == 6 {
                    m.tick(t, 2, &mut stamper, &mut out);
                } else {
                    m.trade(t, &mut stamper, &mut out);
                }
            }
            for e in &out {
                for p in prices(&e.event) {
                    prop_assert!(valid_price(p), "price {p} in {:?}", e.event);
                }
            }
            for i in 0..4 {
                prop_assert!(valid_price(m.mid(i)), "mid {}", m.mid(i));
            }
        }

        /// One GBM step stays in the price band whatever its inputs.
        #[test]
        fn gbm_step_stays_in_band(
            price in MIN_PRICE..MAX_PRICE,
            sigma in prop_oneof![0.0f64..10.0, 0.0f64..f64::MAX],
            years in prop_oneof![0.0f64..1.0, 0.0f64..f64::MAX],
            z in -1e300f64..1e300,
        ) {
            let next = gbm_step(price.ln(), sigma, years, z);
            prop_assert!(valid_price(next.exp()), "{next}");
        }
    }

    #[test]
    fn volumes_and_stats_match_the_published_trades() {
        let mut m = market(3, 6, 1.0);
        let mut stamper = FixedStamper::new(0.0, 1.0, 0);
        let mut out = Vec::new();
        m.tick(0.0, 4, &mut stamper, &mut out);
        for k in 1..500 {
            m.trade(k as f64 * 0.01, &mut stamper, &mut out);
        }
        m.tick(5.0, 4, &mut stamper, &mut out);

        let mut traded = [0.0f64; 6];
        let mut trades = 0u64;
        let mut volumes = [0.0f64; 6];
        let mut last_price: [Option<f64>; 6] = [None; 6];
        let mut stats = None;
        let mut batch = Vec::new();
        for e in &out {
            let i = e.token.map(|i| i as usize);
            match &e.event {
                Event::TradeExecuted(t) => {
                    traded[i.unwrap()] += t.price * t.amount;
                    trades += 1;
                }
                Event::VolumeUpdate(v) => volumes[i.unwrap()] = v.volume_24h,
                Event::PriceUpdate(p) => {
                    assert_eq!(p.previous_price, last_price[i.unwrap()]);
                    last_price[i.unwrap()] = Some(p.price);
                }
                Event::BatchUpdate(b) => batch.extend(b.updates.clone()),
                Event::MarketStats(s) => stats = Some(s.clone()),
            }
        }
        for i in 0..6 {
            assert!(
                (volumes[i] - traded[i]).abs() <= 0.006,
                "token {i}: {} vs {}",
                volumes[i],
                traded[i]
            );
        }
        let stats = stats.unwrap();
        assert_eq!(stats.total_trades_24h, trades);
        assert!((stats.total_volume_24h - traded.iter().sum::<f64>()).abs() < 0.05);
        assert_eq!(
            stats.active_tokens,
            traded.iter().filter(|&&v| v > 0.0).count() as u64
        );
        // The second tick's batch (the last 6 entries, 2 messages of ≤ 4)
        // carries each token's latest price.
        let last_batch = &batch[batch.len() - 6..];
        for (i, entry) in last_batch.iter().enumerate() {
            assert_eq!(Some(entry.price), last_price[i]);
            assert_eq!(entry.volume_24h, Some(volumes[i]));
        }
    }

    #[test]
    fn the_window_rolls_after_a_day() {
        let mut m = market(5, 1, 1.0);
        let mut stamper = FixedStamper::new(0.0, 1.0, 0);
        let mut out = Vec::new();
        m.tick(0.0, 10, &mut stamper, &mut out);
        m.trade(1.0, &mut stamper, &mut out);
        m.tick(2.0, 10, &mut stamper, &mut out);
        assert!(m.volume_24h(0) > 0.0);
        // Hourly ticks for a day and a bit: the trade at t=1 leaves the window.
        let mut t = 2.0;
        while t < DAY + 2.0 * CHECKPOINT_EVERY {
            t += CHECKPOINT_EVERY;
            m.tick(t, 10, &mut stamper, &mut out);
        }
        assert_eq!(m.volume_24h(0), 0.0);
        let last_volume = out.iter().rev().find_map(|e| match &e.event {
            Event::VolumeUpdate(v) => Some(v.volume_24h),
            _ => None,
        });
        assert_eq!(last_volume, Some(0.0), "the drop to 0 was published");
    }
}
