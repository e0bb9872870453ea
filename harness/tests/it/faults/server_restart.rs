//! The server process is killed (SIGKILL, no goodbye) and restarted on the
//! same ports while a publisher keeps going: every reference client comes
//! back by itself and ends on the latest price of every token it watches.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use odin_harness::client::connect_raw;
use odin_harness::nats::NatsServer;
use odin_harness::publisher::InProcessPublisher;
use odin_harness::server::{Endpoint, ServerProcess};
use odin_harness::wait::LIMIT;
use odin_protocol::message::ChannelRequest;
use odin_protocol::{ClientMessage, ServerMessage};
use odin_publisher::PublisherConfig;

use super::support::{
    BACKOFF_CAP, LatestPrices, Watched, all_subjects, client_config, token_channels, token_ids,
};
use crate::support::wait_subscribed_in_nats;

/// Tokens the publisher simulates; the clients watch overlapping subsets.
const TOKENS: usize = 6;

#[tokio::test]
async fn a_killed_server_is_back_and_every_client_resubscribes_and_ends_on_the_latest_prices() {
    let nats = NatsServer::start().await.expect("NATS starts");
    let mut server = ServerProcess::start(&nats.url(), &[])
        .await
        .expect("server starts");
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;
    let mut published = LatestPrices::start(&nats.url()).await.unwrap();

    let tokens = token_ids(TOKENS);
    let (low, high) = tokens.split_at(TOKENS / 2);
    // Open while `true`; closed, every attempt gets a 401 (see below).
    let gate = Arc::new(AtomicBool::new(true));
    let mut clients: Vec<Watched> = [
        ("every token", tokens.clone()),
        ("low tokens", low.to_vec()),
        ("high tokens", high.to_vec()),
    ]
    .into_iter()
    .map(|(name, watched)| {
        let config = client_config(&server, &token_channels(&watched));
        let endpoint = server.endpoint().clone();
        let gate = gate.clone();
        let token = move || {
            if gate.load(Ordering::SeqCst) {
                endpoint.token("restart")
            } else {
                "gate-closed".to_owned()
            }
        };
        Watched::spawn(name, config, watched, token)
    })
    .collect();
    for c in &mut clients {
        c.until("subscribed", LIMIT, |s| s.subscribed == 1)
            .await
            .unwrap();
    }

    let publisher = InProcessPublisher::start(PublisherConfig {
        tokens: TOKENS,
        rate: 200.0,
        tick: std::time::Duration::from_millis(100),
        ..odin_harness::publisher::test_config(&nats.url())
    })
    .unwrap();
    for c in &mut clients {
        c.until_price_of_each_token().await.unwrap();
    }

    // The restarted server knows no price until the publisher's next event
    // of each token, and a client that re-subscribes before that rightly
    // gets no snapshot of it. To check the snapshot deterministically, the
    // clients' token source refuses (401) until the new server knows every
    // price; the clients meanwhile retry with back-off like any browser.
    gate.store(false, Ordering::SeqCst);
    server.kill().await.unwrap();
    for c in &mut clients {
        c.until("the connection to end", LIMIT, |s| {
            !s.disconnects.is_empty()
        })
        .await
        .unwrap();
        // At least one attempt fails while the server is down.
        c.until("a failed attempt", LIMIT, |s| {
            !s.connect_failures.is_empty()
        })
        .await
        .unwrap();
    }
    server.restart().await.unwrap();
    wait_subscribed_in_nats(&nats, &server, &all_subjects()).await;
    wait_until_server_knows_each_price(&server, &tokens).await;
    gate.store(true, Ordering::SeqCst);

    for c in &mut clients {
        let watched = c.tokens.len();
        c.until("re-subscribed with its snapshot", LIMIT, |s| {
            s.subscribed == 2 && s.since_subscribed.len() >= watched
        })
        .await
        .unwrap();
        // The snapshot comes right after `subscribed`, before any live event
        // of those channels: one `price_update` per watched token.
        let snapshot: HashSet<String> = c.seen.since_subscribed[..watched]
            .iter()
            .map(|m| match m {
                ServerMessage::PriceUpdate(p) => p.token_id.to_string(),
                other => panic!("{}: {other:?} before the snapshot was complete", c.name),
            })
            .collect();
        assert_eq!(
            snapshot,
            c.tokens.iter().cloned().collect::<HashSet<_>>(),
            "{}: the snapshot after re-subscribing",
            c.name
        );
        assert_eq!(
            c.seen.disconnects,
            [None],
            "{}: killed, no close frame",
            c.name
        );
        // One back-off after the drop, then one after each failed attempt.
        assert!(
            c.seen.backoffs.len() == c.seen.connect_failures.len() + 1
                && c.seen.backoffs.iter().all(|d| *d <= BACKOFF_CAP),
            "{}: a back-off within [0, {BACKOFF_CAP:?}] before every attempt: {:?} for {:?}",
            c.name,
            c.seen.backoffs,
            c.seen.connect_failures
        );
    }

    let totals = publisher.stop().await.expect("the publisher stops");
    let log = published
        .wait_count(totals.events.price_update + totals.duplicates.price_update)
        .await
        .unwrap();
    for c in &mut clients {
        let last: Vec<(String, (String, f64))> = c
            .tokens
            .iter()
            .map(|t| (t.clone(), log.latest[t].clone()))
            .collect();
        c.until("the latest price of every watched token", LIMIT, |s| {
            last.iter()
                .all(|(t, (nonce, _))| s.latest.get(t).is_some_and(|(n, _)| n == nonce))
        })
        .await
        .unwrap();
        for (t, (_, price)) in &last {
            assert_eq!(c.seen.latest[t].1, *price, "{}: price of {t}", c.name);
        }
        assert!(
            c.seen.repeated.is_empty(),
            "{}: the application got nonces twice: {:?}",
            c.name,
            c.seen.repeated
        );
        let stats = c.client.stats();
        assert_eq!(
            (stats.connects, stats.reconnects, stats.invalid_frames),
            (2, 1, 0),
            "{}: {stats:?}",
            c.name
        );
    }
    for c in clients {
        c.client.shutdown(LIMIT).await.unwrap();
    }
}

/// Subscribes a bare connection to every token and reads until it has had a
/// `price_update` of each (snapshot or live): from then on the server has a
/// latest price of every token to send as a snapshot.
async fn wait_until_server_knows_each_price(server: &Endpoint, tokens: &[String]) {
    let mut probe = connect_raw(&server.ws_url(), &server.token("probe"))
        .await
        .expect("the probe connects");
    probe
        .send_json(&ClientMessage::Subscribe(ChannelRequest {
            channels: token_channels(tokens),
            id: None,
        }))
        .await
        .unwrap();
    let mut missing: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match probe.next_message(left).await {
            Ok(ServerMessage::PriceUpdate(p)) => {
                missing.remove(p.token_id.as_str());
            }
            Ok(_) => {}
            Err(e) => panic!("the restarted server has no price of {missing:?}: {e:#}"),
        }
    }
}
