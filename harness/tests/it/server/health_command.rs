//! `odin-server health`, the compose stack's health check of a gateway (its
//! image has no curl): exit 0 while the server's `/health` answers 200, 1
//! with one line naming the URL and the answer otherwise; by default it asks
//! the server's own `--http-addr`, on loopback when that is 0.0.0.0.

use std::process::Stdio;

use odin_harness::bins;
use odin_harness::nats::NatsServer;
use odin_harness::server::TestServer;
use odin_harness::wait::LIMIT;

/// What `odin-server health <args>` did: exit code, stdout, stderr.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `odin-server health` with `args` and only the `env` given of the
/// `ODIN_*` variables.
async fn health(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = tokio::process::Command::new(bins::binary("odin-server").unwrap());
    command.arg("health").args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ODIN_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.stdin(Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("odin-server health ends within the limit")
        .expect("odin-server health runs");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn health_exits_zero_only_while_the_server_answers_200() {
    let mut nats = NatsServer::start().await.expect("NATS starts");
    let server = TestServer::start(&nats.url()).await.expect("server starts");
    let ep = server.endpoint().clone();
    ep.wait_for_stats(LIMIT, |s| s.nats_connected)
        .await
        .unwrap();
    let url = format!("http://{}/health", ep.http_addr);

    let ran = health(&["--url", &url], &[]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout.trim(),
        format!("odin-server health: {url}: HTTP/1.1 200 OK")
    );

    // No --url: the server's own address from ODIN_HTTP_ADDR, 0.0.0.0 asked
    // on loopback (as in a container).
    let own = format!("0.0.0.0:{}", ep.http_addr.port());
    let ran = health(&[], &[("ODIN_HTTP_ADDR", &own)]).await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stdout.contains(&url.replace("localhost", "127.0.0.1")),
        "{}",
        ran.stdout
    );

    // NATS gone: the server answers 503, the check fails in one line.
    nats.stop().await.unwrap();
    ep.wait_for_stats(LIMIT, |s| !s.nats_connected)
        .await
        .unwrap();
    let ran = health(&["--url", &url], &[]).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(
        ran.stderr.trim(),
        format!("odin-server: health: {url}: answered 503 Service Unavailable")
    );

    // The server gone: nothing to connect to.
    server.shutdown().await.unwrap();
    let ran = health(&["--url", &url, "--timeout", "2s"], &[]).await;
    assert_eq!(ran.code, Some(1));
    let line = ran.stderr.trim();
    assert!(
        line.starts_with(&format!("odin-server: health: {url}: cannot connect: "))
            && !line.contains('\n'),
        "{line}"
    );

    // A URL it cannot ask is refused as such.
    let ran = health(&["--url", "https://example.com/health"], &[]).await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("not an http://host:port/path URL"),
        "{}",
        ran.stderr
    );
}
