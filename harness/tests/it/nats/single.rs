//! One binary server: the guard's whole life cycle.

use std::time::Duration;

use async_nats::Event;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use odin_harness::nats::{Backend, BackendChoice, NatsOptions, NatsServer, select};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{binary, round_trip, wait_event, watched_client, within};

#[tokio::test]
async fn starts_on_loopback_and_round_trips() {
    let server = within("start", NatsServer::start_with(binary()))
        .await
        .expect("nats-server starts");
    assert_eq!(server.backend(), Backend::Binary);
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    let client = within("connect", async_nats::connect(server.url()))
        .await
        .expect("connects");
    let mut sub = client.subscribe("odin.test").await.unwrap();
    within("flush", client.flush()).await.unwrap();
    client.publish("odin.test", "hello".into()).await.unwrap();
    let msg = within("message", sub.next()).await.expect("a message");
    assert_eq!(msg.payload, Bytes::from("hello"));

    let health = within("healthz", server.monitor_json("/healthz"))
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let varz = within("varz", server.monitor_json("/varz")).await.unwrap();
    assert_eq!(varz["port"], u64::from(server.port()));
    let connz = within("connz", server.monitor_json("/connz"))
        .await
        .unwrap();
    assert_eq!(connz["num_connections"], 1);
}

/// What `auto` (the tests' default) and `binary-first` (the load runs')
/// pick on this machine: a container where Docker answers, else the binary;
/// the binary where there is one, else a container.
#[tokio::test]
async fn auto_picks_a_container_where_docker_answers_and_binary_first_the_binary() {
    let docker = select::docker_reachable().is_ok();
    let binary = select::find_binary().ok().flatten().is_some();
    let start = |choice| {
        NatsServer::start_with(NatsOptions {
            backend: Some(choice),
            ..NatsOptions::default()
        })
    };
    if docker || binary {
        let auto = within("start auto", start(BackendChoice::Auto))
            .await
            .unwrap();
        let want = if docker {
            Backend::Container
        } else {
            Backend::Binary
        };
        assert_eq!(auto.backend(), want);
        let first = within("start binary-first", start(BackendChoice::BinaryFirst))
            .await
            .unwrap();
        let want = if binary {
            Backend::Binary
        } else {
            Backend::Container
        };
        assert_eq!(first.backend(), want);
    }
    if !(docker && binary) {
        odin_harness::report_skip(&format!(
            "auto backend: only one backend here (Docker {}, nats-server binary {}), \
             so the preference between them is not seen",
            if docker { "answers" } else { "does not answer" },
            if binary { "found" } else { "not found" },
        ));
    }
}

#[tokio::test]
async fn stop_refuses_connections_and_restart_brings_clients_back_on_the_same_port() {
    let mut server = within("start", NatsServer::start_with(binary()))
        .await
        .unwrap();
    let port = server.port();
    let (client, mut events) = watched_client(vec![server.url()], false).await;
    wait_event(
        &mut events,
        |e| matches!(e, Event::Connected),
        "first connect",
    )
    .await;
    let mut sub = client.subscribe("odin.restart").await.unwrap();

    within("stop", server.stop()).await.unwrap();
    assert!(!server.is_running());
    let refused = within(
        "connect to a stopped server",
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await;
    assert!(
        refused.is_err(),
        "a stopped server still accepts connections"
    );
    wait_event(
        &mut events,
        |e| matches!(e, Event::Disconnected),
        "disconnect",
    )
    .await;

    within("restart", server.restart()).await.unwrap();
    assert_eq!(server.port(), port, "restart moved the server");
    wait_event(&mut events, |e| matches!(e, Event::Connected), "reconnect").await;
    // Once this returns the server has the re-sent subscription.
    within("round trip", round_trip(&client)).await;
    let other = within("connect", async_nats::connect(server.url()))
        .await
        .unwrap();
    other.publish("odin.restart", "back".into()).await.unwrap();
    within("flush", other.flush()).await.unwrap();
    let msg = within("message after restart", sub.next()).await.unwrap();
    assert_eq!(msg.payload, Bytes::from("back"));
}

#[tokio::test]
async fn pause_freezes_the_server_and_resume_thaws_it() {
    let server = within("start", NatsServer::start_with(binary()))
        .await
        .unwrap();
    let client = within("connect", async_nats::connect(server.url()))
        .await
        .unwrap();
    server.pause().unwrap();
    // A frozen server answers nothing: no round trip completes.
    let frozen = timeout(Duration::from_millis(300), round_trip(&client)).await;
    assert!(frozen.is_err(), "a paused server echoed a message");
    let probe = timeout(
        Duration::from_millis(300),
        TcpStream::connect(("127.0.0.1", server.port())),
    );
    if let Ok(Ok(mut tcp)) = probe.await {
        // The kernel still accepts, but no INFO greeting comes.
        let mut byte = [0u8; 1];
        let greeting = timeout(Duration::from_millis(300), tcp.read(&mut byte)).await;
        assert!(
            greeting.is_err(),
            "a paused server greeted a new connection"
        );
    }
    server.resume().unwrap();
    within("round trip after resume", round_trip(&client)).await;
}

#[tokio::test]
async fn jetstream_on_request_deduplicates_and_survives_a_restart() {
    let opts = NatsOptions {
        jetstream: true,
        ..binary()
    };
    let mut server = within("start", NatsServer::start_with(opts)).await.unwrap();
    let client = within("connect", async_nats::connect(server.url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    within(
        "create stream",
        js.create_stream(stream::Config {
            name: "ODIN".into(),
            subjects: vec!["odin.>".into()],
            duplicate_window: Duration::from_secs(60),
            ..Default::default()
        }),
    )
    .await
    .expect("JetStream is enabled");
    for expect_duplicate in [false, true] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "nonce-1");
        let ack = within("publish", async {
            js.publish_with_headers("odin.token.BTC.price", headers, "{}".into())
                .await
                .unwrap()
                .await
        })
        .await
        .unwrap();
        assert_eq!(ack.duplicate, expect_duplicate);
    }

    within("restart", server.restart()).await.unwrap();
    let client = within("reconnect", async_nats::connect(server.url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let mut stream = within("get stream", js.get_stream("ODIN"))
        .await
        .expect("the store survived");
    let info = within("stream info", stream.info()).await.unwrap();
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn jetstream_is_off_unless_asked_for() {
    let server = within("start", NatsServer::start_with(binary()))
        .await
        .unwrap();
    let client = within("connect", async_nats::connect(server.url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let created = within("create stream", js.create_stream("NOPE")).await;
    assert!(created.is_err(), "a plain server accepted a stream");
}

#[tokio::test]
async fn drop_kills_the_process_and_removes_its_files() {
    let server = within("start", NatsServer::start_with(binary()))
        .await
        .unwrap();
    let pid = server.pid().expect("a running binary server has a pid");
    let dir = server
        .dir()
        .expect("a binary server has a directory")
        .to_owned();
    let port = server.port();
    assert!(dir.join("nats.log").exists());
    drop(server);
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "nats-server {pid} survived its guard"
    );
    let refused = within("connect", TcpStream::connect(("127.0.0.1", port))).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_server_that_cannot_start_says_why_with_its_log() {
    let opts = NatsOptions {
        extra_args: vec!["--no_such_flag".into()],
        ..binary()
    };
    let err = within("start", NatsServer::start_with(opts))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("did not come up"), "{text}");
    assert!(
        text.contains("no_such_flag"),
        "the log tail is missing: {text}"
    );
}

#[tokio::test]
async fn restart_fails_clearly_when_its_port_was_taken() {
    let mut server = within("start", NatsServer::start_with(binary()))
        .await
        .unwrap();
    within("stop", server.stop()).await.unwrap();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", server.port())).unwrap();
    let err = within("restart", server.restart()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("address already in use"), "{text}");
}
