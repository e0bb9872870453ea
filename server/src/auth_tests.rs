//! Unit tests of the token checks (`auth.rs`).

use super::*;
use serde_json::json;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn accepts_a_good_token_and_refuses_each_bad_kind() {
    let cfg = AuthConfig::with_secret("s3cret");
    let auth = Authenticator::new(&cfg);
    let good = mint_token(&cfg, "alice", Duration::from_secs(60));
    assert_eq!(auth.verify(&good).unwrap().sub, "alice");

    let other = mint_token(
        &AuthConfig::with_secret("other"),
        "a",
        Duration::from_secs(60),
    );
    assert_eq!(
        auth.verify(&other).unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );

    let no_sub = sign(&cfg, &json!({"exp": now_secs() + 60}));
    assert_eq!(
        auth.verify(&no_sub).unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );
    let no_exp = sign(&cfg, &json!({"sub": "a"}));
    assert_eq!(
        auth.verify(&no_exp).unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );

    let expired = sign(&cfg, &json!({"sub": "a", "exp": now_secs() - 1}));
    assert_eq!(auth.verify(&expired).unwrap_err(), AuthError::Expired);
    assert_eq!(auth.verify("").unwrap_err(), AuthError::Missing);
    assert_eq!(
        auth.verify("a.b.c").unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );
}

#[test]
fn refuses_crit_headers_and_an_empty_sub() {
    let cfg = AuthConfig::with_secret("s3cret");
    let auth = Authenticator::new(&cfg);
    let claims = json!({"sub": "a", "exp": now_secs() + 60});
    let mut header = Header::new(Algorithm::HS256);
    let plain =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&cfg.secret)).unwrap();
    assert!(auth.verify(&plain).is_ok());
    header.crit = Some(vec!["exp-ext".into()]);
    let with_crit =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&cfg.secret)).unwrap();
    assert_eq!(
        auth.verify(&with_crit).unwrap_err(),
        AuthError::Invalid("critical header extensions are not understood".into())
    );
    header.crit = None;
    header.kid = Some("k1".into());
    let with_kid =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&cfg.secret)).unwrap();
    assert!(
        auth.verify(&with_kid).is_ok(),
        "other header fields are fine"
    );

    let empty_sub = sign(&cfg, &json!({"sub": "", "exp": now_secs() + 60}));
    assert_eq!(
        auth.verify(&empty_sub).unwrap_err(),
        AuthError::Invalid("empty sub".into())
    );
}

#[test]
fn an_exp_beyond_the_year_9999_is_read_as_then() {
    let cfg = AuthConfig::with_secret("s");
    let auth = Authenticator::new(&cfg);
    let last = UNIX_EPOCH + Duration::from_secs(MAX_EXP_SECS);
    for exp in [
        json!(MAX_EXP_SECS),
        json!(MAX_EXP_SECS + 1),
        json!(9_300_000_000_000_000_000_u64),
        json!(u64::MAX),
    ] {
        let t = sign(&cfg, &json!({"sub": "a", "exp": exp}));
        let verified = auth.verify(&t).unwrap();
        assert_eq!(verified.expires_at, last, "exp {exp}");
        // What the connection does with it: no overflow.
        let left = verified
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(std::time::Instant::now().checked_add(left).is_some());
    }
    // A number no u64 holds is no valid `exp` at all.
    let huge = sign(&cfg, &json!({"sub": "a", "exp": 1e300}));
    assert_eq!(
        auth.verify(&huge).unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );
    let longest = mint_token(&cfg, "a", Duration::from_secs(u64::MAX));
    assert_eq!(auth.verify(&longest).unwrap().expires_at, last);
}

#[test]
fn expired_from_the_second_of_exp() {
    let cfg = AuthConfig::with_secret("s");
    let auth = Authenticator::new(&cfg);
    let exp = now_secs() + 100;
    let t = sign(&cfg, &json!({"sub": "a", "exp": exp}));
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    assert!(auth.verify_at(&t, at(exp - 1)).is_ok());
    assert_eq!(auth.verify_at(&t, at(exp)).unwrap_err(), AuthError::Expired);
}

#[test]
fn claims_follow_rfc_7519_types() {
    let exp = now_secs() + 100;
    let open = AuthConfig::with_secret("s");
    let auth = Authenticator::new(&open);
    // Unconfigured aud and iss are ignored whatever their JSON type.
    for extra in [
        json!({"aud": ["app-a", "app-b"]}),
        json!({"aud": 5}),
        json!({"iss": 5}),
        json!({"aud": null, "iss": {"x": 1}}),
    ] {
        let mut claims = json!({"sub": "a", "exp": exp});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let t = sign(&open, &claims);
        assert_eq!(
            auth.verify(&t).map(|v| v.sub),
            Ok("a".to_owned()),
            "{claims}"
        );
    }
    // A configured audience matches one entry of an array.
    let mut strict = AuthConfig::with_secret("s");
    strict.audience = Some("odin-clients".into());
    let auth = Authenticator::new(&strict);
    let one_of = sign(
        &strict,
        &json!({"sub": "a", "exp": exp, "aud": ["x", "odin-clients"]}),
    );
    assert!(auth.verify(&one_of).is_ok());
    let none_of = sign(&strict, &json!({"sub": "a", "exp": exp, "aud": ["x", "y"]}));
    assert_eq!(
        auth.verify(&none_of).unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );
    // `exp` may have a fraction; it is expired from its whole second.
    let auth = Authenticator::new(&open);
    let t = sign(&open, &json!({"sub": "a", "exp": exp as f64 + 0.5}));
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let verified = auth.verify_at(&t, at(exp - 1)).unwrap();
    assert_eq!(verified.expires_at, at(exp));
    assert_eq!(auth.verify_at(&t, at(exp)).unwrap_err(), AuthError::Expired);
}

#[test]
fn refuses_alg_none_and_other_algorithms() {
    let cfg = AuthConfig::with_secret("s");
    let auth = Authenticator::new(&cfg);
    let body = base64_url(&json!({"sub": "a", "exp": now_secs() + 60}).to_string());
    let none = format!("{}.{body}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#));
    assert_eq!(
        auth.verify(&none).unwrap_err().code(),
        AuthErrorCode::AuthInvalid
    );
    let hs512 = AuthConfig {
        algorithm: JwtAlgorithm::Hs512,
        ..cfg.clone()
    };
    let t = mint_token(&hs512, "a", Duration::from_secs(60));
    assert_eq!(
        auth.verify(&t).unwrap_err(),
        AuthError::Invalid("algorithm not accepted".into())
    );
}

fn base64_url(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &x| acc << 8 | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn query_token_wins_and_empty_counts_as_missing() {
    assert_eq!(
        token_from_request(Some("token=q"), Some(b"Bearer h")),
        Some("q".into())
    );
    assert_eq!(
        token_from_request(Some("token="), Some(b"Bearer h")),
        Some("h".into())
    );
    assert_eq!(token_from_request(Some("token="), None), None);
    assert_eq!(
        token_from_request(None, Some(b"bearer  h ")),
        Some("h".into())
    );
    assert_eq!(token_from_request(None, Some(b"Basic h")), None);
    assert_eq!(
        token_from_request(Some("a=1&token=x%2Ey"), None),
        Some("x.y".into())
    );
}

fn key_file(name: &str) -> Box<[u8]> {
    let path = format!("{}/../fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap().into_boxed_slice()
}

#[test]
fn a_token_without_kid_needs_exactly_one_key_of_its_algorithm() {
    let rsa_public = AuthConfig {
        algorithm: JwtAlgorithm::Rs256,
        public_key: Some(key_file("rs256-a.pub.pem")),
        ..AuthConfig::with_secret("")
    };
    let auth = Authenticator::new(&rsa_public);
    let signer = AuthConfig {
        algorithm: JwtAlgorithm::Rs256,
        private_key: Some(key_file("rs256-a.key.pem")),
        ..AuthConfig::with_secret("")
    };
    let plain = mint_token(&signer, "a", Duration::from_secs(60));
    assert!(auth.verify(&plain).is_ok());
    // A kid no JWKS key has falls back to the PEM key.
    let with_kid = mint_token_with_kid(&signer, Some("z"), "a", Duration::from_secs(60));
    assert!(auth.verify(&with_kid).is_ok());

    // The same key in a JWKS document too: two RS256 keys, so a token
    // without kid is ambiguous, and one with kid a picks the JWKS key.
    let jwks = std::fs::read(format!(
        "{}/../fixtures/keys/jwks-a.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    auth.jwks()
        .replace(crate::keys::from_jwks(&jwks).unwrap().0);
    assert_eq!(
        auth.verify(&plain).unwrap_err(),
        AuthError::Invalid("several keys take this algorithm: the token needs a kid".into())
    );
    let kid_a = mint_token_with_kid(&signer, Some("a"), "a", Duration::from_secs(60));
    assert!(auth.verify(&kid_a).is_ok());
    // The HMAC secret is no key here: an HS256 token is refused.
    let hs = mint_token(&AuthConfig::with_secret("s"), "a", Duration::from_secs(60));
    assert_eq!(
        auth.verify(&hs).unwrap_err(),
        AuthError::Invalid("algorithm not accepted".into())
    );
}
