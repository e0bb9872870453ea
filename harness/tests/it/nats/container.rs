//! The container backend. It runs wherever Docker is reachable; elsewhere
//! the test prints why it is skipped instead of passing silently.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures_util::StreamExt;
use odin_harness::nats::{Backend, BackendChoice, NatsOptions, NatsServer, select};
use tokio::time::timeout;

use super::{round_trip, within};

fn container() -> NatsOptions {
    NatsOptions {
        backend: Some(BackendChoice::Container),
        ..NatsOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_backend_round_trips_restarts_and_pauses() {
    if let Err(reason) = select::docker_reachable() {
        odin_harness::report_skip(&format!(
            "container backend: Docker is not reachable ({reason})"
        ));
        return;
    }
    let opts = NatsOptions {
        jetstream: true,
        ..container()
    };
    let mut server = within("container start", NatsServer::start_with(opts))
        .await
        .expect("the NATS container starts");
    assert_eq!(server.backend(), Backend::Container);
    let port = server.port();
    let client = within("connect", async_nats::connect(server.url()))
        .await
        .unwrap();
    let mut sub = client.subscribe("odin.c").await.unwrap();
    within("flush", client.flush()).await.unwrap();
    client.publish("odin.c", "hi".into()).await.unwrap();
    assert_eq!(
        within("message", sub.next()).await.unwrap().payload,
        Bytes::from("hi")
    );
    within(
        "create stream",
        jetstream::new(client.clone()).create_stream("ODIN"),
    )
    .await
    .expect("JetStream is enabled in the container");
    let health = within("healthz", server.monitor_json("/healthz"))
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    server.pause().unwrap();
    assert!(
        timeout(Duration::from_millis(300), round_trip(&client))
            .await
            .is_err()
    );
    server.resume().unwrap();
    within("round trip after resume", round_trip(&client)).await;

    within("stop", server.stop()).await.unwrap();
    within("restart", server.restart()).await.unwrap();
    assert_eq!(server.port(), port);
    within("connect after restart", async_nats::connect(server.url()))
        .await
        .unwrap();
}

#[tokio::test]
async fn container_backend_without_docker_fails_in_one_clear_line() {
    if select::docker_reachable().is_ok() {
        odin_harness::report_skip(
            "container refusal: Docker is reachable here, so nothing is refused",
        );
        return;
    }
    let err = within("container start", NatsServer::start_with(container()))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("Docker is not reachable"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}
