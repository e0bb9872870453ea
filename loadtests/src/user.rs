//! The Goose scenario: each Goose user is one reference client (the
//! harness's, with JWT, subscribe, back-off and reconnect) holding a
//! WebSocket for the whole run.
//!
//! Connect and subscribe times become Goose requests (`WS connect`,
//! `WS subscribe`, recorded with microsecond precision), so Goose's tables,
//! report and thresholds cover them; message latency stays out of Goose, in
//! each user's own HdrHistogram, merged when the run ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use goose::prelude::*;
use odin_harness::client::{Client, ClientConfig, ClientCounters, ClientStats};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::observer::{LoadObserver, RunClock, UserLink};
use crate::scenario::Scenario;
use crate::timeline::Timeline;

/// Goose's request method label for WebSocket operations.
pub const METHOD: &str = "WS";

/// Everything the users of one run share.
pub struct LoadContext {
    /// `ws://…/ws` of the server under test.
    pub ws_url: String,
    /// Mints a fresh token for every (re)connection.
    pub token: Arc<dyn Fn() -> String + Send + Sync>,
    /// The scenario being run.
    pub scenario: Scenario,
    /// The publisher's token ids, in rank order.
    pub token_ids: Vec<String>,
    /// When publishing started.
    pub clock: Arc<RunClock>,
    /// Latency per second of the run.
    pub timeline: Arc<Timeline>,
    /// Users whose first subscribe succeeded.
    pub subscribed: AtomicUsize,
    /// Users whose first subscribe failed or timed out.
    pub failed: AtomicUsize,
    /// Every started user's client, collected when the run ends.
    pub clients: Mutex<Vec<RunningUser>>,
    /// Cancelled to stop every client.
    pub stop: CancellationToken,
    /// Cancelled once publishing and draining are over: users stopping
    /// before it (Goose's run time ran out first) wait for it.
    pub finished: CancellationToken,
    /// How long a user may take to connect and subscribe.
    pub connect_timeout: Duration,
    /// The local addresses users connect from, in turn; empty lets the
    /// kernel choose.
    pub source_ips: Vec<std::net::IpAddr>,
    /// What a `wss://` target's certificate is checked against.
    pub tls: Option<odin_harness::tls::ClientTls>,
}

/// A started user's client task.
pub struct RunningUser {
    /// The user's Goose index.
    pub index: usize,
    /// The client task; it returns the observer when stopped.
    pub task: JoinHandle<LoadObserver>,
    /// Its client's counters.
    pub stats: Arc<ClientStats>,
    /// What it shares with its observer.
    pub link: Arc<UserLink>,
}

impl LoadContext {
    /// Whether the publisher has started.
    pub fn clock_started(&self) -> bool {
        self.clock.started()
    }

    /// Stops every client and collects what each measured.
    pub async fn collect(&self) -> Vec<UserResult> {
        self.stop.cancel();
        let running = std::mem::take(&mut *self.clients.lock());
        let mut results = Vec::with_capacity(running.len());
        for user in running {
            if let Ok(observer) = user.task.await {
                results.push(UserResult {
                    index: user.index,
                    observer,
                    counters: user.stats.snapshot(),
                    live: user.link.live.load(Ordering::Acquire),
                });
            }
        }
        results.sort_by_key(|r| r.index);
        results
    }
}

/// One user's measurements, kept when it stops.
pub struct UserResult {
    /// The user's Goose index.
    pub index: usize,
    /// What its observer measured.
    pub observer: LoadObserver,
    /// Its client's counters.
    pub counters: ClientCounters,
    /// Whether it ever got live.
    pub live: bool,
}

/// A user's running client, kept in its Goose session.
#[derive(Clone)]
struct Session {
    link: Arc<UserLink>,
    stop: CancellationToken,
    /// A child of [`LoadContext::finished`]: the user's own, so waiting on
    /// it takes no lock every other user contends for.
    finished: CancellationToken,
}

/// The scenario with its three transactions: connect (on start), hold
/// (repeated), disconnect (on stop).
pub fn scenario(ctx: Arc<LoadContext>) -> anyhow::Result<goose::goose::Scenario> {
    let connect_ctx = ctx.clone();
    let connect: TransactionFunction = Arc::new(move |user| {
        let ctx = connect_ctx.clone();
        Box::pin(async move { connect(user, ctx).await })
    });
    let hold: TransactionFunction = Arc::new(move |user| Box::pin(hold(user)));
    let stop_ctx = ctx;
    let disconnect: TransactionFunction = Arc::new(move |user| {
        let ctx = stop_ctx.clone();
        Box::pin(async move { disconnect(user, ctx).await })
    });
    Ok(goose::goose::Scenario::new("WebSocketUser")
        .register_transaction(Transaction::new(connect).set_name("connect").set_on_start())
        .register_transaction(Transaction::new(hold).set_name("hold"))
        .register_transaction(
            Transaction::new(disconnect)
                .set_name("disconnect")
                .set_on_stop(),
        ))
}

async fn connect(user: &mut GooseUser, ctx: Arc<LoadContext>) -> TransactionResult {
    let index = user.weighted_users_index;
    let channels = ctx
        .scenario
        .channels_of(ctx.scenario.first_user + index, &ctx.token_ids);
    let link = Arc::new(UserLink::default());
    let observer = LoadObserver::new(
        &channels,
        ctx.clock.clone(),
        ctx.timeline.clone(),
        link.clone(),
    );
    // A small de-dup window: the client also remembers the last price nonce
    // per token, which is what a reconnect's snapshot repeats.
    let config = ClientConfig::new(ctx.ws_url.clone(), channels)
        .with_dedup(Duration::from_secs(120), 256)
        .with_backoff(Duration::from_millis(100), Duration::from_secs(5))
        .with_compression(ctx.scenario.compression);
    let config = match ctx.source_ips.len() {
        0 => config,
        n => config.with_source_ip(ctx.source_ips[index % n]),
    };
    let config = match &ctx.tls {
        Some(tls) => config.with_tls(tls.clone()),
        None => config,
    };
    let token = ctx.token.clone();
    let client = Client::new(config, move || token(), observer);
    let stats = client.stats();
    let stop = ctx.stop.child_token();
    let task = tokio::spawn(client.run(stop.clone()));
    let live = tokio::time::timeout(ctx.connect_timeout, link.subscribed.notified())
        .await
        .is_ok();
    record_timings(user, &link).await?;
    if live {
        ctx.subscribed.fetch_add(1, Ordering::AcqRel);
    } else {
        ctx.failed.fetch_add(1, Ordering::AcqRel);
        user.record_custom_request_duration(
            METHOD,
            "subscribe",
            ctx.connect_timeout,
            false,
            None,
            Some("not subscribed within the connect timeout"),
        )
        .await?;
    }
    ctx.clients.lock().push(RunningUser {
        index,
        task,
        stats,
        link: link.clone(),
    });
    user.set_session_data(Session {
        link,
        stop,
        finished: ctx.finished.child_token(),
    });
    Ok(())
}

/// Holds the connection: wakes only when there are reconnect timings to
/// hand to Goose, or once the run's deliveries are over (then once a second,
/// so Goose can stop the user between two holds). A hold on a timer would
/// cost every user a Goose transaction a second: at 100,000 users, more CPU
/// than the deliveries.
async fn hold(user: &mut GooseUser) -> TransactionResult {
    let Some(session) = user.get_session_data::<Session>().cloned() else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return Ok(());
    };
    if session.finished.is_cancelled() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    } else {
        tokio::select! {
            () = session.link.timings_ready.notified() => {}
            () = session.finished.cancelled() => {}
        }
    }
    record_timings(user, &session.link).await?;
    Ok(())
}

/// Closes the user's connection once the run's deliveries are over; its
/// measurements are collected by [`LoadContext::collect`].
async fn disconnect(user: &mut GooseUser, ctx: Arc<LoadContext>) -> TransactionResult {
    let Some(session) = user.get_session_data::<Session>().cloned() else {
        return Ok(());
    };
    ctx.finished.cancelled().await;
    session.stop.cancel();
    record_timings(user, &session.link).await?;
    Ok(())
}

async fn record_timings(user: &mut GooseUser, link: &UserLink) -> TransactionResult {
    let timings = std::mem::take(&mut *link.timings.lock());
    for t in timings {
        user.record_custom_request_duration(
            METHOD,
            t.name,
            t.took,
            t.ok,
            t.status,
            t.error.as_deref(),
        )
        .await?;
    }
    Ok(())
}
