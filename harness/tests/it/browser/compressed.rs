//! The client page in headless Chromium against `odin-server --compression`:
//! Chromium offers permessage-deflate by default, so the page's socket
//! negotiates it (its `extensions` says so), its compressed subscribe is
//! understood, and the prices it shows arrived compressed (the server's
//! `messagesCompressed` counter grows while the page is its only client).

use std::io::Write;

use anyhow::ensure;
use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::wait::LIMIT;

use super::chrome::{Browser, Tools};
use super::feed::Feed;
use super::page::{lines, page_url, publish_and_see_price, wait_nats, wait_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_gets_compressed_prices() {
    let Some(tools) = Tools::find_or_skip("compressed page") else {
        return;
    };
    let nats = NatsServer::start().await.expect("NATS starts");
    let server = ServerProcess::start(&nats.url(), &["--compression"])
        .await
        .expect("odin-server starts");
    let mut browser = Browser::launch(&tools, &[])
        .await
        .expect("headless Chromium starts");
    let result = scenario(&browser, &server, &nats).await;
    let console = browser.new_console_entries().await.unwrap_or_default();
    browser.close().await;
    if let Err(e) = result {
        panic!(
            "{e:#}\nbrowser console:\n{}\nserver log:\n{}",
            lines(&console),
            server.logs().join("\n")
        );
    }
}

async fn scenario(
    browser: &Browser,
    server: &ServerProcess,
    nats: &NatsServer,
) -> anyhow::Result<()> {
    let endpoint = server.endpoint();
    let feed = Feed::connect(&nats.url()).await?;
    wait_nats(endpoint, &feed).await?;
    browser.goto(&page_url(endpoint, "http")).await?;
    wait_state(browser, "live", LIMIT).await?;
    let stats = endpoint.stats().await?;
    ensure!(
        stats.compressed_connections == 1,
        "the page did not negotiate compression: {stats:?}"
    );
    let before = stats.messages_compressed;
    for (i, token) in ["BTC", "ETH", "SOL"].into_iter().enumerate() {
        publish_and_see_price(browser, &feed, token, 100.5 + i as f64, Some(1.25)).await?;
    }
    let stats = endpoint.stats().await?;
    ensure!(
        stats.messages_compressed >= before + 3,
        "the prices on screen did not go out compressed: {stats:?}"
    );

    // What the browser itself says it negotiated, on a socket of its own.
    let url = endpoint.ws_url_with_token("browser-deflate");
    browser
        .eval(&format!(
            "window.__probe = new WebSocket({url:?}); return true"
        ))
        .await?;
    browser
        .wait_for(
            "the probe socket opens",
            LIMIT,
            "return window.__probe.readyState === 1",
        )
        .await?;
    let extensions = browser.eval("return window.__probe.extensions").await?;
    ensure!(
        extensions.as_str().is_some_and(
            |e| e.starts_with("permessage-deflate") && e.contains("server_no_context_takeover")
        ),
        "negotiated extensions: {extensions}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "browser test: compressed page passed; {} of {} frames compressed; extensions {extensions}",
        stats.messages_compressed,
        stats.messages_delivered
    );
    Ok(())
}
