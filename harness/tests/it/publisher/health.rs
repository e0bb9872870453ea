//! `odin-publisher health`, the compose stack's health check of the
//! publisher: exit 0 once an event is on `<prefix>.>`, 1 with one line
//! saying why when none comes in time or NATS cannot be reached.

use std::process::Stdio;

use odin_harness::bins;
use odin_harness::nats::NatsServer;
use odin_harness::publisher::{PublisherProcess, test_config};
use odin_harness::wait::LIMIT;

/// `odin-publisher health <args>`: exit code, stdout, stderr (no `ODIN_*`
/// variable of the test's environment passed on).
async fn health(args: &[&str]) -> (Option<i32>, String, String) {
    let mut command = tokio::process::Command::new(bins::binary("odin-publisher").unwrap());
    command.arg("health").args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ODIN_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("odin-publisher health ends within the limit")
        .expect("odin-publisher health runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn health_exits_zero_only_once_events_flow() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let url = nats.url();

    // NATS up, nobody publishing: unhealthy after the timeout.
    let (code, _, stderr) = health(&["--nats-url", &url, "--timeout", "500ms"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim(),
        format!("odin-publisher health: no event on odin.> at {url} within 500ms")
    );

    // A publisher running: healthy, naming the event's subject.
    let publisher = PublisherProcess::start(&test_config(&url))
        .await
        .expect("publisher starts");
    let (code, stdout, stderr) = health(&["--nats-url", &url, "--timeout", "10s"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("odin-publisher health: an event on odin."),
        "{stdout}"
    );
    // Its events are under its prefix only.
    let (code, _, _) = health(&[
        "--nats-url",
        &url,
        "--subject-prefix",
        "other",
        "--timeout",
        "500ms",
    ])
    .await;
    assert_eq!(code, Some(1));
    publisher.stop().await.expect("publisher stops");

    // No NATS there at all.
    drop(nats);
    let (code, _, stderr) = health(&["--nats-url", &url, "--timeout", "5s"]).await;
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(&format!(
            "odin-publisher health: cannot connect to NATS at {url}"
        )),
        "{stderr}"
    );
}
