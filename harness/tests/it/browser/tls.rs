//! The client page over TLS in headless Chromium: served over `https://`
//! by a gateway with a test CA's certificate (Chromium trusts its keys by
//! `--ignore-certificate-errors-spki-list`), live over `wss://`, showing a
//! published price; after the certificate is reloaded (new files and
//! SIGHUP) the open page keeps its connection and its prices, and a page
//! loaded afresh goes live with the new certificate.

use anyhow::Context;
use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::tls::{TestCa, presented};
use odin_harness::wait::{LIMIT, eventually};

use super::chrome::{Browser, Tools};
use super::feed::Feed;
use super::page::{PRICE_ON_SCREEN, lines, page_url, publish_and_see_price, wait_nats, wait_state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_goes_live_over_wss_and_survives_a_certificate_reload() {
    let Some(tools) = Tools::find_or_skip("page over TLS") else {
        return;
    };
    let nats = NatsServer::start().await.expect("NATS starts");
    let ca = TestCa::new().unwrap();
    let (first, second) = (ca.issue(1).unwrap(), ca.issue(2).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    first.write(&cert, &key).unwrap();
    let (cert_flag, key_flag) = (cert.display().to_string(), key.display().to_string());
    let mut server = ServerProcess::start(
        &nats.url(),
        &["--tls-cert", &cert_flag, "--tls-key", &key_flag],
    )
    .await
    .expect("odin-server starts with TLS");
    let trust = ca.client().unwrap();
    server.trust(trust.clone());
    let spki = format!(
        "--ignore-certificate-errors-spki-list={},{}",
        first.spki_sha256_base64(),
        second.spki_sha256_base64()
    );
    let browser = Browser::launch(&tools, &[&spki])
        .await
        .expect("headless Chromium starts");
    let result = async {
        let feed = Feed::connect(&nats.url()).await?;
        wait_nats(server.endpoint(), &feed).await?;
        let url = page_url(server.endpoint(), "https");
        browser.goto(&url).await?;
        wait_state(&browser, "live", LIMIT).await?;
        let took = publish_and_see_price(&browser, &feed, "BTC", 101.5, None).await?;
        anyhow::ensure!(took <= PRICE_ON_SCREEN, "price on screen after {took:?}");

        second.write(&cert, &key)?;
        server.signal("HUP")?;
        let ws = server.endpoint().ws_addr;
        eventually(LIMIT, "the new certificate served", async || {
            (presented(&trust, ws).await.ok()? == second.der).then_some(())
        })
        .await;
        // The open page kept its connection: the next price arrives on it.
        publish_and_see_price(&browser, &feed, "ETH", 202.25, None).await?;
        let stats = server.endpoint().stats().await?;
        anyhow::ensure!(stats.connection_count == 1, "{stats:?}");

        // A fresh load makes new connections, which see the new certificate.
        browser.goto(&url).await?;
        wait_state(&browser, "live", LIMIT).await?;
        publish_and_see_price(&browser, &feed, "SOL", 3.75, None)
            .await
            .context("a price on the page loaded after the reload")?;
        anyhow::Ok(())
    }
    .await;
    let console = browser.console().to_vec();
    browser.close().await;
    if let Err(e) = result {
        panic!(
            "{e:#}\nbrowser console:\n{}\nserver log:\n{}",
            lines(&console),
            server.logs().join("\n")
        );
    }
}
