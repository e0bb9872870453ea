//! `odin-forwarder`'s settings: flags, each with an environment variable
//! (the ones it shares with `odin-server` mean the same there).

use std::net::SocketAddr;
use std::time::Duration;

use odin_protocol::Subjects;

/// The forwarder's command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "odin-forwarder",
    version,
    about = "The bare forwarder: NATS events to WebSocket subscribers with nothing else \
             (no auth, no de-dup, no snapshot, no validation). The reference point of the \
             fan-out benchmark, not a product.",
    after_help = "Prints `odin-forwarder listening on ws://<addr>/ws` on stdout once its NATS \
                  subscription is in place and it accepts connections; SIGTERM or SIGINT \
                  closes every client with 1001 and exits 0."
)]
pub struct Config {
    /// WebSocket address (`GET /ws`).
    #[arg(long, env = "ODIN_FORWARDER_WS_ADDR", default_value = "127.0.0.1:8090")]
    pub ws_addr: SocketAddr,
    /// NATS server URL.
    #[arg(long, env = "ODIN_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// First part of every subject (`<prefix>.token.<id>.price`, …).
    #[arg(long, env = "ODIN_SUBJECT_PREFIX", default_value = odin_protocol::subject::DEFAULT_PREFIX,
          value_parser = parse_prefix, value_name = "PREFIX")]
    pub subject_prefix: Subjects,
    /// How often each connection gets a `heartbeat` and a WebSocket ping,
    /// announced in `connection_established`.
    #[arg(long, env = "ODIN_HEARTBEAT_INTERVAL_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_interval_ms: u64,
    /// Bytes of frames a connection may have queued; beyond, it is dropped.
    #[arg(long, env = "ODIN_MAX_QUEUE_BYTES", default_value_t = 4 << 20,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_queue_bytes: u64,
    /// Channels one connection may subscribe to (`PROTOCOL.md` §5).
    #[arg(long, default_value_t = 100)]
    pub max_channels: usize,
    /// How long shutdown waits for clients to take their close frame.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

impl Config {
    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

fn parse_prefix(text: &str) -> Result<Subjects, String> {
    Subjects::new(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let c = Config::try_parse_from(["odin-forwarder"]).unwrap();
        assert_eq!(c.subject_prefix.prefix(), "odin");
        assert_eq!(c.heartbeat_interval(), Duration::from_secs(30));
        for bad in [
            ["odin-forwarder", "--subject-prefix", "a.*"],
            ["odin-forwarder", "--heartbeat-interval-ms", "0"],
            ["odin-forwarder", "--ws-addr", "nowhere"],
        ] {
            assert!(Config::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
