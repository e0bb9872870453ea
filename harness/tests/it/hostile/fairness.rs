//! One source address against the WebSocket port's per-address budgets:
//! open connections (sockets in the handshake included), new connections
//! per second, and failed authentications. Each test has one address
//! exhaust its budget and asserts the refusal (`503`/`429` with
//! `Retry-After`, counted in `/stats` and `/metrics`), that another address
//! is served meanwhile, and that the control client kept its feed.
//!
//! Clients are the server tests' `Ws` (the library's raw client); sockets
//! that hold a slot without ever sending a request are bare `TcpStream`s.

use std::num::NonZeroU32;
use std::time::Duration;

use odin_harness::wait::{LIMIT, eventually};
use odin_server::AddressLimits;
use odin_server::auth::{AuthConfig, mint_token};
use odin_server::fairness::Rate;
use tokio::net::{TcpSocket, TcpStream};

use super::control::Control;
use super::http_side::counter;
use crate::server::support::{Refusal, Stack, Ws};

/// The addresses the tests' attackers and bystanders connect from.
const MALLORY: [u8; 4] = [127, 0, 0, 31];
const BYSTANDER: [u8; 4] = [127, 0, 0, 32];

fn rate(per_second: u32, burst: u32) -> Option<Rate> {
    Some(Rate {
        per_second: NonZeroU32::new(per_second).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    })
}

/// Connects with a valid token from `from`, expecting the upgrade.
async fn connect_from(stack: &Stack, from: [u8; 4]) -> Ws {
    let url = stack.server.endpoint().ws_url_with_token("tester");
    match Ws::try_connect_from(from, &url).await {
        Ok(ws) => ws,
        Err(refusal) => panic!("upgrade from {from:?} refused: {refusal:?}"),
    }
}

/// Connects with a valid token from `from`, expecting a refusal.
async fn refused_from(stack: &Stack, from: [u8; 4]) -> Refusal {
    let url = stack.server.endpoint().ws_url_with_token("tester");
    match Ws::try_connect_from(from, &url).await {
        Ok(ws) => panic!("upgrade from {from:?} accepted: {}", ws.hello),
        Err(refusal) => refusal,
    }
}

/// Retries an upgrade from `from`, refused meanwhile with `status` only,
/// until it is accepted, within `limit`.
async fn accepted_again_within(stack: &Stack, from: [u8; 4], status: u16, limit: Duration) -> Ws {
    let url = stack.server.endpoint().ws_url_with_token("tester");
    let what = format!("an upgrade from {from:?} accepted again");
    eventually(limit, &what, async || {
        match Ws::try_connect_from(from, &url).await {
            Ok(ws) => Ok(ws),
            Err(refusal) => {
                assert_eq!(refusal.status, status, "{refusal:?}");
                Err(format!("{refusal:?}"))
            }
        }
    })
    .await
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections_handshaking_or_not() {
    const SHARE: usize = 8;
    let stack = Stack::start_with(|c| {
        c.address_limits = AddressLimits {
            max_connections: Some(SHARE),
            ..AddressLimits::OFF
        };
    })
    .await;
    let control = Control::start(&stack).await;
    let ws_addr = stack.server.endpoint().ws_addr;
    // Half of the share in silent sockets (stuck in the handshake), half
    // in real connections.
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..SHARE / 2 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((MALLORY, 0).into()).unwrap();
        silent.push(socket.connect(ws_addr).await.unwrap());
    }
    let mut held = Vec::new();
    for _ in 0..SHARE / 2 {
        held.push(connect_from(&stack, MALLORY).await);
    }
    let refusal = refused_from(&stack, MALLORY).await;
    assert_eq!(refusal.status, 503, "{refusal:?}");
    assert_eq!(refusal.body["code"], "address_busy", "{refusal:?}");
    assert_eq!(refusal.retry_after.as_deref(), Some("5"), "{refusal:?}");
    // Another address is served, and the share comes back as sockets go.
    let _bystander = connect_from(&stack, BYSTANDER).await;
    drop(silent);
    drop(held.pop());
    let _again = accepted_again_within(&stack, MALLORY, 503, LIMIT).await;
    assert!(counter(&stack, "odin_address_busy_total").await >= 1);
    let stats = stack.server.endpoint().stats().await.unwrap();
    assert_eq!(
        stats.address_limited,
        counter(&stack, "odin_address_busy_total").await
    );
    control.finish().await;
}

#[tokio::test]
async fn one_address_cannot_connect_faster_than_its_budget() {
    const BURST: u32 = 5;
    let stack = Stack::start_with(|c| {
        c.address_limits = AddressLimits {
            connect_rate: rate(2, BURST),
            ..AddressLimits::OFF
        };
    })
    .await;
    let control = Control::start(&stack).await;
    let mut held = Vec::new();
    for _ in 0..BURST {
        held.push(connect_from(&stack, MALLORY).await);
    }
    let refusal = refused_from(&stack, MALLORY).await;
    assert_eq!(refusal.status, 429, "{refusal:?}");
    assert_eq!(refusal.body["code"], "connect_rate_limited", "{refusal:?}");
    assert_eq!(refusal.retry_after.as_deref(), Some("1"), "{refusal:?}");
    let _bystander = connect_from(&stack, BYSTANDER).await;
    // The bucket refills at 2 a second.
    let _later = accepted_again_within(&stack, MALLORY, 429, Duration::from_secs(2)).await;
    let limited = counter(&stack, "odin_connect_rate_limited_total").await;
    assert!(limited >= 1);
    let stats = stack.server.endpoint().stats().await.unwrap();
    assert_eq!(stats.address_limited, limited);
    control.finish().await;
}

#[tokio::test]
async fn failed_authentications_bar_their_address_until_the_budget_refills() {
    const BURST: u32 = 3;
    let stack = Stack::start_with(|c| {
        c.address_limits = AddressLimits {
            auth_failures: rate(1, BURST),
            ..AddressLimits::OFF
        };
    })
    .await;
    let control = Control::start(&stack).await;
    let ep = stack.server.endpoint();
    let forger = AuthConfig::with_secret("a-secret-that-is-not-the-servers-0123456789");
    let forged = |i: usize| {
        let token = mint_token(&forger, &format!("mallory-{i}"), Duration::from_secs(60));
        format!("{}?token={token}", ep.ws_url())
    };
    // The burst, and the one failure that finds the bucket empty.
    for i in 0..=BURST as usize {
        let Err(refusal) = Ws::try_connect_from(MALLORY, &forged(i)).await else {
            panic!("a forged token was accepted");
        };
        assert_eq!(refusal.status, 401, "{refusal:?}");
    }
    // Barred: even a valid token is not checked.
    let refusal = refused_from(&stack, MALLORY).await;
    assert_eq!(refusal.status, 429, "{refusal:?}");
    assert_eq!(refusal.body["code"], "auth_rate_limited", "{refusal:?}");
    assert_eq!(refusal.retry_after.as_deref(), Some("1"), "{refusal:?}");
    let _bystander = connect_from(&stack, BYSTANDER).await;
    let stats = ep.stats().await.unwrap();
    assert_eq!(stats.auth_failures, u64::from(BURST) + 1);
    assert_eq!(stats.address_limited, 1);
    assert_eq!(counter(&stack, "odin_auth_rate_limited_total").await, 1);
    // The bar lifts with the bucket's next token (one a second).
    let _later = accepted_again_within(&stack, MALLORY, 429, Duration::from_secs(2)).await;
    control.finish().await;
}
