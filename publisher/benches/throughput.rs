//! Publisher throughput benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo bench -p odin-publisher --bench throughput
//! ODIN_BENCH_RATES=50000,200000 ODIN_BENCH_SECS=10 cargo bench -p odin-publisher --bench throughput
//! ```
//!
//! 1. `generate`: the simulation alone (events built and serialised, nothing
//!    sent) — the ceiling the rest of the pipeline can approach.
//! 2. `publish`: full runs against a local `nats-server` started for the
//!    benchmark (or `ODIN_NATS_URL` when set), each at an asked rate, on a
//!    current-thread runtime with mimalloc exactly like the binary; prints
//!    asked vs achieved price events/s, NATS messages/s and skipped slots.
//!    The last run asks far more than can be done, which measures the
//!    ceiling.
//!
//! The machine is shared: run it when it is quiet, and run it twice.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odin_protocol::Subjects;
use odin_publisher::config::PublisherConfig;
use odin_publisher::schedule::Pacing;
use odin_publisher::sim::{SimParams, Simulation};
use odin_publisher::source::Source;
use odin_publisher::stamp::LiveStamper;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_RATES: &[f64] = &[
    10_000.0,
    50_000.0,
    100_000.0,
    150_000.0,
    200_000.0,
    1_000_000.0,
];

fn main() {
    let secs: f64 = std::env::var("ODIN_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let rates: Vec<f64> = std::env::var("ODIN_BENCH_RATES")
        .ok()
        .map(|s| s.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| DEFAULT_RATES.to_vec());

    generate(secs.min(3.0));

    let (url, server) = match std::env::var("ODIN_NATS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let (url, child) = start_nats();
            (url, Some(child))
        }
    };
    println!();
    println!("publish to {url}, {secs} s per run, 100 tokens, tick 5 s:");
    println!(
        "{:>12} {:>14} {:>9} {:>14} {:>10} {:>8}",
        "asked/s", "achieved/s", "dev %", "messages/s", "skipped", "cpu %"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for rate in rates {
        let config = PublisherConfig {
            nats_url: url.clone(),
            tokens: 100,
            rate,
            duration: Some(Duration::from_secs_f64(secs)),
            seed: Some(1),
            ..PublisherConfig::default()
        };
        let cpu_before = cpu_time();
        let totals = runtime
            .block_on(odin_publisher::run(config, std::future::pending()))
            .expect("publisher run");
        let cpu = (cpu_time() - cpu_before) / totals.elapsed_secs * 100.0;
        println!(
            "{:>12.0} {:>14.1} {:>+9.2} {:>14.0} {:>10} {:>8.0}",
            rate,
            totals.achieved_rate,
            (totals.achieved_rate / rate - 1.0) * 100.0,
            totals.messages as f64 / totals.elapsed_secs,
            totals.skipped,
            cpu,
        );
    }
    if let Some(mut child) = server {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The simulation alone: steps per second and messages per second.
fn generate(secs: f64) {
    let params = SimParams {
        tokens: 100,
        rate: 1e9,
        pacing: Pacing::Uniform,
        tick: Duration::from_secs(5),
        seed: 1,
        dup_ratio: 0.0,
        skew: 1.0,
        volatility: 1.0,
        batch_size: 1000,
    };
    let mut sim = Simulation::new(&params, &Subjects::default(), 1).expect("simulation");
    let mut stamper = LiveStamper::new(odin_protocol::ids::NonceSource::random());
    let mut out = Vec::with_capacity(64);
    let start = Instant::now();
    let (mut steps, mut messages, mut bytes) = (0u64, 0u64, 0u64);
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            out.clear();
            sim.step(&mut stamper, &mut out).expect("step");
            steps += 1;
            messages += out.len() as u64;
            bytes += out.iter().map(|m| m.payload.len() as u64).sum::<u64>();
        }
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "generate: {:.0} trades/s, {:.0} messages/s ({:.0} ns/message, {:.0} bytes/message), nothing sent",
        steps as f64 / t,
        messages as f64 / t,
        t * 1e9 / messages as f64,
        bytes as f64 / messages as f64,
    );
}

/// User + system CPU seconds of this process so far.
fn cpu_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A `nats-server` on a free loopback port, ready to take connections.
fn start_nats() -> (String, Child) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let binary = [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ]
    .into_iter()
    .find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
    })
    .expect("nats-server not found (install it, or set ODIN_NATS_URL)");
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (format!("nats://127.0.0.1:{port}"), child)
}
