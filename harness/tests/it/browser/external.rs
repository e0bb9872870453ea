//! The client page in headless Chromium against a gateway that is already
//! running, not one the test starts: the compose stack's gateway 1 in
//! `make compose-test` (`scripts/compose.sh test`). The page, served by that
//! gateway, loads without console errors, goes live, shows the prices the
//! stack's own publisher sends, and a price this test publishes to the
//! stack's NATS on a token nobody else publishes is on screen within a
//! second; a screenshot lands in `target/test-output/browser/`.
//!
//! Ignored by a plain `cargo test` (there is no running gateway); run it
//! with `--ignored` and the target in the environment:
//!
//! - `ODIN_BROWSER_WS_ADDR`: the gateway's WebSocket address (`host:port`)
//! - `ODIN_BROWSER_HTTP_ADDR`: its HTTP address (the page, `/stats`)
//! - `ODIN_BROWSER_NATS_URL`: a NATS server of its cluster
//! - `ODIN_JWT_SECRET`: its secret (unset: the development secret)
//!
//! Asked for explicitly, it fails (instead of skipping) where Chromium is
//! missing.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use odin_harness::server::Endpoint;
use odin_harness::wait::LIMIT;
use odin_server::auth::AuthConfig;

use super::chrome::{Browser, Tools};
use super::feed::Feed;
use super::page::{
    PRICE_ON_SCREEN, WATCHED, lines, page_url, publish_and_see_price, save, severe, wait_nats,
    wait_state,
};

/// A token no publisher simulates (theirs are BTC, ETH, … TKN0031, …), so
/// the price this test publishes is the only one its row can show.
const PRIVATE_TOKEN: &str = "ODINCHECK";

/// Where the running gateway is, from the environment.
struct Target {
    endpoint: Endpoint,
    nats_url: String,
}

impl Target {
    fn from_env() -> anyhow::Result<Target> {
        let addr = |name: &str| -> anyhow::Result<SocketAddr> {
            let value = std::env::var(name).with_context(|| format!("{name} is not set"))?;
            value
                .parse()
                .with_context(|| format!("{name}={value}: not a host:port address"))
        };
        let auth = match std::env::var("ODIN_JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => AuthConfig {
                secret: secret.into_bytes(),
                ..AuthConfig::development()
            },
            _ => AuthConfig::development(),
        };
        Ok(Target {
            endpoint: Endpoint {
                ws_addr: addr("ODIN_BROWSER_WS_ADDR")?,
                http_addr: addr("ODIN_BROWSER_HTTP_ADDR")?,
                auth,
                tls: None,
            },
            nats_url: std::env::var("ODIN_BROWSER_NATS_URL")
                .context("ODIN_BROWSER_NATS_URL is not set")?,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running gateway: make compose-test runs it against the compose stack"]
async fn live_page_on_a_running_gateway() {
    let target = Target::from_env().expect("the running gateway to test");
    let tools = Tools::find()
        .unwrap_or_else(|e| panic!("the browser test of a running gateway needs Chromium: {e}"));
    let started = Instant::now();
    let mut browser = Browser::launch(&tools, &[])
        .await
        .expect("headless Chromium starts");
    let result = scenario(&mut browser, &target).await;
    if result.is_err()
        && let Ok(png) = browser.screenshot().await
    {
        let _ = save(&png, "running-gateway-failure.png");
    }
    let console = browser.console().to_vec();
    browser.close().await;
    match result {
        Ok(shot) => {
            let _ = writeln!(
                std::io::stderr(),
                "browser test: the page of the running gateway at {} passed in {:.1} s; screenshot {}",
                target.endpoint.http_addr,
                started.elapsed().as_secs_f64(),
                shot.display()
            );
        }
        Err(e) => panic!("{e:#}\nbrowser console:\n{}", lines(&console)),
    }
}

/// The scenario of the module documentation; returns the screenshot's path.
async fn scenario(browser: &mut Browser, target: &Target) -> anyhow::Result<PathBuf> {
    let feed = Feed::connect(&target.nats_url).await?;
    wait_nats(&target.endpoint, &feed).await?;

    // The page the gateway serves loads, connects, logs no error.
    browser.goto(&page_url(&target.endpoint, "http")).await?;
    wait_state(browser, "live", LIMIT).await?;
    let errors = severe(&browser.new_console_entries().await?);
    ensure!(
        errors.is_empty(),
        "console errors while loading:\n{}",
        lines(&errors)
    );

    // The stack's publisher feeds every watched row, through NATS and the
    // gateway (or, for a token it priced before the page came, the snapshot).
    let rows = WATCHED
        .iter()
        .map(|t| {
            format!(
                "document.querySelector('#prices tr[data-token=\"{t}\"] td.price')?.dataset.value"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    browser
        .wait_for(
            "the publisher's prices in every watched row",
            LIMIT,
            &format!("return [{rows}].every(v => v !== undefined && v !== '')"),
        )
        .await?;

    // A token of its own, added from the form; a price published to the
    // stack's NATS (any node: the cluster routes it) is on screen within a
    // second.
    browser
        .eval(&format!(
            "document.getElementById('add-token').value = '{PRIVATE_TOKEN}'; \
             document.querySelector('#add-form button').click(); return true"
        ))
        .await?;
    browser
        .wait_for(
            "the added row",
            LIMIT,
            &format!("return document.querySelector('#prices tr[data-token=\"{PRIVATE_TOKEN}\"]') !== null"),
        )
        .await?;
    let price = 1000.0 + f64::from(std::process::id() % 1000);
    let shown = publish_and_see_price(browser, &feed, PRIVATE_TOKEN, price, Some(0.5)).await?;
    ensure!(
        shown <= PRICE_ON_SCREEN,
        "price took {shown:?} to reach the screen"
    );
    let _ = writeln!(
        std::io::stderr(),
        "browser test: running gateway: price on screen {} ms after publishing",
        shown.as_millis()
    );

    let errors = severe(&browser.new_console_entries().await?);
    ensure!(
        errors.is_empty(),
        "console errors at the end:\n{}",
        lines(&errors)
    );
    let png = browser.screenshot().await?;
    save(&png, "running-gateway.png")
}
