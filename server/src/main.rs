//! The `odin-server` binary: parse flags, set up logging, bind, and serve
//! until SIGTERM or SIGINT. Everything else is library code.

use std::process::ExitCode;

use clap::Parser;
use odin_server::auth::mint_token_with_kid;
use odin_server::config::{Cli, Command, LogFormat};
use odin_server::{Server, health_check};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => {
            return match args.auth_config() {
                Ok(auth) => {
                    println!(
                        "{}",
                        mint_token_with_kid(&auth, args.kid.as_deref(), &args.sub, args.ttl)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            };
        }
        Some(Command::Health(args)) => {
            let url = args
                .url
                .unwrap_or_else(|| health_check::default_url(cli.server.http_addr));
            return match health_check::check(&url, args.timeout) {
                Ok(status) => {
                    println!("odin-server health: {url}: {status}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("health: {e}")),
            };
        }
        None => {}
    }
    init_logging(cli.server.log_format);
    let dev_secret = cli.server.jwt.uses_dev_secret();
    let config = match cli.server.into_config() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if dev_secret {
        tracing::warn!(
            "DEVELOPMENT MODE: accepting tokens signed with the BUILT-IN PUBLIC SECRET. \
             Anyone can mint tokens for this server. Never run this in production; \
             set --jwt-secret / ODIN_JWT_SECRET instead."
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    match runtime.block_on(async {
        let tls = config.tls.is_some();
        let server = Server::bind(config).await?;
        let (ws, http) = if tls {
            ("wss", "https")
        } else {
            ("ws", "http")
        };
        tracing::info!(
            ws = %format!("{ws}://{}{}", server.ws_addr(), odin_server::WS_PATH),
            http = %format!("{http}://{}", server.http_addr()),
            "listening"
        );
        server.run(shutdown_signal()).await
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("odin-server: {e}");
    ExitCode::FAILURE
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
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
