//! The hot path counted in instructions, checked against a committed
//! baseline: wall-clock figures on a busy two-core machine move by tens of
//! percent from run to run, instruction counts under callgrind by a fraction
//! of one, so a 5 % regression shows.
//!
//! ```text
//! cargo bench -p odin-server --bench instructions              # check
//! cargo bench -p odin-server --bench instructions -- --update  # new baseline
//! ```
//!
//! One binary, two modes:
//!
//! - **Outer** (the default): runs this binary again under
//!   `valgrind --tool=callgrind` for each workload at two sizes, and divides
//!   the difference of the total instructions by the difference of the work
//!   done, so start-up, set-up and tear-down cancel out. Prints
//!   instructions per delivery and per handshake beside the baseline
//!   (`server/benches/instructions.json`) and exits non-zero when one is
//!   above baseline × (1 + the file's tolerance).
//! - **Inner** (`--measure …`): runs one workload once, single-threaded, on a
//!   current-thread runtime; everything that depends on the size is in the
//!   measured path, everything else is made the same at both sizes (the
//!   messages for the larger size are built in both runs).
//!
//! The workloads use the server's own code:
//!
//! - `deliveries`: ready-made NATS messages (price, volume and trade updates
//!   of one token, with `Nats-Msg-Id`, as the publisher sends them) go
//!   through [`ingest::ingest_one`] (validate, de-duplicate, measure,
//!   [`Router::deliver`] into the subscribers' outboxes) in bursts, then
//!   [`Router::wake_all`]; one task per subscriber waits on its outbox as the
//!   writer does, takes the batch and encodes it with [`wire::write_frames`]
//!   into a sink that takes every byte (a socket's copy is the kernel's, which
//!   callgrind does not count either). The writer's loop itself (its `select!`
//!   over heartbeat, expiry and shutdown, and the socket) is not run: it needs
//!   a TCP socket and the whole server state. Figures are per delivery (one
//!   event to one subscriber), at one event per wake-up and at bursts of 16.
//! - `handshakes`: one WebSocket upgrade over an in-memory duplex: the
//!   client's request with a JWT in `?token=`, tungstenite's server handshake
//!   with the listener's configuration, and in its callback what the
//!   listener's `admit` does with the token ([`token_from_request`],
//!   [`Authenticator::verify`], HS256). Not counted: the TCP accept, the
//!   connection slot and what `connection::serve` does after the upgrade
//!   (greeting, writer task), which need the whole server state (its NATS
//!   client included).
//!
//! Instruction counts depend on the compiler and the dependencies' versions:
//! after updating either, or after an intended change to the hot path,
//! rewrite the baseline with `--update` (`make bench-instructions-update`).

use std::collections::{BTreeMap, VecDeque};
use std::io::IoSlice;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::header::AUTHORIZATION;
use odin_protocol::ids::NonceSource;
use odin_protocol::message::{PriceSource, PriceUpdate, Side, TradeExecuted, VolumeUpdate};
use odin_protocol::{Channel, DedupWindow, Event, Subjects, TokenId};
use odin_server::auth::{AuthConfig, Authenticator, mint_token, token_from_request};
use odin_server::config::EventLimits;
use odin_server::metrics::Metrics;
use odin_server::outbox::{CloseRequest, Frame, Outbox};
use odin_server::router::Router;
use odin_server::{ServerConfig, WS_PATH, ingest, wire};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Where the committed figures are.
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/instructions.json");

/// Events of the larger `deliveries` size; both sizes build this many
/// messages so that building them cancels out.
const MAX_EVENTS: usize = 400;

#[derive(Debug, Parser)]
#[command(about = "Instruction counts of odin-server's hot path under callgrind")]
struct Args {
    /// Inner mode: run this workload once (what the outer mode runs under
    /// callgrind).
    #[arg(long, value_enum)]
    measure: Option<Workload>,
    /// `deliveries`: events ingested (at most 400).
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// `deliveries`: subscribers of the token.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// `deliveries`: events ingested before the writers are woken.
    #[arg(long, default_value_t = 1)]
    burst: usize,
    /// `handshakes`: upgrades performed.
    #[arg(long, default_value_t = 50)]
    count: usize,
    /// Outer mode: write the measured figures to the baseline file instead
    /// of checking them.
    #[arg(long)]
    update: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Deliveries,
    Handshakes,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.measure {
        Some(Workload::Deliveries) => deliveries(args.events, args.subscribers, args.burst),
        Some(Workload::Handshakes) => handshakes(args.count),
        None => outer(args.update),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("instructions: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---- inner mode: the workloads ----

/// `events` events through ingest to `subscribers` subscribers of one token,
/// `burst` events per wake-up of their writers.
fn deliveries(events: usize, subscribers: usize, burst: usize) -> anyhow::Result<bool> {
    if events > MAX_EVENTS || burst == 0 {
        bail!("--events must be at most {MAX_EVENTS} and --burst at least 1");
    }
    let config = ServerConfig::default();
    let token = TokenId::parse("BTC").expect("valid token id");
    let messages = nats_messages(&config.subjects, &token, MAX_EVENTS);
    let expected_bytes: usize = messages[..events]
        .iter()
        .map(|m| frame_len(m.payload.len()))
        .sum::<usize>()
        * subscribers;
    let metrics = Arc::new(Metrics::new());
    let router = Router::new(metrics.clone());
    let mut window = DedupWindow::new(config.dedup_window, config.dedup_capacity);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let written = runtime.block_on(async {
        let channel = [Channel::Token(token.clone())];
        let mut writers = Vec::with_capacity(subscribers);
        let mut outboxes = Vec::with_capacity(subscribers);
        for conn in 0..subscribers as u64 {
            let outbox = Arc::new(Outbox::new(
                config.max_queue_bytes,
                config.conflate_above_bytes,
            ));
            router.subscribe(conn, &outbox, &channel, Frame::plain("ack"));
            writers.push(tokio::spawn(writer(outbox.clone(), metrics.clone())));
            outboxes.push(outbox);
        }
        // The acks go out before the first event.
        tokio::task::yield_now().await;

        // The events' timestamps are fixed and long past (see
        // `nats_messages`): a window reaching back a century takes them all.
        let limits = EventLimits {
            max_age: Duration::from_secs(100 * 365 * 86_400),
            ..EventLimits::default()
        };
        let mut wakes = Vec::new();
        let mut messages = messages.into_iter();
        let mut left = events;
        while left > 0 {
            for msg in messages.by_ref().take(burst.min(left)) {
                ingest::ingest_one(
                    &config.subjects,
                    &limits,
                    &metrics,
                    &router,
                    &mut window,
                    msg,
                    &mut wakes,
                );
            }
            left = left.saturating_sub(burst);
            Router::wake_all(&mut wakes);
            // Every woken writer runs before the next burst.
            tokio::task::yield_now().await;
        }
        // The unused messages of the larger size: dropping them would cost
        // less the more are used, skewing the difference.
        std::mem::forget(messages);

        for outbox in &outboxes {
            outbox.close(CloseRequest {
                code: odin_protocol::close::GOING_AWAY,
                drain: true,
                reply: false,
            });
        }
        let mut written = 0;
        for writer in writers {
            written += writer.await.expect("writer task");
        }
        written
    });
    let delivered = metrics.messages_delivered.get();
    let want = ((events + 1) * subscribers) as u64;
    if delivered != want || written != expected_bytes + subscribers * frame_len(3) {
        bail!(
            "delivered {delivered} frames ({written} bytes), expected {want} ({} bytes)",
            expected_bytes + subscribers * frame_len(3)
        );
    }
    Ok(true)
}

/// What the writer does with its outbox each time it wakes (its loop in
/// `writer.rs` without the heartbeat, expiry, shutdown and abort arms),
/// writing into a sink that takes everything. Returns the bytes written.
async fn writer(outbox: Arc<Outbox>, metrics: Arc<Metrics>) -> usize {
    let mut batch: VecDeque<Frame> = VecDeque::new();
    let mut written = 0;
    let ping = false;
    loop {
        outbox.ready().await;
        let close = outbox.take(&mut batch);
        let pong = outbox.take_pong();
        let count = batch.len() as u64;
        let frames = || {
            let pong = pong.as_deref().map(|p| (wire::OP_PONG, p));
            let texts = batch.iter().map(|f| (wire::OP_TEXT, f.text.as_bytes()));
            let ping = ping.then_some((wire::OP_PING, &[][..]));
            pong.into_iter().chain(texts).chain(ping)
        };
        let mut progress = wire::Progress::default();
        loop {
            let sink = |slices: &[IoSlice<'_>]| Ok(slices.iter().map(|s| s.len()).sum());
            match wire::write_frames(sink, frames(), &mut progress) {
                Ok(0) => break,
                Ok(n) => written += n,
                Err(e) => panic!("a memory sink cannot fail: {e}"),
            }
        }
        metrics.messages_delivered.inc_by(count);
        batch.clear();
        if close.is_some() {
            return written;
        }
    }
}

/// `count` price, volume and trade updates of `token` in turn, as the
/// publisher sends them (JSON body, `Nats-Msg-Id` header = the nonce). The
/// figures are fixed so every run parses the same bytes; the timestamps are
/// long past, so every ingest latency falls in the same histogram bucket.
fn nats_messages(subjects: &Subjects, token: &TokenId, count: usize) -> Vec<async_nats::Message> {
    let nonces = NonceSource::with_instance(0x0d1b_0000_0000_0001);
    (0..count)
        .map(|i| {
            let nonce = nonces.next();
            let step = (i % 40) as f64;
            let timestamp = 1_700_000_000_000.0 + i as f64 * 7.0;
            let event = match i % 3 {
                0 => Event::PriceUpdate(PriceUpdate {
                    token_id: token.clone(),
                    price: 64_250.5 + step * 1.25,
                    source: PriceSource::Trade,
                    previous_price: Some(64_249.25 + step * 1.25),
                    change_24h: Some(1.75),
                    timestamp,
                    nonce: nonce.clone(),
                }),
                1 => Event::VolumeUpdate(VolumeUpdate {
                    token_id: token.clone(),
                    volume_24h: 1_250_000.5 + step * 10.0,
                    timestamp,
                    nonce: nonce.clone(),
                }),
                _ => Event::TradeExecuted(TradeExecuted {
                    token_id: token.clone(),
                    trade_id: format!("t-{i:06}"),
                    side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
                    price: 64_250.5 + step * 1.25,
                    amount: 0.125,
                    timestamp,
                    nonce: nonce.clone(),
                }),
            };
            let subject = event.subject(subjects);
            let payload = Bytes::from(event.to_json());
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, nonce.as_str());
            async_nats::Message {
                length: subject.len() + payload.len(),
                subject: subject.into(),
                reply: None,
                payload,
                headers: Some(headers),
                status: None,
                description: None,
            }
        })
        .collect()
}

/// Bytes on the wire of a text frame of `payload` bytes (below 64 KiB).
fn frame_len(payload: usize) -> usize {
    payload + if payload < 126 { 2 } else { 4 }
}

/// `count` WebSocket upgrades with a JWT, one after the other.
fn handshakes(count: usize) -> anyhow::Result<bool> {
    let config = ServerConfig::default();
    let auth = AuthConfig::development();
    let authenticator = Authenticator::new(&auth);
    let token = mint_token(&auth, "bench-user", Duration::from_secs(3600));
    let request = format!(
        "GET {WS_PATH}?token={token} HTTP/1.1\r\n\
         Host: 127.0.0.1:8080\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    // As `listener::websocket_config`.
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
        .read_buffer_size(512)
        .write_buffer_size(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for _ in 0..count {
            let (mut client, server) = tokio::io::duplex(4096);
            let mut subject = None;
            // As `listener::admit`, less the path's 404 and the connection
            // slot.
            #[allow(clippy::result_large_err)]
            let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                assert_eq!(req.uri().path(), WS_PATH);
                let token = token_from_request(
                    req.uri().query(),
                    req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()),
                );
                let verified = authenticator
                    .verify(&token.unwrap_or_default())
                    .expect("the token is valid");
                subject = Some(verified.sub);
                Ok(resp)
            };
            let serve =
                tokio_tungstenite::accept_hdr_async_with_config(server, callback, Some(ws_config));
            let ask = async {
                client.write_all(request.as_bytes()).await?;
                let mut response = Vec::with_capacity(256);
                while !response.ends_with(b"\r\n\r\n") {
                    if client.read_buf(&mut response).await? == 0 {
                        break;
                    }
                }
                anyhow::Ok(response)
            };
            let (upgraded, response) = tokio::join!(serve, ask);
            let response = response?;
            upgraded.context("the upgrade failed")?;
            if !response.starts_with(b"HTTP/1.1 101") || subject.is_none() {
                bail!("unexpected answer: {}", String::from_utf8_lossy(&response));
            }
        }
        Ok(true)
    })
}

// ---- outer mode: callgrind, differences, the baseline ----

/// One figure: a workload run at two sizes, and the units of work (deliveries
/// or handshakes) each does.
struct Figure {
    name: &'static str,
    unit: &'static str,
    small: (Vec<String>, u64),
    large: (Vec<String>, u64),
}

fn figures() -> Vec<Figure> {
    let deliveries = |burst: usize, events: usize| {
        let args =
            format!("--measure deliveries --events {events} --subscribers 100 --burst {burst}");
        (
            args.split(' ').map(String::from).collect(),
            (events * 100) as u64,
        )
    };
    let handshakes = |count: usize| {
        let args = format!("--measure handshakes --count {count}");
        (args.split(' ').map(String::from).collect(), count as u64)
    };
    vec![
        Figure {
            name: "deliveries, 1 event per wake-up",
            unit: "delivery",
            small: deliveries(1, MAX_EVENTS / 2),
            large: deliveries(1, MAX_EVENTS),
        },
        Figure {
            name: "deliveries, bursts of 16 events",
            unit: "delivery",
            small: deliveries(16, MAX_EVENTS / 2),
            large: deliveries(16, MAX_EVENTS),
        },
        Figure {
            name: "handshakes",
            unit: "handshake",
            small: handshakes(50),
            large: handshakes(100),
        },
    ]
}

/// The committed figures.
#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    /// Why the file is there and how to rewrite it.
    note: String,
    /// A figure above baseline × (1 + tolerance) fails the check.
    tolerance: f64,
    /// Instructions per unit of work, by figure name.
    instructions: BTreeMap<String, f64>,
}

fn outer(update: bool) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("cannot find this benchmark's executable")?;
    let status = Command::new("valgrind").arg("--version").output();
    if !status.is_ok_and(|s| s.status.success()) {
        bail!(
            "valgrind is not installed: run scripts/ensure-valgrind.sh (make bench-instructions does)"
        );
    }
    let dir = std::env::temp_dir().join(format!("odin-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let figures = figures();
    // Every run at once: the machine's cores share them, the counts do not
    // depend on it.
    let mut runs = Vec::new();
    for (i, figure) in figures.iter().enumerate() {
        for (size, (args, _)) in [("small", &figure.small), ("large", &figure.large)] {
            let out = dir.join(format!("{i}-{size}.callgrind"));
            let child = Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&exe)
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .context("cannot start valgrind")?;
            runs.push((child, out));
        }
    }
    let mut totals = Vec::new();
    for (child, out) in runs {
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "a measured run failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        totals.push(total_instructions(&out)?);
    }
    let _ = std::fs::remove_dir_all(&dir);

    let measured: Vec<(&Figure, f64)> = figures
        .iter()
        .zip(totals.chunks(2))
        .map(|(figure, pair)| {
            let work = figure.large.1 - figure.small.1;
            (figure, (pair[1] as f64 - pair[0] as f64) / work as f64)
        })
        .collect();

    let path = Path::new(BASELINE);
    let baseline = read_baseline(path)?;
    if update {
        let tolerance = baseline.as_ref().map_or(0.02, |b| b.tolerance);
        let instructions = measured
            .iter()
            .map(|(f, n)| (f.name.to_owned(), (n * 10.0).round() / 10.0))
            .collect();
        write_baseline(path, tolerance, instructions)?;
        for (figure, n) in &measured {
            println!(
                "{:<34} {n:>12.1} instructions per {}",
                figure.name, figure.unit
            );
        }
        println!("wrote {}", path.display());
        return Ok(true);
    }
    let Some(baseline) = baseline else {
        bail!(
            "no baseline at {}: write one with `make bench-instructions-update`",
            path.display()
        );
    };
    let tolerance = baseline.tolerance;
    println!(
        "{:<34} {:>10} {:>14} {:>12} {:>8}",
        "workload", "per", "instructions", "baseline", "ratio"
    );
    let mut failures = Vec::new();
    for (figure, n) in &measured {
        let Some(&base) = baseline.instructions.get(figure.name) else {
            println!(
                "{:<34} {:>10} {n:>14.1} {:>12} {:>8}",
                figure.name, figure.unit, "-", "-"
            );
            failures.push(format!("{}: no baseline figure", figure.name));
            continue;
        };
        let ratio = n / base;
        println!(
            "{:<34} {:>10} {n:>14.1} {base:>12.1} {ratio:>8.4}",
            figure.name, figure.unit
        );
        if ratio > 1.0 + tolerance {
            failures.push(format!(
                "{}: {n:.1} instructions per {} is {:+.1} % over the baseline's {base:.1} (tolerance {:.1} %)",
                figure.name,
                figure.unit,
                (ratio - 1.0) * 100.0,
                tolerance * 100.0
            ));
        } else if ratio < 1.0 - tolerance {
            println!(
                "  {:.1} % below the baseline: if that is intended, rewrite it with `make bench-instructions-update`",
                (1.0 - ratio) * 100.0
            );
        }
    }
    if failures.is_empty() {
        println!(
            "every figure within {:.1} % of the baseline",
            tolerance * 100.0
        );
        return Ok(true);
    }
    eprintln!("instruction counts regressed:");
    for failure in &failures {
        eprintln!("  {failure}");
    }
    eprintln!(
        "If the change is intended, rewrite {} with `make bench-instructions-update` and commit it.",
        path.display()
    );
    Ok(false)
}

/// The total instructions (`Ir`) of a callgrind output file: its `totals:`
/// line, else its `summary:` line.
fn total_instructions(path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read callgrind's output {}", path.display()))?;
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    line("totals:")
        .or_else(|| line("summary:"))
        .with_context(|| format!("no totals in {}", path.display()))
}

fn read_baseline(path: &Path) -> anyhow::Result<Option<Baseline>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a valid baseline", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_baseline(
    path: &Path,
    tolerance: f64,
    instructions: BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let baseline = Baseline {
        note: "Instructions per unit of work of server/benches/instructions.rs under callgrind. \
               Rewrite with `make bench-instructions-update` after an intended change \
               or a toolchain or dependency update."
            .into(),
        tolerance,
        instructions,
    };
    let text = serde_json::to_string_pretty(&baseline)? + "\n";
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
