//! Tokens through the upgrade request's checks (`odin_server::auth`):
//! `token_from_request` and `Authenticator::verify_at`.
//!
//! Input, by its first byte:
//! - `T<token>`: the bytes as a token, as a client sent it;
//! - `S<header JSON>\n<claims JSON>`: that header and those claims signed
//!   with the test secret, so the signature passes and the claim handling
//!   is what the input reaches;
//! - `R<query>\n<Authorization header>`: the token picked from a request;
//! - anything else: structured header and claims built with `arbitrary`
//!   (algorithms, `crit`, `exp`/`nbf`/`iat` at the overflow edges, `sub`,
//!   `aud`/`iss` of every JSON type), signed with the test secret.
//!
//! Each token is checked against three configurations: HS256, HS256 with a
//! required audience and issuer, and HS512. No input may panic; an accepted
//! token has a non-empty string `sub`, an `exp` number whose whole second
//! (capped at the year 9999) is its expiry, after now and usable as a
//! deadline; its header names the configured algorithm and has no `crit`;
//! and a configured `aud`/`iss` is there.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use odin_fuzz::{Hs, sign_raw};
use odin_server::auth::{
    AuthConfig, Authenticator, DEV_SECRET, JwtAlgorithm, MAX_EXP_SECS, token_from_request,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

const AUDIENCE: &str = "odin-clients";
const ISSUER: &str = "odin-issuer";

/// The three configurations, built once.
struct Setup {
    name: &'static str,
    alg: Hs,
    strict: bool,
    auth: Authenticator,
}

fn setups() -> &'static [Setup] {
    static SETUPS: OnceLock<Vec<Setup>> = OnceLock::new();
    SETUPS.get_or_init(|| {
        let open = AuthConfig::with_secret(DEV_SECRET);
        let mut strict = open.clone();
        strict.audience = Some(AUDIENCE.into());
        strict.issuer = Some(ISSUER.into());
        let mut hs512 = open.clone();
        hs512.algorithm = JwtAlgorithm::Hs512;
        vec![
            Setup {
                name: "HS256",
                alg: Hs::Hs256,
                strict: false,
                auth: Authenticator::new(&open),
            },
            Setup {
                name: "HS256 aud+iss",
                alg: Hs::Hs256,
                strict: true,
                auth: Authenticator::new(&strict),
            },
            Setup {
                name: "HS512",
                alg: Hs::Hs512,
                strict: false,
                auth: Authenticator::new(&hs512),
            },
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'T' => {
            if let Ok(token) = std::str::from_utf8(rest) {
                verify_everywhere(token, None);
            }
        }
        b'S' => {
            let (header, claims) = split_line(rest);
            for setup in setups() {
                let token = sign_raw(setup.alg, DEV_SECRET.as_bytes(), header, claims);
                verify_everywhere(&token, Some((header, claims)));
            }
        }
        b'R' => {
            let (query, authorization) = split_line(rest);
            let query = std::str::from_utf8(query).ok();
            let authorization = (!authorization.is_empty()).then_some(authorization);
            if let Some(token) = token_from_request(query, authorization) {
                assert!(!token.is_empty());
                verify_everywhere(&token, None);
            }
        }
        _ => {
            let Ok(input) = Structured::arbitrary(&mut Unstructured::new(data)) else {
                return;
            };
            let now = now_secs();
            let header = input.header.to_json().to_string();
            let claims = input.claims.to_json(now).to_string();
            let alg = match input.sign_with % 3 {
                0 => Hs::Hs256,
                1 => Hs::Hs384,
                _ => Hs::Hs512,
            };
            let token = sign_raw(
                alg,
                DEV_SECRET.as_bytes(),
                header.as_bytes(),
                claims.as_bytes(),
            );
            verify_everywhere(&token, Some((header.as_bytes(), claims.as_bytes())));
        }
    }
});

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Verifies `token` under every configuration; `signed` holds the header
/// and claims bytes when this target signed them itself.
fn verify_everywhere(token: &str, signed: Option<(&[u8], &[u8])>) {
    let now = SystemTime::now();
    for setup in setups() {
        let Ok(verified) = setup.auth.verify_at(token, now) else {
            continue;
        };
        let context = || format!("{} accepted {token}", setup.name);
        assert!(!verified.sub.is_empty(), "{}", context());
        let last = UNIX_EPOCH + Duration::from_secs(MAX_EXP_SECS);
        assert!(verified.expires_at <= last, "{}", context());
        assert!(verified.expires_at > now, "{}", context());
        // What the connection does with it: a deadline that cannot overflow.
        let left = verified.expires_at.duration_since(now).unwrap();
        assert!(Instant::now().checked_add(left).is_some(), "{}", context());

        // What the token said, read independently of the code under test.
        let (header, claims) = match signed {
            Some(parts) => parts,
            None => continue,
        };
        // Only the fields checked are read, every other one skipped unread
        // as the server skips it: an ignored field may hold what serde_json
        // cannot represent, and the token is still accepted (invalid UTF-8
        // in an unchecked `iss`, read lossily here; a number beyond f64
        // such as `"nbf":1e+380`, which RFC 8259 §6 lets a parser refuse,
        // in an `nbf` PROTOCOL.md §2 leaves unchecked).
        let header: CheckedHeader = serde_json::from_str(&String::from_utf8_lossy(header))
            .unwrap_or_else(|e| panic!("{}: header is not JSON: {e}", context()));
        let claims: CheckedClaims = serde_json::from_str(&String::from_utf8_lossy(claims))
            .unwrap_or_else(|e| panic!("{}: claims is not JSON: {e}", context()));
        assert_eq!(header.alg, Some(json!(setup.alg.name())), "{}", context());
        assert!(header.crit.is_none(), "{}", context());
        assert_eq!(claims.sub, Some(json!(verified.sub)), "{}", context());
        let exp = claims.exp.unwrap_or(Value::Null);
        let exp_secs = match (exp.as_u64(), exp.as_f64()) {
            (Some(u), _) => u.min(MAX_EXP_SECS),
            (None, Some(f)) => (f.max(0.0).floor() as u64).min(MAX_EXP_SECS),
            _ => panic!("{}: exp {exp} is no number", context()),
        };
        assert_eq!(
            verified.expires_at,
            UNIX_EPOCH + Duration::from_secs(exp_secs),
            "{}",
            context()
        );
        if setup.strict {
            assert_eq!(claims.iss, Some(json!(ISSUER)), "{}", context());
            let aud = claims.aud.unwrap_or(Value::Null);
            assert!(
                aud == json!(AUDIENCE)
                    || aud.as_array().is_some_and(|a| a.contains(&json!(AUDIENCE))),
                "{}: aud {aud}",
                context()
            );
        }
    }
}

/// What the check reads of a token's header: the fields it checks (a JSON
/// `null` reads as absent); serde skips the others unread.
#[derive(Deserialize)]
struct CheckedHeader {
    alg: Option<Value>,
    crit: Option<Value>,
}

/// What the check reads of a token's claims, as [`CheckedHeader`].
#[derive(Deserialize)]
struct CheckedClaims {
    sub: Option<Value>,
    exp: Option<Value>,
    iss: Option<Value>,
    aud: Option<Value>,
}

/// Structured header and claims.
#[derive(Arbitrary, Debug)]
struct Structured {
    header: HeaderIn,
    claims: ClaimsIn,
    sign_with: u8,
}

#[derive(Arbitrary, Debug)]
struct HeaderIn {
    alg: Option<AlgIn>,
    typ: Option<Json>,
    kid: Option<Json>,
    crit: Option<Json>,
    extra: Vec<(String, Json)>,
}

#[derive(Arbitrary, Debug)]
enum AlgIn {
    Hs256,
    Hs384,
    Hs512,
    None,
    NoneUpper,
    Rs256,
    Es256,
    EdDsa,
    Lowercase,
    Other(String),
    NotAString(Json),
}

impl HeaderIn {
    fn to_json(&self) -> Value {
        let mut h = Map::new();
        if let Some(alg) = &self.alg {
            let alg = match alg {
                AlgIn::Hs256 => json!("HS256"),
                AlgIn::Hs384 => json!("HS384"),
                AlgIn::Hs512 => json!("HS512"),
                AlgIn::None => json!("none"),
                AlgIn::NoneUpper => json!("NONE"),
                AlgIn::Rs256 => json!("RS256"),
                AlgIn::Es256 => json!("ES256"),
                AlgIn::EdDsa => json!("EdDSA"),
                AlgIn::Lowercase => json!("hs256"),
                AlgIn::Other(s) => json!(s),
                AlgIn::NotAString(j) => j.to_json(),
            };
            h.insert("alg".into(), alg);
        }
        for (key, field) in [("typ", &self.typ), ("kid", &self.kid), ("crit", &self.crit)] {
            if let Some(v) = field {
                h.insert(key.into(), v.to_json());
            }
        }
        for (k, v) in &self.extra {
            h.entry(k.clone()).or_insert_with(|| v.to_json());
        }
        Value::Object(h)
    }
}

#[derive(Arbitrary, Debug)]
struct ClaimsIn {
    sub: Option<Str>,
    exp: Option<Num>,
    nbf: Option<Num>,
    iat: Option<Num>,
    aud: Option<Aud>,
    iss: Option<Str>,
    extra: Vec<(String, Json)>,
}

impl ClaimsIn {
    fn to_json(&self, now: u64) -> Value {
        let mut c = Map::new();
        if let Some(sub) = &self.sub {
            c.insert("sub".into(), sub.to_json(ISSUER));
        }
        for (key, field) in [("exp", &self.exp), ("nbf", &self.nbf), ("iat", &self.iat)] {
            if let Some(v) = field {
                c.insert(key.into(), v.to_json(now));
            }
        }
        if let Some(aud) = &self.aud {
            c.insert("aud".into(), aud.to_json());
        }
        if let Some(iss) = &self.iss {
            c.insert("iss".into(), iss.to_json(ISSUER));
        }
        for (k, v) in &self.extra {
            c.entry(k.clone()).or_insert_with(|| v.to_json());
        }
        Value::Object(c)
    }
}

/// A string claim: the expected value, another, empty, or not a string.
#[derive(Arbitrary, Debug)]
enum Str {
    Expected,
    Some(String),
    Empty,
    NotAString(Json),
}

impl Str {
    fn to_json(&self, expected: &str) -> Value {
        match self {
            Str::Expected => json!(expected),
            Str::Some(s) => json!(s),
            Str::Empty => json!(""),
            Str::NotAString(j) => j.to_json(),
        }
    }
}

/// A NumericDate claim, around now and at the edges of every integer type.
#[derive(Arbitrary, Debug)]
enum Num {
    FromNow(i32),
    FromNowFraction(i16, u16),
    MaxExp,
    MaxExpPlus(u32),
    U64Max,
    I64Min,
    U64(u64),
    I64(i64),
    F64(f64),
    Huge,
    Tiny,
    NegativeZero,
    Text(String),
    Other(Json),
}

impl Num {
    fn to_json(&self, now: u64) -> Value {
        let from_now = |d: i64| (now as i64).saturating_add(d);
        match *self {
            Num::FromNow(d) => json!(from_now(d.into())),
            Num::FromNowFraction(d, f) => json!(from_now(d.into()) as f64 + f64::from(f) / 65536.0),
            Num::MaxExp => json!(MAX_EXP_SECS),
            Num::MaxExpPlus(d) => json!(MAX_EXP_SECS + u64::from(d)),
            Num::U64Max => json!(u64::MAX),
            Num::I64Min => json!(i64::MIN),
            Num::U64(u) => json!(u),
            Num::I64(i) => json!(i),
            // Not finite: JSON has no such number; serde_json writes null.
            Num::F64(f) => json!(f),
            Num::Huge => json!(1e300),
            Num::Tiny => json!(5e-324),
            Num::NegativeZero => json!(-0.0),
            Num::Text(ref s) => json!(s),
            Num::Other(ref j) => j.to_json(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Aud {
    Expected,
    Some(String),
    List(Vec<String>, bool),
    Other(Json),
}

impl Aud {
    fn to_json(&self) -> Value {
        match self {
            Aud::Expected => json!(AUDIENCE),
            Aud::Some(s) => json!(s),
            Aud::List(list, with_expected) => {
                let mut list = list.clone();
                if *with_expected {
                    list.push(AUDIENCE.into());
                }
                json!(list)
            }
            Aud::Other(j) => j.to_json(),
        }
    }
}

/// Any JSON value.
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn to_json(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => json!(b),
            Json::U64(u) => json!(u),
            Json::I64(i) => json!(i),
            Json::F64(f) => json!(f),
            Json::Str(s) => json!(s),
            Json::Array(a) => Value::Array(a.iter().map(Json::to_json).collect()),
            Json::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}
