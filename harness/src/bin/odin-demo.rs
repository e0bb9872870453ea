//! `odin-demo` (what `make demo` runs): the whole system on this machine in
//! one command — NATS with JetStream (the harness fixture, i.e. `nats-server`
//! on `PATH`, or Docker), `odin-server` in development mode and
//! `odin-publisher`, both as child processes of the built binaries (see
//! `locate`). It prints
//! the live page's URL with a fresh token and every endpoint, and on Ctrl-C
//! (or SIGTERM) stops the publisher, lets the server drain its clients, and
//! stops NATS, in that order.
//!
//! Flags (all optional): `--ws-addr ADDR` (default `127.0.0.1:8080`),
//! `--http-addr ADDR` (`127.0.0.1:3001`), `--tokens N` (50), `--rate R`
//! (trade price events per second, 20), `--tick D` (batch/volume/market
//! period, `2s`), `--tls` (`make demo-tls`: serve `wss://` and `https://`
//! with a certificate for `localhost` from a throw-away CA made at start;
//! it prints the CA's file and the Chromium flag that trusts the key).
//! Children log warnings and errors only, unless `RUST_LOG` says otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use odin_harness::nats::{NatsOptions, NatsServer};
use odin_server::auth::{AuthConfig, mint_token};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

/// How long the printed token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Token ids the page watches first (the publisher's best-known tickers).
const WATCHED: &str = "BTC,ETH,SOL,BNB,XRP,DOGE,PEPE";

const USAGE: &str = "usage: odin-demo [--ws-addr ADDR] [--http-addr ADDR] [--tokens N] [--rate R] [--tick D] [--tls]";

/// The demo's settings.
struct Options {
    ws_addr: SocketAddr,
    http_addr: SocketAddr,
    tokens: String,
    rate: String,
    tick: String,
    tls: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
        let mut o = Options {
            ws_addr: ([127, 0, 0, 1], 8080).into(),
            http_addr: ([127, 0, 0, 1], 3001).into(),
            tokens: "50".into(),
            rate: "20".into(),
            tick: "2s".into(),
            tls: false,
        };
        while let Some(flag) = args.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            if flag == "--tls" {
                o.tls = true;
                continue;
            }
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
            match flag.as_str() {
                "--ws-addr" => o.ws_addr = value.parse().context("--ws-addr: not an address")?,
                "--http-addr" => {
                    o.http_addr = value.parse().context("--http-addr: not an address")?
                }
                // The publisher checks these two itself, with its own message.
                "--tokens" => o.tokens = value,
                "--rate" => o.rate = value,
                "--tick" => o.tick = value,
                _ => bail!("unknown flag {flag}; {USAGE}"),
            }
        }
        Ok(o)
    }
}

fn main() -> ExitCode {
    let result = Options::parse(std::env::args().skip(1)).and_then(|options| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(run(options))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("odin-demo: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> anyhow::Result<()> {
    // Installed first, so a Ctrl-C during start-up still stops cleanly.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;

    let server_bin = locate("odin-server")?;
    let publisher_bin = locate("odin-publisher")?;

    let mut nats = Nats::start()
        .await
        .context("cannot start NATS (is nats-server on PATH, or Docker running?)")?;

    // With --tls: a CA and its certificate for localhost, in a directory
    // that lives as long as the demo.
    let tls = if o.tls { Some(DemoTls::make()?) } else { None };
    let mut command = Command::new(&server_bin);
    command.args([
        "--dev",
        "--ws-addr",
        &o.ws_addr.to_string(),
        "--http-addr",
        &o.http_addr.to_string(),
        "--nats-url",
        &nats.url(),
    ]);
    if let Some(tls) = &tls {
        command
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key);
    }
    let mut server = spawn("odin-server", &mut command)?;
    let trust = tls.as_ref().map(|t| t.trust.clone());
    let started = tokio::select! {
        // `/health` is 200 once the server listens and is on NATS.
        r = wait_ok(o.http_addr, "/health", &mut server, trust.as_ref()) => r,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = started {
        stop("odin-server", &mut server, Duration::from_secs(2)).await;
        nats.stop().await;
        return Err(e).context(
            "odin-server did not come up (is the port in use? try --ws-addr/--http-addr)",
        );
    }

    let mut publisher = spawn(
        "odin-publisher",
        Command::new(&publisher_bin).args([
            "--nats-url",
            &nats.url(),
            "--tokens",
            &o.tokens,
            "--rate",
            &o.rate,
            "--tick",
            &o.tick,
        ]),
    )?;

    let token = mint_token(&AuthConfig::development(), "demo", TOKEN_TTL);
    let ws_url = match &tls {
        None => format!("ws://{}/ws", o.ws_addr),
        Some(_) => format!("wss://localhost:{}/ws", o.ws_addr.port()),
    };
    let page: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("ws", &ws_url)
        .append_pair("token", &token)
        .append_pair("tokens", WATCHED)
        .finish();
    let http = match &tls {
        None => format!("http://{}", o.http_addr),
        Some(_) => format!("https://localhost:{}", o.http_addr.port()),
    };
    println!();
    println!("Odin demo is running (development mode: built-in JWT secret).");
    println!();
    println!("  live page   {http}/?{page}");
    println!();
    println!("  websocket   {ws_url}?token=<jwt>");
    println!("  http        {http}/health  {http}/stats  {http}/metrics");
    println!(
        "  nats        {}   monitoring {} (JetStream on)",
        nats.url(),
        nats.monitor_url()
    );
    println!(
        "  publisher   {} tokens, {} trades/s, batch every {}",
        o.tokens, o.rate, o.tick
    );
    println!("  token       {token}");
    println!(
        "              (valid 24 h; another: {} token --dev --sub you)",
        server_bin.display()
    );
    println!();
    if let Some(tls) = &tls {
        println!("  TLS         a throw-away CA signed the certificate for localhost:");
        println!(
            "              trust {} in the browser, or start Chromium with",
            tls.ca.display()
        );
        println!(
            "              --ignore-certificate-errors-spki-list={}",
            tls.spki
        );
        println!();
    }
    println!("Press Ctrl-C to stop everything.");

    let outcome = tokio::select! {
        _ = interrupt.recv() => Ok(()),
        _ = terminate.recv() => Ok(()),
        status = server.wait() => Err(anyhow::anyhow!("odin-server exited unexpectedly ({})", describe(status))),
        status = publisher.wait() => Err(anyhow::anyhow!("odin-publisher exited unexpectedly ({})", describe(status))),
    };
    eprintln!("odin-demo: stopping…");
    // The publisher first (it flushes), then the server (it closes every
    // client with 1001 within its drain time), then NATS.
    stop("odin-publisher", &mut publisher, Duration::from_secs(7)).await;
    stop("odin-server", &mut server, Duration::from_secs(7)).await;
    nats.stop().await;
    eprintln!("odin-demo: stopped");
    outcome
}

/// NATS for the demo, with JetStream and its monitoring port.
enum Nats {
    /// `nats-server` from `PATH` (or `NATS_SERVER_BIN`), in its own process
    /// group like the other children, so the terminal's Ctrl-C does not stop
    /// it before the publisher has flushed and the server has drained.
    Own {
        child: Child,
        url: String,
        monitor: String,
        /// The JetStream store; removed on drop.
        _store: tempfile::TempDir,
    },
    /// The harness fixture, for machines with Docker but no binary.
    Fixture(NatsServer),
}

impl Nats {
    async fn start() -> anyhow::Result<Nats> {
        let Some(bin) = odin_harness::nats::select::find_binary()? else {
            let fixture = NatsServer::start_with(NatsOptions {
                jetstream: true,
                ..NatsOptions::default()
            })
            .await?;
            return Ok(Nats::Fixture(fixture));
        };
        let store = tempfile::Builder::new()
            .prefix("odin-demo-nats-")
            .tempdir()
            .context("cannot create the JetStream store folder")?;
        let (port, monitor_port) = (free_port()?, free_port()?);
        let mut command = Command::new(&bin);
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        command.args(["-m", &monitor_port.to_string(), "-js", "-sd"]);
        command.arg(store.path());
        // Its start-up chatter would bury the URL; the log stays with the store.
        command.arg("-l").arg(store.path().join("nats.log"));
        let mut child = spawn("nats-server", &mut command)?;
        let monitor_addr: SocketAddr = ([127, 0, 0, 1], monitor_port).into();
        // /healthz answers 200 once the server, JetStream included, is ready.
        wait_ok(monitor_addr, "/healthz", &mut child, None).await?;
        Ok(Nats::Own {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            monitor: format!("http://{monitor_addr}"),
            _store: store,
        })
    }

    fn url(&self) -> String {
        match self {
            Nats::Own { url, .. } => url.clone(),
            Nats::Fixture(f) => f.url(),
        }
    }

    fn monitor_url(&self) -> String {
        match self {
            Nats::Own { monitor, .. } => monitor.clone(),
            Nats::Fixture(f) => f.monitor_url().unwrap_or_default(),
        }
    }

    async fn stop(&mut self) {
        match self {
            Nats::Own { child, .. } => stop("nats-server", child, Duration::from_secs(5)).await,
            Nats::Fixture(f) => {
                if let Err(e) = f.stop().await {
                    eprintln!("odin-demo: cannot stop NATS: {e:#}");
                }
            }
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// The binary `name`: from `ODIN_BIN_DIR` when set, else next to this one
/// (`make demo` builds all three together, so they match), else built by the
/// harness into `target/harness-bins`.
fn locate(name: &str) -> anyhow::Result<PathBuf> {
    if std::env::var_os("ODIN_BIN_DIR").is_none() {
        let exe = std::env::current_exe().context("cannot find the running executable")?;
        if let Some(sibling) = exe.parent().map(|dir| dir.join(name))
            && sibling.is_file()
        {
            return Ok(sibling);
        }
    }
    odin_harness::bins::binary(name)
}

/// Starts a child in its own process group, so the terminal's Ctrl-C
/// reaches only the demo, which then stops the children in order. Killed if
/// the demo itself fails.
fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Child> {
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
    command
        .env_remove("ODIN_JWT_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

/// Polls `GET path` on `addr` until it answers 200, at most 20 s, failing
/// early when `child` exits.
async fn wait_ok(
    addr: SocketAddr,
    path: &str,
    child: &mut Child,
    tls: Option<&odin_harness::tls::ClientTls>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("it exited ({status})");
        }
        if let Ok(resp) = odin_harness::http::get_over(addr, path, &[], tls).await
            && resp.status == 200
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{path} on {addr} not OK within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then SIGKILL if it is still running after `grace`. A non-zero
/// exit is reported, except for nats-server, which always exits 1 on a
/// signal.
async fn stop(name: &str, child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return; // already reaped
    };
    let _ = odin_harness::process::send_signal(pid, "TERM");
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) if status.success() || name == "nats-server" => {}
        Ok(Ok(status)) => eprintln!("odin-demo: {name} exited with {status}"),
        Ok(Err(e)) => eprintln!("odin-demo: cannot wait for {name}: {e}"),
        Err(_) => {
            eprintln!("odin-demo: {name} did not stop within {grace:?}; killing it");
            let _ = child.kill().await;
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => e.to_string(),
    }
}

/// The demo's TLS material: a CA made at start and its certificate for
/// `localhost`, as files in a directory removed when the demo ends.
struct DemoTls {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// What the demo's own health check trusts.
    trust: odin_harness::tls::ClientTls,
    /// The certificate key's SHA-256 for Chromium's SPKI list.
    spki: String,
}

impl DemoTls {
    fn make() -> anyhow::Result<DemoTls> {
        let ca = odin_harness::tls::TestCa::new()?;
        let certificate = ca.issue(1)?;
        let dir = tempfile::Builder::new()
            .prefix("odin-demo-tls-")
            .tempdir()?;
        let path = |name: &str| dir.path().join(name);
        let (ca_file, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
        std::fs::write(&ca_file, ca.pem())?;
        certificate.write(&cert, &key)?;
        Ok(DemoTls {
            trust: ca.client()?,
            spki: certificate.spki_sha256_base64(),
            _dir: dir,
            ca: ca_file,
            cert,
            key,
        })
    }
}
