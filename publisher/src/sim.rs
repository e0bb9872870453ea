//! The live simulation as a [`Source`]: trade slots from the [`Schedule`]
//! and scheduler ticks merged in time, turned into NATS messages, with the
//! `--dup-ratio` duplicates.
//!
//! Everything here is a function of the seed and the stamper: the same seed
//! and a [`crate::stamp::FixedStamper`] give the same bytes, which the
//! determinism property test checks.

use std::time::Duration;

use async_nats::Subject;
use odin_protocol::{Subjects, TokenId};
use rand::Rng;
use rand::rngs::StdRng;

use crate::error::Error;
use crate::market::{Emitted, Market};
use crate::outgoing::Outgoing;
use crate::schedule::{InvalidRate, Pacing, Schedule};
use crate::seed::{Stream, rng};
use crate::source::Source;
use crate::stamp::Stamper;
use crate::universe::{self, UniverseParams};

/// What a simulation is made of (the simulation part of the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    /// Number of tokens (≥ 1).
    pub tokens: usize,
    /// Trades (hence trade `price_update`s) per second, all tokens together.
    pub rate: f64,
    /// How trade slots are spread in time.
    pub pacing: Pacing,
    /// Time between scheduler ticks (> 0).
    pub tick: Duration,
    /// Seed of every random draw.
    pub seed: u64,
    /// Fraction of messages re-published with the same nonce, in `[0, 1]`.
    pub dup_ratio: f64,
    /// Zipf exponent of per-token activity.
    pub skew: f64,
    /// Multiplier of every token's volatility.
    pub volatility: f64,
    /// Most entries in one `batch_update`.
    pub batch_size: usize,
}

/// Per-token subjects, built once: publishing then only clones a `Bytes`.
#[derive(Debug, Clone)]
struct TokenSubjects {
    price: Subject,
    volume: Subject,
    trade: Subject,
}

/// The simulation.
#[derive(Debug)]
pub struct Simulation {
    market: Market,
    trades: Schedule,
    /// Seconds between ticks.
    tick_every: f64,
    /// Index of the next tick (due at `ticks · tick_every`).
    ticks: u64,
    batch_size: usize,
    dup_ratio: f64,
    dup_rng: StdRng,
    token_subjects: Vec<TokenSubjects>,
    batch_subject: Subject,
    market_subject: Subject,
    emitted: Vec<Emitted>,
}

impl Simulation {
    /// A simulation of `params` publishing under `subjects`; `run_id` goes
    /// into trade ids.
    pub fn new(params: &SimParams, subjects: &Subjects, run_id: u64) -> Result<Self, InvalidRate> {
        let profiles = universe::generate(
            &UniverseParams {
                tokens: params.tokens.max(1),
                volatility_scale: params.volatility,
                skew: params.skew,
            },
            &mut rng(params.seed, Stream::Universe),
        );
        let token_subjects = profiles
            .iter()
            .map(|p| TokenSubjects {
                price: Subject::from(subjects.price(&p.id)),
                volume: Subject::from(subjects.volume(&p.id)),
                trade: Subject::from(subjects.trade(&p.id)),
            })
            .collect();
        Ok(Self {
            market: Market::new(profiles, rng(params.seed, Stream::Market), run_id),
            trades: Schedule::new(
                params.rate,
                params.pacing,
                rng(params.seed, Stream::Schedule),
            )?,
            tick_every: params.tick.as_secs_f64(),
            ticks: 0,
            batch_size: params.batch_size.max(1),
            dup_ratio: params.dup_ratio.clamp(0.0, 1.0),
            dup_rng: rng(params.seed, Stream::Duplicates),
            token_subjects,
            batch_subject: Subject::from(subjects.batch()),
            market_subject: Subject::from(subjects.market()),
            emitted: Vec::new(),
        })
    }

    /// The market, for inspection.
    pub fn market(&self) -> &Market {
        &self.market
    }

    fn next_tick_due(&self) -> f64 {
        self.ticks as f64 * self.tick_every
    }

    fn subject_of(&self, e: &Emitted) -> Subject {
        use odin_protocol::Event;
        match (&e.event, e.token) {
            (Event::PriceUpdate(_), Some(i)) => self.token_subjects[i as usize].price.clone(),
            (Event::VolumeUpdate(_), Some(i)) => self.token_subjects[i as usize].volume.clone(),
            (Event::TradeExecuted(_), Some(i)) => self.token_subjects[i as usize].trade.clone(),
            (Event::BatchUpdate(_), _) => self.batch_subject.clone(),
            (Event::MarketStats(_), _) => self.market_subject.clone(),
            (_, None) => unreachable!("per-token events always carry their token"),
        }
    }
}

impl Source for Simulation {
    fn next_due(&self) -> Option<f64> {
        Some(self.trades.next_due().min(self.next_tick_due()))
    }

    fn step<S: Stamper>(&mut self, stamper: &mut S, out: &mut Vec<Outgoing>) -> Result<(), Error> {
        let tick_due = self.next_tick_due();
        let mut emitted = std::mem::take(&mut self.emitted);
        emitted.clear();
        // A tick wins a tie, so the first tick (at 0) announces every
        // token's price before the first trade.
        if tick_due <= self.trades.next_due() {
            self.ticks += 1;
            self.market
                .tick(tick_due, self.batch_size, stamper, &mut emitted);
        } else {
            let due = self.trades.advance();
            self.market.trade(due, stamper, &mut emitted);
        }
        for e in &emitted {
            let message = Outgoing::new(&e.event, e.token, self.subject_of(e), stamper.scheduled());
            let duplicate = self.dup_ratio > 0.0 && self.dup_rng.random_bool(self.dup_ratio);
            if duplicate {
                let copy = message.to_duplicate();
                out.push(message);
                out.push(copy);
            } else {
                out.push(message);
            }
        }
        self.emitted = emitted;
        Ok(())
    }

    fn skip_before(&mut self, t: f64) -> Result<u64, Error> {
        // Skipped ticks are simply not emitted: the next tick covers the
        // whole interval since the previous one.
        while self.next_tick_due() < t {
            self.ticks += 1;
        }
        Ok(self.trades.skip_before(t))
    }

    fn token_ids(&self) -> Vec<TokenId> {
        self.market
            .profiles()
            .iter()
            .map(|p| p.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{FixedStamper, LiveStamper};
    use odin_protocol::ids::NonceSource;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn params(seed: u64, dup_ratio: f64, pacing: Pacing) -> SimParams {
        SimParams {
            tokens: 12,
            rate: 1000.0,
            pacing,
            tick: Duration::from_millis(50),
            seed,
            dup_ratio,
            skew: 1.0,
            volatility: 1.0,
            batch_size: 5,
        }
    }

    fn take<S: Stamper>(sim: &mut Simulation, stamper: &mut S, steps: usize) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for _ in 0..steps {
            sim.step(stamper, &mut out).unwrap();
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A seed reproduces the sequence: subjects and bodies byte for byte
        /// (with a fixed clock and the seed's nonce instance), duplicates
        /// included, whatever the pacing.
        #[test]
        fn a_seed_reproduces_the_sequence(seed: u64, dup in 0.0f64..0.5, poisson: bool) {
            let pacing = if poisson { Pacing::Poisson } else { Pacing::Uniform };
            let run = |seed| {
                let mut sim = Simulation::new(&params(seed, dup, pacing), &Subjects::default(), 9).unwrap();
                let mut stamper = FixedStamper::new(1.0e12, 0.5, 9);
                let mut dues = Vec::new();
                let mut out = Vec::new();
                for _ in 0..300 {
                    dues.push(sim.next_due().unwrap());
                    sim.step(&mut stamper, &mut out).unwrap();
                }
                (dues, out.into_iter().map(|m| (m.subject, m.payload, m.duplicate)).collect::<Vec<_>>())
            };
            let a = run(seed);
            prop_assert_eq!(&a, &run(seed));
            prop_assert_ne!(&a.1, &run(seed.wrapping_add(1)).1);
        }

        /// Nonces never repeat, except on the deliberate duplicate right after
        /// its original; also across two live stampers (two publishers, or
        /// one restarted) running the same seed.
        #[test]
        fn nonces_never_repeat(seed: u64, dup in 0.0f64..0.5) {
            let mut seen = HashSet::new();
            for _ in 0..2 {
                let mut sim = Simulation::new(&params(seed, dup, Pacing::Uniform), &Subjects::default(), 9).unwrap();
                let mut stamper = LiveStamper::new(NonceSource::random());
                let out = take(&mut sim, &mut stamper, 300);
                for (k, m) in out.iter().enumerate() {
                    let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                    prop_assert_eq!(body["nonce"].as_str(), Some(m.nonce.as_str()));
                    if m.duplicate {
                        prop_assert_eq!(&out[k - 1].nonce, &m.nonce);
                        prop_assert_eq!(&out[k - 1].payload, &m.payload);
                    } else {
                        prop_assert!(seen.insert(m.nonce.clone()), "{} repeated", m.nonce);
                    }
                }
            }
        }
    }

    #[test]
    fn the_first_tick_announces_every_token_then_trades_follow() {
        let mut sim =
            Simulation::new(&params(1, 0.0, Pacing::Uniform), &Subjects::default(), 9).unwrap();
        let mut stamper = FixedStamper::new(0.0, 1.0, 0);
        let first = take(&mut sim, &mut stamper, 1);
        let prices = first
            .iter()
            .filter(|m| m.kind == crate::outgoing::EventKind::PriceUpdate)
            .count();
        assert_eq!(prices, 12);
        assert_eq!(
            first.last().unwrap().subject.as_str(),
            "odin.market.statistics"
        );
        let trade = take(&mut sim, &mut stamper, 1);
        assert_eq!(trade.len(), 2);
        assert!(trade[0].subject.starts_with("odin.trades."));
        assert!(trade[1].trade_price);
    }

    #[test]
    fn dup_ratio_is_honoured() {
        let mut sim =
            Simulation::new(&params(2, 0.2, Pacing::Uniform), &Subjects::default(), 9).unwrap();
        let out = take(&mut sim, &mut FixedStamper::new(0.0, 1.0, 0), 5000);
        let dups = out.iter().filter(|m| m.duplicate).count() as f64;
        let originals = out.len() as f64 - dups;
        let ratio = dups / originals;
        assert!((ratio - 0.2).abs() < 0.02, "{ratio}");
    }
}
