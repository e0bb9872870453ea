//! `odin-tls-bench`: what TLS costs the gateway, on this machine. It starts
//! NATS and two `odin-server` processes (the binaries of `ODIN_BIN_DIR`,
//! e.g. `target/release`): one plain, one with a throw-away certificate.
//! Then, against the TLS one, it runs full handshakes (TCP, TLS without
//! session resumption, the WebSocket upgrade with a JWT) as fast as
//! `--concurrency` clients can, and prints handshakes per second; and it
//! holds `--idle` idle connections to each server and prints the growth of
//! each server's resident memory (`VmRSS` in `/proc`) per connection.
//!
//! Flags (all optional): `--handshakes N` (5000), `--concurrency C` (64),
//! `--idle N` (5000). The bench runs beside the server: on a small machine
//! the client's own handshake work is part of what is measured.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::tls::{ClientTls, TestCa};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::client_async;

const USAGE: &str = "usage: odin-tls-bench [--handshakes N] [--concurrency C] [--idle N]";

struct Options {
    handshakes: usize,
    concurrency: usize,
    idle: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        handshakes: 5000,
        concurrency: 64,
        idle: 5000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value: usize = args
            .next()
            .with_context(|| format!("{flag} needs a value; {USAGE}"))?
            .parse()
            .with_context(|| format!("{flag}: a number; {USAGE}"))?;
        match flag.as_str() {
            "--handshakes" => options.handshakes = value,
            "--concurrency" => options.concurrency = value.max(1),
            "--idle" => options.idle = value,
            _ => bail!("unknown flag {flag}; {USAGE}"),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odin-tls-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let options = options()?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let nats = NatsServer::start().await?;
    let ca = TestCa::new()?;
    let certificate = ca.issue(1)?;
    let dir = tempfile::tempdir()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    certificate.write(&cert, &key)?;
    // Full handshakes: no session resumption on the client side.
    let mut config = (*ca.client()?).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let trust: ClientTls = Arc::new(config);
    let limits = [
        "--max-connections",
        "100000",
        "--max-pending-upgrades",
        "100000",
    ];
    let plain = ServerProcess::start(&nats.url(), &limits).await?;
    let mut flags: Vec<&str> = limits.to_vec();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    flags.extend(["--tls-cert", &cert, "--tls-key", &key]);
    let tls = ServerProcess::start(&nats.url(), &flags).await?;

    let token = tls.endpoint().token("bench");
    let addr = tls.endpoint().ws_addr;
    let tls_pid = tls.pid().context("server pid")?;
    let cpu_before = cpu_seconds(tls_pid)?;
    let started = Instant::now();
    let mut set = JoinSet::new();
    let per_client = options.handshakes / options.concurrency;
    for _ in 0..options.concurrency {
        let (trust, token) = (trust.clone(), token.clone());
        set.spawn(async move {
            for _ in 0..per_client {
                drop(open(addr, Some(&trust), &token).await?);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    let done = per_client * options.concurrency;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(tls_pid)? - cpu_before;
    println!(
        "handshakes: {done} full TLS + WebSocket upgrades with a JWT in {:.2} s: {:.0}/s ({} clients)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        options.concurrency
    );
    println!(
        "server CPU: {cpu:.2} s for them: {:.0} µs per handshake, {:.0} handshakes per second of one core",
        cpu * 1e6 / done as f64,
        done as f64 / cpu
    );

    for (name, server, trust) in [("plain", &plain, None), ("tls", &tls, Some(&trust))] {
        let pid = server.pid().context("server pid")?;
        let token = server.endpoint().token("idle");
        let addr = server.endpoint().ws_addr;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid)?;
        let mut held = Vec::with_capacity(options.idle);
        for _ in 0..options.idle {
            held.push(open(addr, trust, &token).await?);
        }
        // Let each connection's greeting go out and its tasks settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid)?;
        println!(
            "{name}: {} idle connections: RSS {before} KiB -> {after} KiB: {:.1} KiB per connection",
            options.idle,
            (after as f64 - before as f64) / options.idle as f64
        );
        drop(held);
    }
    Ok(())
}

/// An open WebSocket, plain or over TLS (kept only to hold it open).
enum Held {
    Plain(#[allow(dead_code)] Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    Tls(
        #[allow(dead_code)]
        Box<tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>>,
    ),
}

/// TCP, TLS when `trust` is given, and the upgrade with `token`.
async fn open(addr: SocketAddr, trust: Option<&ClientTls>, token: &str) -> anyhow::Result<Held> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(match trust {
        None => {
            let url = format!("ws://{addr}/ws?token={token}");
            Held::Plain(Box::new(client_async(url, stream).await?.0))
        }
        Some(trust) => {
            let name = ServerName::try_from("localhost")?;
            let stream = TlsConnector::from(trust.clone())
                .connect(name, stream)
                .await?;
            let url = format!("wss://localhost:{}/ws?token={token}", addr.port());
            Held::Tls(Box::new(client_async(url, stream).await?.0))
        }
    })
}

/// CPU seconds (user and system) process `pid` has used, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .context("utime and stime")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / 100.0)
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}
