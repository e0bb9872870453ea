//! Runs a publisher: builds the source (simulation or replay), paces it
//! against the wall clock, publishes, records and counts, and stops on
//! `--duration`, the end of a recording, or the shutdown future.
//!
//! Pacing is open-loop: step `k` is sent when the clock reaches
//! `start + due(k)`, whatever happened before, so send-time jitter never
//! becomes drift. The timer has millisecond resolution, so at high rates the
//! events due within one millisecond go out back to back. A publisher that
//! falls more than `--max-lag` behind (NATS outage, CPU starvation) skips
//! the missed slots rather than bursting them, and counts them.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use odin_protocol::ids::NonceSource;
use tokio::time::Instant;

use crate::config::PublisherConfig;
use crate::error::{ConfigError, Error};
use crate::outgoing::Outgoing;
use crate::pipeline::PipelinedNats;
use crate::record::Recorder;
use crate::replay::Replay;
use crate::seed::{self, Stream};
use crate::sim::{SimParams, Simulation};
use crate::sink::{NatsSink, Sink, SinkError};
use crate::source::Source;
use crate::stamp::LiveStamper;
use crate::totals::{Mode, Tally, Totals};

/// How often a progress line is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How late past `--duration` the last slots may still go out before they
/// count as missed (the timer itself fires up to a millisecond late).
const END_GRACE: Duration = Duration::from_millis(50);
/// The shutdown future is polled at least once per this many steps, so a
/// publisher that never sleeps (asked more than it can do) still stops.
const SHUTDOWN_POLL_STEPS: u64 = 256;

/// Connects to NATS (`--nats-url`, retrying up to `--connect-timeout`) on a
/// publishing thread of its own ([`PipelinedNats`]) and runs until `--duration`, the end of the recording, or `shutdown`
/// completes; then flushes and returns what was published.
///
/// Bad settings, a missing recording or an unwritable record file fail
/// before connecting.
pub async fn run(
    config: PublisherConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Totals, Error> {
    config.validate()?;
    let prepared = Prepared::new(&config)?;
    let mut sink = PipelinedNats::connect(
        &config.nats_url,
        config.connect_timeout,
        config.nats_buffer,
        config.confirm_stored_prices,
    )
    .await?;
    prepared.drive(&config, &mut sink, shutdown).await
}

/// Like [`run`], publishing through an existing client (its owner handles
/// connection events; `--nats-url` and the connect settings are ignored).
pub async fn run_with_client(
    config: PublisherConfig,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()>,
) -> Result<Totals, Error> {
    let mut sink = NatsSink::from_client(client);
    if config.confirm_stored_prices {
        sink.confirm_stored_prices();
    }
    run_with_sink(config, &mut sink, shutdown).await
}

/// Like [`run`], publishing to any [`Sink`] (tests use
/// [`crate::sink::MemorySink`]).
pub async fn run_with_sink<K: Sink>(
    config: PublisherConfig,
    sink: &mut K,
    shutdown: impl Future<Output = ()>,
) -> Result<Totals, Error> {
    config.validate()?;
    Prepared::new(&config)?.drive(&config, sink, shutdown).await
}

/// The source of a run.
enum AnySource {
    Sim(Box<Simulation>),
    Replay(Box<Replay>),
}

/// Everything that can fail before connecting, done before connecting.
struct Prepared {
    source: AnySource,
    recorder: Option<Recorder>,
    stamper: LiveStamper,
    seed: Option<u64>,
    run_id: u64,
}

impl Prepared {
    fn new(config: &PublisherConfig) -> Result<Self, Error> {
        let subjects = config.subjects()?;
        let seed = config.seed.unwrap_or_else(rand::random);
        let run_id = if config.deterministic_nonces && config.replay.is_none() {
            seed::derive(seed, Stream::Nonces)
        } else {
            rand::random()
        };
        let (source, seed) = match &config.replay {
            Some(path) => {
                let replay = Replay::open(path, config.speed, subjects)?;
                tracing::info!(recording = %path.display(), speed = config.speed, "replaying");
                (AnySource::Replay(Box::new(replay)), None)
            }
            None => {
                let params = SimParams {
                    tokens: config.tokens,
                    rate: config.rate,
                    pacing: config.pacing,
                    tick: config.tick,
                    seed,
                    dup_ratio: config.dup_ratio,
                    skew: config.skew,
                    volatility: config.volatility,
                    batch_size: config.batch_size,
                };
                let sim = Simulation::new(&params, &subjects, run_id).map_err(|e| ConfigError {
                    setting: "--rate",
                    reason: e.to_string(),
                })?;
                tracing::info!(
                    tokens = config.tokens,
                    rate = config.rate,
                    tick = ?config.tick,
                    seed,
                    run_id = format_args!("{run_id:016x}"),
                    "simulating (rerun with --seed {seed} for the same sequence)"
                );
                (AnySource::Sim(Box::new(sim)), Some(seed))
            }
        };
        let recorder = config.record.as_deref().map(Recorder::create).transpose()?;
        Ok(Self {
            source,
            recorder,
            stamper: LiveStamper::new(NonceSource::with_instance(run_id)),
            seed,
            run_id,
        })
    }

    async fn drive<K: Sink>(
        self,
        config: &PublisherConfig,
        sink: &mut K,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Totals, Error> {
        let Prepared {
            source,
            mut recorder,
            mut stamper,
            seed,
            run_id,
        } = self;
        let mut shutdown = pin!(shutdown);
        let (outcome, token_ids, mode) = match source {
            AnySource::Sim(mut sim) => {
                let outcome = pace(
                    &mut *sim,
                    sink,
                    &mut recorder,
                    &mut stamper,
                    config,
                    shutdown.as_mut(),
                )
                .await;
                (outcome, sim.token_ids(), Mode::Simulate)
            }
            AnySource::Replay(mut replay) => {
                let outcome = pace(
                    &mut *replay,
                    sink,
                    &mut recorder,
                    &mut stamper,
                    config,
                    shutdown.as_mut(),
                )
                .await;
                (outcome, replay.token_ids(), Mode::Replay)
            }
        };
        // Whatever stopped the run, what was published is flushed and the
        // recording closed, so a failed run still leaves usable output.
        let flushed = match tokio::time::timeout(config.flush_timeout, sink.flush()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "final flush failed; the last messages may be lost");
                false
            }
            Err(_) => {
                tracing::warn!(
                    timeout = ?config.flush_timeout,
                    "final flush timed out (NATS unreachable?); the last messages may be lost"
                );
                false
            }
        };
        let recorded = recorder.map(Recorder::finish).transpose();
        let Outcome {
            tally,
            elapsed,
            interrupted,
            error,
        } = outcome;
        if let Some(e) = error {
            return Err(e);
        }
        recorded?;
        let elapsed_secs = elapsed.as_secs_f64();
        let stats = sink.connection_stats();
        Ok(Totals {
            mode,
            seed,
            run_id: format!("{run_id:016x}"),
            elapsed_secs,
            asked_rate: (mode == Mode::Simulate).then_some(config.rate),
            achieved_rate: if elapsed_secs > 0.0 {
                tally.trade_price_updates as f64 / elapsed_secs
            } else {
                0.0
            },
            trade_price_updates: tally.trade_price_updates,
            events: tally.events,
            duplicates: tally.duplicates,
            price_updates_by_token: per_token(&tally.by_token, &token_ids, 0),
            volume_updates_by_token: per_token(&tally.by_token, &token_ids, 1),
            trades_by_token: per_token(&tally.by_token, &token_ids, 2),
            last_price_at_by_token: tally
                .by_token
                .iter()
                .zip(&tally.last_price_at)
                .enumerate()
                .filter(|(_, (counts, _))| counts[0] > 0)
                .map(|(i, (_, &at))| (token_ids[i].to_string(), at))
                .collect(),
            messages: tally.messages(),
            skipped: tally.skipped,
            errors: tally.errors + sink.refused_later(),
            disconnects: stats.map_or(0, |s| s.disconnects()),
            reconnects: stats.map_or(0, |s| s.reconnects()),
            stored_prices_resent: sink.store_stats().map_or(0, |s| s.resent()),
            stored_prices_unconfirmed: sink.store_stats().map_or(0, |s| s.unconfirmed()),
            flushed,
            interrupted,
        })
    }
}

/// How the pacing loop ended.
struct Outcome {
    tally: Tally,
    elapsed: Duration,
    interrupted: bool,
    /// A fatal error (bad recording line, record write, closed client);
    /// the tally is still valid up to it.
    error: Option<Error>,
}

/// Polls `shutdown` once: whether it has completed.
/// One column of the per-token tally as `token id → count` (zero counts
/// left out).
fn per_token(
    by_token: &[[u64; 3]],
    token_ids: &[impl std::fmt::Display],
    column: usize,
) -> std::collections::BTreeMap<String, u64> {
    by_token
        .iter()
        .enumerate()
        .filter(|&(_, counts)| counts[column] > 0)
        .map(|(i, counts)| (token_ids[i].to_string(), counts[column]))
        .collect()
}

async fn poll_once<F: Future<Output = ()>>(shutdown: Pin<&mut F>) -> bool {
    let mut shutdown = shutdown;
    std::future::poll_fn(|cx| Poll::Ready(shutdown.as_mut().poll(cx).is_ready())).await
}

/// The pacing loop.
async fn pace<S: Source, K: Sink, F: Future<Output = ()>>(
    source: &mut S,
    sink: &mut K,
    recorder: &mut Option<Recorder>,
    stamper: &mut LiveStamper,
    config: &PublisherConfig,
    mut shutdown: Pin<&mut F>,
) -> Outcome {
    let mut tally = Tally::default();
    let start = Instant::now();
    let start_ms = odin_protocol::time::now_millis();
    let mut out: Vec<Outgoing> = Vec::with_capacity(64);
    let mut steps_to_poll = SHUTDOWN_POLL_STEPS;
    let mut next_progress = start + PROGRESS_EVERY;
    let mut skip_report = SkipReport::default();
    let mut interrupted = false;
    let mut error = None;

    'run: loop {
        let due = match source.next_due() {
            Some(due) if config.duration.is_none_or(|d| due < d.as_secs_f64()) => due,
            // Exhausted recording, or the next step is past --duration.
            _ => break,
        };
        let target = start + Duration::from_secs_f64(due);
        let now = Instant::now();
        if target > now {
            // Whatever a batching sink holds goes out before the wait.
            let idle = tokio::select! {
                biased;
                r = sink.idle() => r,
                () = &mut shutdown => { interrupted = true; break }
            };
            if let Err(e) = idle {
                error = Some(Error::ClientClosed(e.to_string()));
                break;
            }
            tokio::select! {
                biased;
                () = &mut shutdown => { interrupted = true; break }
                () = tokio::time::sleep_until(target) => {}
            }
        } else {
            if config
                .duration
                .is_some_and(|d| now >= start + d + END_GRACE.min(config.max_lag))
            {
                let d = config.duration.unwrap_or_default();
                // Overloaded to the end: the slots left before the end of
                // the run were missed, not merely a timer tick late.
                match source.skip_before(d.as_secs_f64()) {
                    Ok(skipped) => tally.skipped += skipped,
                    Err(e) => error = Some(e),
                }
                break;
            }
            let lag = now - target;
            if lag > config.max_lag {
                match source.skip_before((now - start).as_secs_f64()) {
                    Ok(skipped) => {
                        tally.skipped += skipped;
                        skip_report.add(skipped, lag, now);
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
                continue;
            }
            steps_to_poll -= 1;
            if steps_to_poll == 0 {
                steps_to_poll = SHUTDOWN_POLL_STEPS;
            }
            if steps_to_poll == SHUTDOWN_POLL_STEPS && poll_once(shutdown.as_mut()).await {
                interrupted = true;
                break;
            }
        }
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            let secs = (now - start).as_secs_f64();
            tracing::info!(
                messages = tally.messages(),
                price_events_per_sec =
                    format_args!("{:.1}", tally.trade_price_updates as f64 / secs),
                skipped = tally.skipped,
                "publishing"
            );
        }

        out.clear();
        stamper.schedule(start_ms + due * 1000.0);
        if let Err(e) = source.step(stamper, &mut out) {
            error = Some(e);
            break;
        }
        for message in out.drain(..) {
            let meta = message.meta();
            // Only a recording run pays for a copy (cheap: shared buffers).
            let copy = recorder.is_some().then(|| message.clone());
            let published = tokio::select! {
                biased;
                r = sink.publish(message) => r,
                // Only reached while the publish waits (client buffer full
                // during an outage): a stop must not hang on NATS.
                () = &mut shutdown => { interrupted = true; break 'run }
            };
            match published {
                Ok(()) => {
                    tally.count(meta);
                    let recorded = match (recorder.as_mut(), copy) {
                        (Some(r), Some(copy)) => r.write(due, &copy),
                        _ => Ok(()),
                    };
                    if let Err(e) = recorded {
                        error = Some(e);
                        break 'run;
                    }
                }
                Err(SinkError::Refused(reason)) => {
                    tally.errors += 1;
                    if tally.errors <= 10 || tally.errors.is_power_of_two() {
                        tracing::warn!(errors = tally.errors, %reason, "NATS refused a message");
                    }
                }
                Err(SinkError::Closed(reason)) => {
                    error = Some(Error::ClientClosed(reason));
                    break 'run;
                }
            }
        }
    }

    // The last step's messages may still sit in a batching sink; send them
    // now rather than at the end of the window (that wait would show up as
    // latency on the run's final events).
    if error.is_none()
        && let Err(e) = sink.idle().await
    {
        error = Some(Error::ClientClosed(e.to_string()));
    }
    let mut elapsed = start.elapsed();
    let window = config
        .duration
        .filter(|_| !interrupted && error.is_none() && source.next_due().is_some());
    if let Some(d) = window {
        // Simulation: every slot of the window [0, d) went out. Hold until
        // the end of the window, and measure the achieved rate over the
        // window itself (or longer, if the last slots went out late), not
        // over the timer's own lateness in waking us at its end.
        tokio::select! {
            biased;
            () = &mut shutdown => interrupted = true,
            () = tokio::time::sleep_until(start + d) => {}
        }
        elapsed = elapsed.max(d);
        if interrupted {
            elapsed = start.elapsed();
        }
    }
    skip_report.flush();
    Outcome {
        tally,
        elapsed,
        interrupted,
        error,
    }
}

/// Logs skipped slots at most once a second, summed.
#[derive(Default)]
struct SkipReport {
    pending: u64,
    worst_lag: Duration,
    last: Option<Instant>,
}

impl SkipReport {
    fn add(&mut self, skipped: u64, lag: Duration, now: Instant) {
        self.pending += skipped;
        self.worst_lag = self.worst_lag.max(lag);
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last = Some(now);
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending > 0 {
            tracing::warn!(
                skipped = self.pending,
                behind = ?self.worst_lag,
                "fell behind schedule (NATS down or CPU starved?): skipped the missed trade slots"
            );
        }
        self.pending = 0;
        self.worst_lag = Duration::ZERO;
    }
}
