//! `PROTOCOL.md` §3 (version 2): `refresh` moves an open connection's
//! expiry with a fresh token for the same `sub`, so a short-lived token does
//! not end it; a refused refresh changes nothing and is a strike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use odin_harness::server::Endpoint;
use odin_server::auth::{AuthConfig, sign};
use serde_json::{Value, json};

use super::support::{Stack, Ws};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How late after an expiry a connection may be closed (the timer fires at
/// it; the rest is a loaded 2-core box scheduling it).
const EXPIRY_SLACK: Duration = Duration::from_secs(2);

/// A client connected with a token for `sub` expiring at `exp`.
async fn connect(ep: &Endpoint, sub: &str, exp: u64) -> Ws {
    let t = sign(&ep.auth, &json!({"sub": sub, "exp": exp}));
    Ws::try_connect(&format!("{}?token={t}", ep.ws_url()), &[])
        .await
        .expect("the token is valid")
}

/// Sends `refresh` with `token` and reads its answer (heartbeats skipped).
async fn refresh(ws: &mut Ws, token: &str, id: &str) -> Value {
    ws.send_json(json!({"type": "refresh", "token": token, "id": id}))
        .await;
    loop {
        let v = ws.next_json().await;
        if v["type"] != "heartbeat" {
            return v;
        }
    }
}

/// Reads until `until` (wall clock) and fails if the connection closes.
async fn open_until(ws: &mut Ws, until: SystemTime) {
    while let Ok(left) = until.duration_since(SystemTime::now()) {
        if let Err(code) = ws.try_next_text(left).await {
            panic!("closed ({code:?}) before {until:?}");
        }
    }
}

/// Reads until the server closes with `4001` and checks it came at `exp`,
/// not before and not much after.
async fn closed_at_expiry(ws: &mut Ws, exp: u64) {
    assert_eq!(ws.closed().await, Some(4001));
    let closed_at = SystemTime::now();
    let expiry = UNIX_EPOCH + Duration::from_secs(exp);
    assert!(closed_at >= expiry, "closed before the expiry");
    let late = closed_at.duration_since(expiry).unwrap();
    assert!(late < EXPIRY_SLACK, "closed {late:?} after the expiry");
}

#[tokio::test]
async fn a_refresh_moves_the_expiry_past_the_old_one() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let old_exp = now() + 2;
    let mut ws = connect(ep, "alice", old_exp).await;
    let new_exp = old_exp + 3;
    let fresh = sign(&ep.auth, &json!({"sub": "alice", "exp": new_exp}));
    let answer = refresh(&mut ws, &fresh, "r1").await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert_eq!(answer["exp"], new_exp);
    assert_eq!(answer["id"], "r1");
    assert!(answer["timestamp"].is_number() && answer["nonce"].is_string());

    // Past the old expiry (and its slack) the connection still serves.
    open_until(
        &mut ws,
        UNIX_EPOCH + Duration::from_secs(old_exp) + EXPIRY_SLACK,
    )
    .await;
    ws.send_json(json!({"type": "ping", "id": "p"})).await;
    assert_eq!(ws.next_of_type("pong").await["id"], "p");
    // Without a further refresh the new expiry closes it as before.
    closed_at_expiry(&mut ws, new_exp).await;
}

#[tokio::test]
async fn a_refresh_to_an_earlier_exp_moves_the_expiry_earlier() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let mut ws = connect(ep, "alice", now() + 3600).await;
    let exp = now() + 2;
    let shorter = sign(&ep.auth, &json!({"sub": "alice", "exp": exp}));
    assert_eq!(refresh(&mut ws, &shorter, "r").await["type"], "refreshed");
    closed_at_expiry(&mut ws, exp).await;
}

#[tokio::test]
async fn a_refused_refresh_changes_nothing_and_is_counted() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let old_exp = now() + 3;
    let mut ws = connect(ep, "alice", old_exp).await;
    let later = old_exp + 60;
    let cases = [
        (
            sign(&ep.auth, &json!({"sub": "mallory", "exp": later})),
            "auth_invalid",
        ),
        (
            sign(
                &AuthConfig::with_secret("not-the-secret"),
                &json!({"sub": "alice", "exp": later}),
            ),
            "auth_invalid",
        ),
        (
            sign(&ep.auth, &json!({"sub": "alice", "exp": now() - 1})),
            "auth_expired",
        ),
        (
            sign(&ep.auth, &json!({"sub": "", "exp": later})),
            "auth_invalid",
        ),
        ("not.a.jwt".to_owned(), "auth_invalid"),
        (String::new(), "auth_invalid"),
    ];
    for (i, (token, code)) in cases.iter().enumerate() {
        let id = format!("r{i}");
        let answer = refresh(&mut ws, token, &id).await;
        assert_eq!(answer["type"], "error", "case {i}: {answer}");
        assert_eq!(
            (answer["code"].as_str(), answer["id"].as_str()),
            (Some(*code), Some(&*id))
        );
    }
    let stats = ep.stats().await.expect("/stats answers");
    assert_eq!(stats.auth_failures, cases.len() as u64);
    // The connection still serves, and still ends at the old expiry.
    ws.send_json(json!({"type": "ping"})).await;
    ws.next_of_type("pong").await;
    closed_at_expiry(&mut ws, old_exp).await;
}

#[tokio::test]
async fn ten_refused_refreshes_close_with_1008_and_leave_others_alone() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let mut bystander = Ws::connect_ok(ep).await;
    let mut ws = connect(ep, "alice", now() + 3600).await;
    let other = sign(&ep.auth, &json!({"sub": "bob", "exp": now() + 3600}));
    for _ in 0..10 {
        ws.send_json(json!({"type": "refresh", "token": other}))
            .await;
    }
    assert_eq!(ws.closed().await, Some(1008));
    bystander.send_json(json!({"type": "ping"})).await;
    bystander.next_of_type("pong").await;
}

#[tokio::test]
async fn the_reference_client_refreshes_its_short_tokens_and_stays_connected() {
    use odin_harness::client::{ClientConfig, TestClient};
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let auth = ep.auth.clone();
    // Every token lives 3 s; the client refreshes 1.5 s before the expiry.
    let tokens = move || sign(&auth, &json!({"sub": "client", "exp": now() + 3}));
    let config =
        ClientConfig::new(ep.ws_url(), ["batch"]).with_refresh_ahead(Duration::from_millis(1500));
    let mut client = TestClient::spawn(config, tokens);
    client
        .wait_subscribed(odin_harness::wait::LIMIT)
        .await
        .unwrap();
    // Past two of its tokens' lifetimes: still the first connection.
    let outlived = SystemTime::now() + Duration::from_secs(7);
    while let Ok(left) = outlived.duration_since(SystemTime::now()) {
        if let Ok(code) = client.wait_disconnected(left).await {
            panic!("disconnected ({code:?}) although it refreshes");
        }
    }
    let stats = client.stats();
    assert_eq!((stats.connects, stats.reconnects), (1, 0));
    client.shutdown(odin_harness::wait::LIMIT).await.unwrap();
}
