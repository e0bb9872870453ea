//! Hostile tokens: claims that could overflow the server's clock
//! arithmetic, headers and claims the JWT RFCs say to refuse, and a flood of
//! forged tokens, each while the control client keeps its feed.

use std::time::Duration;

use futures_util::StreamExt;
use odin_harness::bins;
use odin_harness::server::TEST_SECRET;
use odin_server::auth::{AuthConfig, mint_token, sign};
use serde_json::{Value, json};

use super::control::Control;
use crate::server::support::{Stack, Ws};

fn in_a_minute() -> u64 {
    odin_protocol::time::now_millis() as u64 / 1000 + 60
}

#[tokio::test]
async fn tokens_expiring_after_the_year_9999_connect_and_nothing_panics() {
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let ep = stack.server.endpoint();
    // What `odin-server token` mints for the longest TTL it parses: its
    // `exp` once overflowed the connection's deadline.
    let minted = std::process::Command::new(bins::binary("odin-server").unwrap())
        .args(["token", "--sub", "far", "--ttl", "292277026596y"])
        .args(["--jwt-secret", TEST_SECRET])
        .output()
        .unwrap();
    assert!(minted.status.success(), "{minted:?}");
    let minted = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    for token in [
        minted,
        sign(&ep.auth, &json!({"sub": "far", "exp": u64::MAX})),
        sign(
            &ep.auth,
            &json!({"sub": "far", "exp": 9_300_000_000_000_000_000_u64}),
        ),
    ] {
        let ws = Ws::try_connect(&format!("{}?token={token}", ep.ws_url()), &[])
            .await
            .expect("a token valid until the end of time is accepted");
        assert_eq!(ws.hello["type"], "connection_established");
    }
    let mut after = stack.client().await;
    after.subscribe(&["token.AFTER"]).await;
    control.finish().await;
}

#[tokio::test]
async fn critical_header_extensions_and_an_empty_sub_are_refused() {
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let ep = stack.server.endpoint();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.crit = Some(vec!["x-odin-unknown".into()]);
    let crit = jsonwebtoken::encode(
        &header,
        &json!({"sub": "a", "exp": in_a_minute()}),
        &jsonwebtoken::EncodingKey::from_secret(&ep.auth.secret),
    )
    .unwrap();
    let empty_sub = sign(&ep.auth, &json!({"sub": "", "exp": in_a_minute()}));
    for (what, token) in [("crit", crit), ("empty sub", empty_sub)] {
        let (status, body) = Ws::refused(&format!("{}?token={token}", ep.ws_url()), &[]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("auth_invalid")),
            "{what}: {body}"
        );
    }
    let stats = ep.stats().await.unwrap();
    assert_eq!(stats.auth_failures, 2);
    control.finish().await;
}

#[tokio::test]
async fn a_flood_of_forged_tokens_is_refused_and_the_control_client_keeps_its_feed() {
    const FORGED: usize = 400;
    let stack = Stack::start().await;
    let control = Control::start(&stack).await;
    let ep = stack.server.endpoint();
    let forger = AuthConfig::with_secret("a-secret-that-is-not-the-servers-0123456789");
    let urls: Vec<String> = (0..FORGED)
        .map(|i| {
            let token = mint_token(&forger, &format!("mallory-{i}"), Duration::from_secs(60));
            format!("{}?token={token}", ep.ws_url())
        })
        .collect();
    let answers: Vec<(u16, Value)> = futures_util::stream::iter(urls.iter())
        .map(|url| Ws::refused(url, &[]))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        answers
            .iter()
            .all(|(status, body)| *status == 401 && body["code"] == "auth_invalid"),
        "every forged token gets 401 auth_invalid"
    );
    let stats = ep.stats().await.unwrap();
    assert_eq!(stats.auth_failures, FORGED as u64);
    control.finish().await;
}
