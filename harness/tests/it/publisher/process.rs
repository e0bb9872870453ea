//! The binary: its duration, its signals, its totals and its errors.

use std::time::Duration;

use odin_harness::nats::NatsServer;
use odin_harness::publisher::{PublisherProcess, test_config};
use odin_harness::wait::LIMIT;
use odin_publisher::PublisherConfig;

use super::support::Capture;

#[tokio::test]
async fn runs_for_its_duration_and_prints_its_totals() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let config = PublisherConfig {
        duration: Some(Duration::from_secs(1)),
        ..test_config(&nats.url())
    };
    let mut process = PublisherProcess::spawn(&config, &[]).expect("starts");
    let exit = process.exit(LIMIT).await.expect("exits");
    assert_eq!(exit.code, Some(0), "{}", exit.stderr.join("\n"));
    let last = exit.stdout.last().expect("a totals line");
    assert!(last.starts_with("published "), "{last}");
    let rate: f64 = last
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {last}"));
    assert!((rate - 100.0).abs() <= 1.0, "{last}");
    assert!(last.contains("(asked 100)"), "{last}");
}

#[tokio::test]
async fn sigterm_and_sigint_flush_everything_and_exit_zero() {
    let nats = NatsServer::start().await.expect("NATS starts");
    for signal in ["TERM", "INT"] {
        let mut capture = Capture::start(&nats.url()).await.expect("subscribed");
        let config = PublisherConfig {
            rate: 2000.0,
            ..test_config(&nats.url())
        };
        let process = PublisherProcess::start(&config).await.expect("starts");
        capture.wait_for(500).await.expect("it publishes");
        process.signal(signal).unwrap();
        let mut process = process;
        let exit = process.exit(LIMIT).await.expect("exits");
        assert_eq!(
            exit.code,
            Some(0),
            "SIG{signal}: {}",
            exit.stderr.join("\n")
        );
        let totals = process.wait(LIMIT).await.expect("totals");
        assert!(totals.interrupted && totals.flushed, "SIG{signal}");
        // Flushed: every message it counted reached NATS.
        capture.wait_for(totals.messages as usize).await.unwrap();
        capture.drain();
        assert_eq!(
            capture.messages.len() as u64,
            totals.messages,
            "SIG{signal}"
        );
    }
}

/// Runs the binary with `args` and returns its exit code and stderr.
async fn run_raw(args: &[&str]) -> (Option<i32>, Vec<String>) {
    let mut process = PublisherProcess::spawn_args(args).expect("starts");
    let exit = process.exit(LIMIT).await.expect("exits");
    (exit.code, exit.stderr)
}

#[tokio::test]
async fn bad_settings_fail_with_one_line() {
    // A port nothing listens on: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("--nats-url=nats://127.0.0.1:{closed}");
    let cases: [(&[&str], &str); 5] = [
        (&["--rate=-5"], "invalid --rate"),
        (&["--tokens=0"], "invalid --tokens"),
        (&["--dup-ratio=2"], "invalid --dup-ratio"),
        (
            &["--replay=/nonexistent/recording.jsonl"],
            "cannot read recording",
        ),
        (
            &[unreachable.as_str(), "--connect-timeout=500ms"],
            "cannot reach NATS",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run_raw(args).await;
        assert!(matches!(code, Some(c) if c != 0), "{args:?}: exit {code:?}");
        let errors: Vec<_> = stderr.iter().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr:?}");
        assert!(errors[0].contains(expected), "{args:?}: {}", errors[0]);
        assert_eq!(stderr.last(), Some(errors[0]), "the error is the last line");
    }
}
