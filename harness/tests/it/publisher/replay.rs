//! A replay of the committed fixture, captured from NATS.

use std::collections::HashSet;
use std::path::PathBuf;

use odin_harness::nats::NatsServer;
use odin_harness::publisher::{InProcessPublisher, test_config};
use odin_harness::wait::LIMIT;
use odin_protocol::time::now_millis;
use odin_publisher::PublisherConfig;
use serde_json::Value;

use super::support::{Capture, assert_on_the_wire};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings/small-market.jsonl")
}

#[tokio::test]
async fn the_committed_fixture_replays_with_fresh_nonces_and_timestamps() {
    let lines: Vec<Value> = std::fs::read_to_string(fixture())
        .expect("fixture readable")
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture lines are JSON"))
        .collect();
    let nats = NatsServer::start().await.expect("NATS starts");
    let mut capture = Capture::start(&nats.url()).await.expect("subscribed");
    let config = PublisherConfig {
        replay: Some(fixture()),
        speed: 20.0,
        ..test_config(&nats.url())
    };
    let from = now_millis();
    let totals = InProcessPublisher::start(config)
        .unwrap()
        .wait(LIMIT)
        .await
        .expect("the replay ends by itself");
    let to = now_millis();
    assert_eq!(totals.messages, lines.len() as u64);
    // 10 s of recording at 20×: about half a second.
    assert!(totals.elapsed_secs < 1.0, "{}", totals.elapsed_secs);
    capture.wait_for(lines.len()).await.unwrap();
    assert_on_the_wire(&capture.messages, from, to);

    let recorded_nonces: HashSet<_> = lines
        .iter()
        .map(|l| l["event"]["nonce"].as_str().unwrap().to_owned())
        .collect();
    for (i, (line, m)) in lines.iter().zip(&capture.messages).enumerate() {
        assert_eq!(
            line["subject"].as_str(),
            Some(m.subject.as_str()),
            "line {}",
            i + 1
        );
        let mut recorded = line["event"].clone();
        let object = recorded.as_object_mut().unwrap();
        object.remove("nonce");
        object.remove("timestamp");
        assert_eq!(recorded, m.content(), "line {}", i + 1);
        assert!(
            !recorded_nonces.contains(m.nonce()),
            "line {}: nonce reused",
            i + 1
        );
        if line["duplicate"] == Value::Bool(true) {
            assert_eq!(capture.messages[i - 1].payload, m.payload, "line {}", i + 1);
        }
    }
}
