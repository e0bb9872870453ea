//! `PROTOCOL.md` §2: who may connect, and the `401` answers for who may not.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use odin_harness::wait::LIMIT;
use odin_server::auth::{AuthConfig, JwtAlgorithm, mint_token, sign};
use serde_json::json;

use super::support::{Stack, Ws};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &x| (acc << 8) | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn each_bad_token_gets_its_401_code_and_is_counted() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let base = ep.ws_url();
    let auth = &ep.auth;
    let wrong_secret = mint_token(
        &AuthConfig::with_secret("not-the-secret"),
        "a",
        Duration::from_secs(60),
    );
    let hs512 = mint_token(
        &AuthConfig {
            algorithm: JwtAlgorithm::Hs512,
            ..auth.clone()
        },
        "a",
        Duration::from_secs(60),
    );
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&json!({"sub": "a", "exp": now() + 60}).to_string())
    );
    let no_sub = sign(auth, &json!({"exp": now() + 60}));
    let no_exp = sign(auth, &json!({"sub": "a"}));
    let expired = sign(auth, &json!({"sub": "a", "exp": now() - 1}));
    let expires_now = sign(auth, &json!({"sub": "a", "exp": now()}));
    let cases: Vec<(String, &str)> = vec![
        (base.clone(), "auth_missing"),
        (format!("{base}?token="), "auth_missing"),
        (format!("{base}?token=not.a.jwt"), "auth_invalid"),
        (format!("{base}?token=garbage"), "auth_invalid"),
        (format!("{base}?token={wrong_secret}"), "auth_invalid"),
        (format!("{base}?token={hs512}"), "auth_invalid"),
        (format!("{base}?token={alg_none}"), "auth_invalid"),
        (format!("{base}?token={no_sub}"), "auth_invalid"),
        (format!("{base}?token={no_exp}"), "auth_invalid"),
        (format!("{base}?token={expired}"), "auth_expired"),
        (format!("{base}?token={expires_now}"), "auth_expired"),
    ];
    for (url, code) in &cases {
        let (status, body) = Ws::refused(url, &[]).await;
        assert_eq!(status, 401, "{url}");
        assert_eq!(body["code"], *code, "{url}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let stats = ep.stats().await.unwrap();
    assert_eq!(stats.auth_failures, cases.len() as u64);
    assert_eq!(stats.connection_count, 0);
}

#[tokio::test]
async fn header_tokens_work_and_the_query_wins() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let good = ep.token("alice");
    let bearer = format!("Bearer {good}");

    let ws = Ws::try_connect(&ep.ws_url(), &[("Authorization", &bearer)]).await;
    assert_eq!(
        ws.expect("header token accepted").hello["type"],
        "connection_established"
    );

    // An empty query parameter counts as missing, so the header is used.
    let ws = Ws::try_connect(
        &format!("{}?token=", ep.ws_url()),
        &[("Authorization", &bearer)],
    )
    .await;
    assert!(ws.is_ok(), "empty ?token= should fall back to the header");

    // Both given: the query wins, whichever is the good one.
    let (status, body) = Ws::refused(
        &format!("{}?token=bad", ep.ws_url()),
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (401, Some("auth_invalid")));
    let ws = Ws::try_connect(
        &format!("{}?token={good}", ep.ws_url()),
        &[("Authorization", "Bearer bad")],
    )
    .await;
    assert!(ws.is_ok(), "a good query token wins over a bad header");
}

#[tokio::test]
async fn audience_and_issuer_are_checked_only_when_configured() {
    let stack = Stack::start_with(|c| {
        c.auth.audience = Some("odin-web".into());
        c.auth.issuer = Some("odin-auth".into());
    })
    .await;
    let ep = stack.server.endpoint();
    let exp = now() + 60;
    let base = ep.ws_url();
    let right = sign(
        &ep.auth,
        &json!({"sub": "a", "exp": exp, "aud": "odin-web", "iss": "odin-auth"}),
    );
    assert!(
        Ws::try_connect(&format!("{base}?token={right}"), &[])
            .await
            .is_ok()
    );
    for claims in [
        json!({"sub": "a", "exp": exp, "aud": "other", "iss": "odin-auth"}),
        json!({"sub": "a", "exp": exp, "aud": "odin-web", "iss": "other"}),
        json!({"sub": "a", "exp": exp, "iss": "odin-auth"}),
    ] {
        let t = sign(&ep.auth, &claims);
        let (status, body) = Ws::refused(&format!("{base}?token={t}"), &[]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("auth_invalid")),
            "{claims}"
        );
    }

    // Without configuration, aud and iss are ignored.
    let plain = Stack::start().await;
    let ep = plain.server.endpoint();
    let t = sign(
        &ep.auth,
        &json!({"sub": "a", "exp": exp, "aud": "anything", "iss": "anyone"}),
    );
    assert!(
        Ws::try_connect(&format!("{}?token={t}", ep.ws_url()), &[])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_token_expiring_mid_connection_closes_with_4001() {
    let stack = Stack::start().await;
    let ep = stack.server.endpoint();
    let exp = now() + 2;
    let t = sign(&ep.auth, &json!({"sub": "a", "exp": exp}));
    let mut ws = Ws::try_connect(&format!("{}?token={t}", ep.ws_url()), &[])
        .await
        .expect("still valid");
    assert_eq!(ws.closed().await, Some(4001));
    // Closed at the expiry (from the second of `exp`, PROTOCOL §2): not
    // before, and not just at some time within the wait's own bound.
    let closed_at = SystemTime::now();
    let expiry = UNIX_EPOCH + Duration::from_secs(exp);
    assert!(closed_at >= expiry, "closed before the expiry");
    let late = closed_at.duration_since(expiry).unwrap();
    assert!(late < EXPIRY_SLACK, "closed {late:?} after the expiry");
}

/// How late after the expiry a connection may be closed: the server's timer
/// fires at the expiry; the rest is a loaded 2-core box scheduling it.
const EXPIRY_SLACK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn other_paths_are_404_and_the_connection_limit_is_503() {
    let stack = Stack::start_with(|c| c.max_connections = 2).await;
    let ep = stack.server.endpoint();
    let token = ep.token("a");
    let (status, _) = Ws::refused(&format!("ws://{}/other?token={token}", ep.ws_addr), &[]).await;
    assert_eq!(status, 404);

    let _a = stack.client().await;
    let b = stack.client().await;
    let (status, body) = Ws::refused(&ep.ws_url_with_token("c"), &[]).await;
    assert_eq!(status, 503, "{body}");
    // A slot frees up when a client leaves.
    drop(b);
    ep.wait_for_stats(LIMIT, |s| s.connection_count == 1)
        .await
        .unwrap();
    assert!(
        Ws::try_connect(&ep.ws_url_with_token("c"), &[])
            .await
            .is_ok()
    );
}
