//! `odin-publisher`: parses the settings, sets up logging and signals, runs
//! the library's [`odin_publisher::run`], and prints the totals.
//!
//! `odin-publisher health` is the container health check instead
//! ([`odin_publisher::health`]): 0 once an event is on NATS, 1 otherwise.
//!
//! Exit codes: 0 after a clean stop (duration reached, recording played,
//! SIGINT/SIGTERM); 2 for a setting that cannot be parsed; 1 for any other
//! failure (bad value, unknown file, NATS unreachable), always with one line
//! on stderr saying why.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use odin_publisher::PublisherConfig;
use odin_publisher::config::LogFormat;
use odin_publisher::health::HealthArgs;
use tokio::signal::unix::{SignalKind, signal};

/// mimalloc: the publisher allocates a few small buffers per message, and at
/// hundreds of thousands of messages a second glibc's allocator alone costs
/// a sizeable share of the CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A word, not a subcommand of the settings: the publisher's flags stay
    // exactly the run's flags (the harness and the load tool pass them).
    if std::env::args_os().nth(1).is_some_and(|a| a == "health") {
        return health(HealthArgs::parse_from(std::env::args_os().skip(1)));
    }
    let config = match PublisherConfig::try_parse() {
        Ok(config) => config,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap adds usage lines; the first line names the setting and why.
            let rendered = e.render().to_string();
            eprintln!(
                "{}",
                rendered.lines().next().unwrap_or("error: bad arguments")
            );
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    // One thread: the simulation and the NATS connection task take turns
    // on it, so messages are allocated and freed on the same thread (no
    // allocator lock contention, no cross-thread wake-ups), and on a small
    // machine the other core stays free for nats-server.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn health(args: HealthArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(odin_publisher::health::first_event(&args)));
    match result {
        Ok(subject) => {
            println!("odin-publisher health: an event on {subject}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("odin-publisher health: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: PublisherConfig) -> anyhow::Result<()> {
    // Handlers are installed before anything else, so a signal that comes
    // early still stops the run cleanly instead of killing the process.
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        }
    };
    let totals_json = config.totals_json;
    let totals_file = config.totals_file.clone();
    let totals = odin_publisher::run(config, shutdown).await?;
    if let Some(path) = totals_file {
        let json = serde_json::to_string_pretty(&totals).context("cannot encode the totals")?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("cannot write totals file {}", path.display()))?;
    }
    if totals_json {
        println!(
            "{}",
            serde_json::to_string(&totals).context("cannot encode the totals")?
        );
    } else {
        println!("{}", totals.summary_line());
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
