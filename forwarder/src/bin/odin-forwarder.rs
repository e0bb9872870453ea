//! `odin-forwarder`: the bare forwarder, the reference point of the fan-out
//! benchmark. Parses flags, sets up logging, subscribes and binds, says where
//! it listens, and serves until SIGTERM or SIGINT; everything else is in
//! the library, [`odin_forwarder`].

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use odin_forwarder::{Config, Forwarder, LISTENING};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    let served = runtime.block_on(async {
        let forwarder = Forwarder::bind(&config).await?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{LISTENING} {}", forwarder.ws_url())?;
        stdout.flush()?;
        tracing::info!(ws = %forwarder.ws_addr(), nats = %config.nats_url, "serving");
        forwarder.run(shutdown_signal()).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("odin-forwarder: {e}");
    ExitCode::FAILURE
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
