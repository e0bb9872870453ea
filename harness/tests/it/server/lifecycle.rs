//! `PROTOCOL.md` §4.6 and §6–§7 seen from outside: NATS outages, graceful
//! shutdown, the HTTP endpoints, and the binary's start-up rules.

use std::time::Duration;

use odin_harness::bins;
use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::wait::LIMIT;
use serde_json::json;

use super::support::{Stack, Ws};
use crate::support::Publisher;

#[tokio::test]
async fn nats_outage_degrades_health_and_live_events_resume_without_resubscribing() {
    let mut stack = Stack::start().await;
    let ep = stack.server.endpoint().clone();
    let mut ws = stack.client().await;
    ws.subscribe(&["token.BTC"]).await;
    let before = stack.publisher.price("BTC", 1.0).await;
    assert_eq!(ws.next_text().await, before);
    let health = ep.get("/health").await.unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json::<serde_json::Value>().unwrap()["nats"],
        "connected"
    );

    stack.nats.stop().await.unwrap();
    ep.wait_for_stats(LIMIT, |s| !s.nats_connected)
        .await
        .unwrap();
    let health = ep.get("/health").await.unwrap();
    assert_eq!(health.status, 503);
    let body: serde_json::Value = health.json().unwrap();
    assert_eq!(
        (body["status"].as_str(), body["nats"].as_str()),
        (Some("degraded"), Some("disconnected"))
    );

    // Clients stay connected and still get answers and snapshots.
    ws.send_json(json!({"type": "ping", "id": "during"})).await;
    assert_eq!(ws.next_of_type("pong").await["id"], "during");
    let mut late = stack.client().await;
    late.subscribe(&["token.BTC"]).await;
    assert_eq!(
        late.next_text().await,
        before,
        "snapshot served while NATS is down"
    );

    stack.nats.restart().await.unwrap();
    stack.wait_nats_connected().await;
    assert_eq!(ep.get("/health").await.unwrap().status, 200);
    // The publisher reconnected too; the first event after the outage
    // reaches both clients with no new subscribe.
    stack.publisher = Publisher::connect(&stack.nats.url()).await;
    let after = stack.publisher.price("BTC", 2.0).await;
    assert_eq!(
        ws.next_of_type("price_update").await.to_string(),
        serde_json::from_str::<serde_json::Value>(&after)
            .unwrap()
            .to_string()
    );
    assert_eq!(late.next_text().await, after);
}

#[tokio::test]
async fn in_process_shutdown_sends_1001_to_every_client() {
    let stack = Stack::start().await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(stack.client().await);
    }
    let Stack {
        server,
        nats: _nats,
        ..
    } = stack;
    let stopping = tokio::spawn(server.shutdown());
    for ws in &mut clients {
        assert_eq!(ws.closed().await, Some(1001));
    }
    tokio::time::timeout(LIMIT, stopping)
        .await
        .expect("shutdown within the drain time")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let nats = NatsServer::start().await.unwrap();
    let mut server = ServerProcess::start(&nats.url(), &["--drain-timeout", "3s"])
        .await
        .unwrap();
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(Ws::connect_ok(server.endpoint()).await);
    }
    server.signal("TERM").unwrap();
    for ws in &mut clients {
        assert_eq!(ws.closed().await, Some(1001));
    }
    assert_eq!(server.wait(Duration::from_secs(5)).await.unwrap(), Some(0));
    // New connections are refused once it is gone.
    assert!(
        tokio::net::TcpStream::connect(server.endpoint().ws_addr)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn stats_and_metrics_report_every_documented_figure() {
    let mut stack = Stack::start().await;
    let mut ws = stack.client().await;
    ws.subscribe(&["token.BTC"]).await;
    let text = stack.publisher.price("BTC", 1.0).await;
    assert_eq!(ws.next_text().await, text);
    let stats = stack
        .server
        .wait_for_stats(LIMIT, |s| s.messages_delivered >= 3)
        .await
        .unwrap();
    assert_eq!(stats.connection_count, 1);
    assert_eq!(stats.messages_received, 1);
    assert!(stats.average_latency >= 0.0 && stats.peak_latency >= stats.average_latency);
    assert!(stats.peak_latency < 10_000.0, "{stats:?}");
    assert_eq!(stats.server_id, stack.server.server_id());
    let raw: serde_json::Value = stack.server.get("/stats").await.unwrap().json().unwrap();
    for field in crate::support::STATS_FIELDS {
        assert!(raw.get(field).is_some(), "/stats lacks {field}: {raw}");
    }

    let metrics = stack.server.get("/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    for line in [
        "odin_connections 1",
        "odin_messages_received_total 1",
        "odin_messages_delivered_total",
        "odin_duplicates_dropped_total 0",
        "odin_invalid_events_total 0",
        "odin_conflated_total 0",
        "odin_slow_consumer_disconnects_total 0",
        "odin_auth_failures_total 0",
        "odin_ingest_latency_seconds_count 1",
        "odin_ingest_latency_seconds_bucket{le=\"+Inf\"} 1",
    ] {
        assert!(
            metrics.body.contains(line),
            "/metrics lacks {line:?}:\n{}",
            metrics.body
        );
    }
}

#[tokio::test]
async fn the_binary_refuses_to_start_without_a_secret_and_on_bad_settings() {
    let bin = bins::binary("odin-server").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .env_remove("ODIN_JWT_SECRET")
            .env_remove("ODIN_DEV")
            .output()
            .unwrap()
    };
    let out = run(&["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--jwt-secret"), "{err}");

    let out = run(&["--jwt-secret", "s", "--subject-prefix", "odin.*"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--subject-prefix"));

    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--ws-addr",
        "--http-addr",
        "--nats-url",
        "--jwt-secret",
        "--subject-prefix",
        "--dev",
        "--max-connections",
        "--heartbeat-interval-ms",
        "--max-queue-bytes",
        "--drain-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }

    let token = std::process::Command::new(&bin)
        .args([
            "token",
            "--sub",
            "alice",
            "--ttl",
            "1h",
            "--jwt-secret",
            odin_harness::server::TEST_SECRET,
        ])
        .output()
        .unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap();
    let auth = odin_server::auth::Authenticator::new(&odin_server::auth::AuthConfig::with_secret(
        odin_harness::server::TEST_SECRET,
    ));
    assert_eq!(auth.verify(token.trim()).unwrap().sub, "alice");
}

#[tokio::test]
async fn environment_variables_configure_the_binary_and_flags_win() {
    let nats = NatsServer::start().await.unwrap();
    let env = [("ODIN_HEARTBEAT_INTERVAL_MS", "250"), ("ODIN_DEV", "1")];
    let from_env = ServerProcess::start_with_env(&nats.url(), &[], &env)
        .await
        .unwrap();
    let ws = Ws::connect_ok(from_env.endpoint()).await;
    assert_eq!(ws.hello["heartbeatIntervalMs"], 250);
    let flag_wins =
        ServerProcess::start_with_env(&nats.url(), &["--heartbeat-interval-ms", "400"], &env)
            .await
            .unwrap();
    let ws = Ws::connect_ok(flag_wins.endpoint()).await;
    assert_eq!(ws.hello["heartbeatIntervalMs"], 400);
}
