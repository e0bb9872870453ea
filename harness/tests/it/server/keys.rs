//! `PROTOCOL.md` §2 (version 2): tokens signed with public keys. A PEM key
//! pinned by `--jwt-algorithm`; JWKS keys picked by `kid`, each pinned by its
//! `alg`, fetched from a real HTTP server and rotated without a restart,
//! with unknown `kid`s asking for an early fetch at a bounded rate. Keys are
//! the test-only ones in `fixtures/keys/`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use odin_harness::wait::{LIMIT, eventually};
use odin_server::auth::{AuthConfig, JwtAlgorithm, mint_token_with_kid};
use odin_server::jwks::{JwksConfig, JwksSource};
use serde_json::json;

use super::support::{Stack, Ws};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/keys")
        .join(name)
}

fn read(name: &str) -> Box<[u8]> {
    std::fs::read(fixture(name)).unwrap().into_boxed_slice()
}

/// Signs with the private key `file` under `algorithm`.
fn signer(algorithm: JwtAlgorithm, file: &str) -> AuthConfig {
    AuthConfig {
        algorithm,
        private_key: Some(read(file)),
        ..AuthConfig::with_secret("")
    }
}

fn token(signer: &AuthConfig, kid: Option<&str>, sub: &str) -> String {
    mint_token_with_kid(signer, kid, sub, Duration::from_secs(600))
}

/// A JWKS endpoint: serves `document` (or a `500` when `None`) at
/// `/jwks.json` and counts its requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(file: &str) -> JwksServer {
        let document = Arc::new(Mutex::new(Some(
            std::fs::read_to_string(fixture(file)).unwrap(),
        )));
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new().route(
            "/jwks.json",
            get({
                let (document, hits) = (document.clone(), hits.clone());
                move || async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    match document.lock().unwrap().clone() {
                        Some(d) => (StatusCode::OK, d),
                        None => (StatusCode::INTERNAL_SERVER_ERROR, "down".into()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        JwksServer {
            url,
            document,
            hits,
            task,
        }
    }

    fn serve(&self, file: Option<&str>) {
        *self.document.lock().unwrap() = file.map(|f| std::fs::read_to_string(fixture(f)).unwrap());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accepted(stack: &Stack, token: &str) -> bool {
    let url = format!("{}?token={token}", stack.server.endpoint().ws_url());
    Ws::try_connect(&url, &[]).await.is_ok()
}

async fn refused_code(stack: &Stack, token: &str) -> String {
    let url = format!("{}?token={token}", stack.server.endpoint().ws_url());
    let (status, body) = Ws::refused(&url, &[]).await;
    assert_eq!(status, 401, "{body}");
    body["code"].as_str().unwrap().to_owned()
}

/// A stack checking JWKS keys from `jwks` beside the HMAC secret, loading
/// again every `refresh` and early (on unknown `kid`s) every `early_gap`.
async fn jwks_stack(jwks: &JwksServer, refresh: Duration, early_gap: Duration) -> Stack {
    let source = JwksSource::Url(jwks.url.clone());
    Stack::start_with(|c| {
        c.jwks = Some(JwksConfig {
            early_gap,
            ..JwksConfig::new(source, refresh)
        })
    })
    .await
}

#[tokio::test]
async fn a_pem_public_key_is_pinned_to_its_algorithm() {
    let stack = Stack::start_with(|c| {
        c.auth.algorithm = JwtAlgorithm::EdDsa;
        c.auth.public_key = Some(read("ed25519-c.pub.pem"));
    })
    .await;
    let ed = signer(JwtAlgorithm::EdDsa, "ed25519-c.key.pem");
    assert!(accepted(&stack, &token(&ed, None, "alice")).await);
    assert!(accepted(&stack, &token(&ed, Some("any"), "alice")).await);
    // Another algorithm, or the right one with another key, is refused.
    let rsa = signer(JwtAlgorithm::Rs256, "rs256-a.key.pem");
    assert_eq!(
        refused_code(&stack, &token(&rsa, None, "a")).await,
        "auth_invalid"
    );
    let hmac = AuthConfig::with_secret(odin_harness::server::TEST_SECRET);
    assert_eq!(
        refused_code(&stack, &token(&hmac, None, "a")).await,
        "auth_invalid"
    );
}

#[tokio::test]
async fn jwks_keys_rotate_without_a_restart_and_open_connections_stay() {
    let jwks = JwksServer::start("jwks-a.json").await;
    let stack = jwks_stack(&jwks, Duration::from_secs(3600), Duration::from_millis(200)).await;
    let rsa = signer(JwtAlgorithm::Rs256, "rs256-a.key.pem");
    let ed = signer(JwtAlgorithm::EdDsa, "ed25519-c.key.pem");
    let es = signer(JwtAlgorithm::Es256, "es256-b.key.pem");

    // kid picks the key; without one, the one key of its algorithm.
    assert!(accepted(&stack, &token(&rsa, Some("a"), "alice")).await);
    assert!(accepted(&stack, &token(&ed, None, "alice")).await);
    // A kid naming a key of another algorithm is refused (alg is pinned).
    assert_eq!(
        refused_code(&stack, &token(&ed, Some("a"), "x")).await,
        "auth_invalid"
    );
    // The secret still works beside the keys.
    assert!(
        Ws::try_connect(&stack.server.endpoint().ws_url_with_token("h"), &[])
            .await
            .is_ok()
    );
    assert_eq!(
        refused_code(&stack, &token(&es, Some("b"), "x")).await,
        "auth_invalid"
    );

    let mut open = Ws::try_connect(
        &format!(
            "{}?token={}",
            stack.server.endpoint().ws_url(),
            token(&rsa, Some("a"), "old")
        ),
        &[],
    )
    .await
    .unwrap();
    jwks.serve(Some("jwks-b.json"));
    // The unknown kid `b` asks for an early load: soon b is accepted...
    let fresh = token(&es, Some("b"), "new");
    eventually(LIMIT, "a token of the new key accepted", async || {
        accepted(&stack, &fresh).await.then_some(())
    })
    .await;
    // ... and a, gone from the set, refused.
    assert_eq!(
        refused_code(&stack, &token(&rsa, Some("a"), "x")).await,
        "auth_invalid"
    );
    // The connection opened with the old key is untouched.
    open.send_json(json!({"type": "ping", "id": "still"})).await;
    assert_eq!(open.next_of_type("pong").await["id"], "still");
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_keys() {
    let jwks = JwksServer::start("jwks-a.json").await;
    let stack = jwks_stack(
        &jwks,
        Duration::from_millis(100),
        Duration::from_millis(100),
    )
    .await;
    let rsa = signer(JwtAlgorithm::Rs256, "rs256-a.key.pem");
    jwks.serve(None);
    let failed_from = jwks.hits();
    eventually(LIMIT, "two failed fetches", async || {
        (jwks.hits() >= failed_from + 2).then_some(())
    })
    .await;
    assert!(accepted(&stack, &token(&rsa, Some("a"), "alice")).await);
}

#[tokio::test]
async fn random_kids_cannot_make_the_server_hammer_the_jwks_endpoint() {
    let jwks = JwksServer::start("jwks-a.json").await;
    let gap = Duration::from_millis(300);
    let source = JwksSource::Url(jwks.url.clone());
    let stack = Stack::start_with(|c| {
        c.jwks = Some(JwksConfig {
            early_gap: gap,
            ..JwksConfig::new(source, Duration::from_secs(3600))
        });
        // Every upgrade's token is checked, however many fail.
        c.address_limits = odin_server::AddressLimits::OFF;
    })
    .await;
    let rsa = signer(JwtAlgorithm::Rs256, "rs256-a.key.pem");
    let before = jwks.hits();
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < gap * 5 {
        let t = token(&rsa, Some(&format!("random-{sent}")), "mallory");
        assert_eq!(refused_code(&stack, &t).await, "auth_invalid");
        sent += 1;
    }
    let elapsed = started.elapsed();
    let fetched = jwks.hits() - before;
    // At most one load per gap, plus the one that may be under way.
    let allowed = 2 + (elapsed.as_millis() / gap.as_millis()) as usize;
    assert!(
        fetched >= 2,
        "unknown kids ask for loads ({fetched} in {elapsed:?})"
    );
    assert!(
        fetched <= allowed,
        "{fetched} fetches for {sent} unknown kids in {elapsed:?} (at most {allowed})"
    );
}
