//! The client page in headless Chromium, against the real `odin-server`
//! binary and real NATS: it loads without console errors, goes live, shows a
//! price published to NATS within a second, says "reconnecting" while the
//! server is down, is live again on the server restarted on the same ports
//! without duplicating a trade row, and leaves a screenshot under
//! `target/test-output/browser/`. Opened as a file, it works where the
//! browser allows modules from `file://`, and says why where it does not.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use odin_harness::nats::NatsServer;
use odin_harness::server::{Endpoint, ServerProcess, TestServer};
use odin_harness::wait::LIMIT;
use odin_protocol::Event;
use odin_protocol::message::Side;

use super::chrome::{Browser, ConsoleEntry, Tools};
use super::feed::Feed;

/// A published price must be on screen within this (the bar).
pub(super) const PRICE_ON_SCREEN: Duration = Duration::from_secs(1);
/// Longest reconnect: the back-off cap (30 s) plus a connect.
const RECONNECT: Duration = Duration::from_secs(35);

pub(super) const WATCHED: [&str; 3] = ["BTC", "ETH", "SOL"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_survives_a_server_restart() {
    let Some(tools) = Tools::find_or_skip("live page") else {
        return;
    };
    let started = Instant::now();
    let nats = NatsServer::start().await.expect("NATS starts");
    let mut server = ServerProcess::start(&nats.url(), &[])
        .await
        .expect("odin-server starts");
    let mut browser = Browser::launch(&tools, &[])
        .await
        .expect("headless Chromium starts");
    let result = live_scenario(&mut browser, &mut server, &nats).await;
    if result.is_err() {
        // A picture of the failure is worth having too.
        if let Ok(png) = browser.screenshot().await {
            let _ = save(&png, "live-page-failure.png");
        }
    }
    let console = browser.console().to_vec();
    browser.close().await;
    let shot = match result {
        Ok(shot) => shot,
        Err(e) => panic!(
            "{e:#}\nbrowser console:\n{}\nserver log:\n{}",
            lines(&console),
            server.logs().join("\n")
        ),
    };
    let _ = writeln!(
        std::io::stderr(),
        "browser test: live page passed in {:.1} s; screenshot {}",
        started.elapsed().as_secs_f64(),
        shot.display()
    );
}

/// The scenario of the module documentation; returns the screenshot's path.
async fn live_scenario(
    browser: &mut Browser,
    server: &mut ServerProcess,
    nats: &NatsServer,
) -> anyhow::Result<PathBuf> {
    let mut feed = Feed::connect(&nats.url()).await?;
    wait_nats(server.endpoint(), &feed).await?;
    let ws_addr = server.ws_addr;

    // Loads, connects, no console errors.
    browser.goto(&page_url(server.endpoint(), "http")).await?;
    wait_state(browser, "live", LIMIT).await?;
    let hidden = browser
        .eval("return document.getElementById('module-help').hidden")
        .await?;
    ensure!(hidden == true, "the page says its scripts were refused");
    // The JWT left the address bar (and the history) once the page read it.
    let token_in_address = browser
        .eval("return new URLSearchParams(location.search).has('token')")
        .await?;
    ensure!(
        token_in_address == false,
        "the JWT stays in the address bar"
    );
    let errors = severe(&browser.new_console_entries().await?);
    ensure!(
        errors.is_empty(),
        "console errors while loading:\n{}",
        lines(&errors)
    );

    // A price published to NATS is on screen within a second.
    let shown = publish_and_see_price(browser, &feed, "BTC", 64_123.5, Some(2.31)).await?;
    ensure!(
        shown <= PRICE_ON_SCREEN,
        "price took {shown:?} to reach the screen"
    );
    let _ = writeln!(
        std::io::stderr(),
        "browser test: price on screen {} ms after publishing",
        shown.as_millis()
    );

    // Three trades, three rows.
    let trades: Vec<Event> = vec![
        feed.trade("BTC", Side::Buy, 64_120.0, 0.25),
        feed.trade("BTC", Side::Sell, 64_125.5, 0.8),
        feed.trade("BTC", Side::Buy, 64_123.5, 1.5),
    ];
    for t in &trades {
        feed.publish(t).await?;
    }
    // Newest first, as the page lists them.
    let nonces: Vec<String> = trades
        .iter()
        .rev()
        .map(|t| t.nonce().as_str().to_owned())
        .collect();
    wait_trade_rows(browser, &nonces).await?;

    // The server dies: the page says it is reconnecting.
    tokio::time::timeout(LIMIT, server.kill()).await??;
    let text = browser
        .wait_for(
            "\"reconnecting\"",
            LIMIT,
            "const t = document.getElementById('conn-text').textContent; \
             return t.startsWith('reconnecting') ? t : null",
        )
        .await?;
    let _ = writeln!(
        std::io::stderr(),
        "browser test: server killed, page shows {text}"
    );

    // Back on the same ports: live again, re-subscribed.
    tokio::time::timeout(RECONNECT, server.restart()).await??;
    wait_nats(server.endpoint(), &feed).await?;
    wait_state(browser, "live", RECONNECT).await?;
    let during_outage = severe(&browser.new_console_entries().await?);
    let unexpected: Vec<_> = during_outage
        .iter()
        .filter(|e| !is_refused_websocket(e, &ws_addr.to_string()))
        .cloned()
        .collect();
    ensure!(
        unexpected.is_empty(),
        "console errors around the restart, other than refused reconnects:\n{}",
        lines(&unexpected)
    );
    let _ = writeln!(
        std::io::stderr(),
        "browser test: live again after the restart ({} refused reconnect(s) in the console)",
        during_outage.len()
    );

    // The restarted server has an empty de-dup window, so the same trades
    // published again (a retrying publisher) reach the page, which must drop
    // them by nonce. Then a new price and a new trade.
    for t in &trades {
        feed.publish(t).await?;
    }
    let shown = publish_and_see_price(browser, &feed, "BTC", 64_200.25, Some(2.44)).await?;
    ensure!(
        shown <= PRICE_ON_SCREEN,
        "after the restart, price took {shown:?} to reach the screen"
    );
    let _ = writeln!(
        std::io::stderr(),
        "browser test: after the restart, price on screen {} ms after publishing",
        shown.as_millis()
    );
    let fresh = feed.trade("BTC", Side::Sell, 64_200.25, 0.4);
    feed.publish(&fresh).await?;
    let mut all = nonces.clone();
    all.insert(0, fresh.nonce().as_str().to_owned());
    wait_trade_rows(browser, &all).await?;
    browser
        .wait_for(
            "3 duplicates dropped",
            LIMIT,
            "return document.getElementById('stat-dups').textContent === '3'",
        )
        .await?;
    let reconnects = browser
        .eval("return document.getElementById('stat-reconnects').textContent")
        .await?;
    ensure!(reconnects == "1", "reconnects shown: {reconnects}");

    // A token added from the form: the server already has its price, so the
    // subscribe brings it at once (the snapshot); then live prices follow.
    let doge = feed.price("DOGE", 0.1203, Some(-1.7));
    feed.publish(&doge).await?;
    browser
        .eval(
            "document.getElementById('add-token').value = 'DOGE'; \
             document.querySelector('#add-form button').click(); return true",
        )
        .await?;
    browser
        .wait_for(
            "DOGE's snapshot price",
            LIMIT,
            "const c = document.querySelector('#prices tr[data-token=\"DOGE\"] td.price'); \
             return c !== null && c.dataset.value === '0.1203'",
        )
        .await?;
    let shown = publish_and_see_price(browser, &feed, "DOGE", 0.1207, Some(-1.4)).await?;
    ensure!(shown <= PRICE_ON_SCREEN, "DOGE price took {shown:?}");

    // A full screen for the picture: every panel fed.
    fill_the_screen(browser, &mut feed).await?;
    let errors = severe(&browser.new_console_entries().await?);
    ensure!(
        errors.is_empty(),
        "console errors at the end:\n{}",
        lines(&errors)
    );
    let png = browser.screenshot().await?;
    save(&png, "live-page.png")
}

/// Opened from disk: plain Chromium refuses ES modules from `file://`, and
/// the page must say so rather than sit blank; Chromium that allows them
/// (`--allow-file-access-from-files`, like Firefox by default) runs it fully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_opened_as_a_file() {
    let Some(tools) = Tools::find_or_skip("page opened as a file") else {
        return;
    };
    let nats = NatsServer::start().await.expect("NATS starts");
    let server = TestServer::start(&nats.url()).await.expect("server starts");
    let feed = Feed::connect(&nats.url()).await.expect("NATS client");
    wait_nats(server.endpoint(), &feed)
        .await
        .expect("server on NATS");
    let url = page_url(server.endpoint(), "file");

    let browser = Browser::launch(&tools, &[]).await.expect("Chromium starts");
    let refused = async {
        browser.goto(&url).await?;
        browser
            .wait_for(
                "the notice about refused modules",
                LIMIT,
                "const h = document.getElementById('module-help'); \
                 return h && !h.hidden ? document.getElementById('conn-text').textContent : null",
            )
            .await
    }
    .await;
    browser.close().await;
    assert_eq!(refused.expect("notice shown"), "scripts blocked");

    let mut browser = Browser::launch(&tools, &["--allow-file-access-from-files"])
        .await
        .expect("Chromium starts");
    let result = async {
        browser.goto(&url).await?;
        wait_state(&browser, "live", LIMIT).await?;
        let shown = publish_and_see_price(&browser, &feed, "BTC", 1234.5, None).await?;
        ensure!(shown <= PRICE_ON_SCREEN, "price took {shown:?}");
        let errors = severe(&browser.new_console_entries().await?);
        ensure!(errors.is_empty(), "console errors:\n{}", lines(&errors));
        anyhow::Ok(())
    }
    .await;
    browser.close().await;
    result.expect("the page works from file:// where modules are allowed");
}

/// `<scheme>` `http`: the page served by the server (`https`: over TLS,
/// as `localhost`, the test certificates' name); `file`: `client/` on
/// disk. Either way the WebSocket URL and a token come in the query string.
pub(super) fn page_url(endpoint: &Endpoint, scheme: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("ws", &endpoint.ws_url())
        .append_pair("token", &endpoint.token("browser-test"))
        .append_pair("tokens", &WATCHED.join(","))
        .finish();
    match scheme {
        "file" => format!("file://{}/index.html?{query}", client_dir().display()),
        "https" => format!("https://localhost:{}/?{query}", endpoint.http_addr.port()),
        _ => format!("http://{}/?{query}", endpoint.http_addr),
    }
}

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../client")
        .canonicalize()
        .expect("client/ exists")
}

/// Waits until the server is subscribed on NATS, and NATS knows it.
pub(super) async fn wait_nats(endpoint: &Endpoint, feed: &Feed) -> anyhow::Result<()> {
    endpoint.wait_for_stats(LIMIT, |s| s.nats_connected).await?;
    feed.flush().await
}

pub(super) async fn wait_state(
    browser: &Browser,
    state: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let script = format!("return document.getElementById('conn').dataset.state === '{state}'");
    browser
        .wait_for(&format!("state {state}"), limit, &script)
        .await
        .map(drop)
}

/// Publishes a price and returns how long it took to appear in its row.
pub(super) async fn publish_and_see_price(
    browser: &Browser,
    feed: &Feed,
    token: &str,
    price: f64,
    change_24h: Option<f64>,
) -> anyhow::Result<Duration> {
    let event = feed.price(token, price, change_24h);
    let script = format!(
        "const c = document.querySelector('#prices tr[data-token=\"{token}\"] td.price'); \
         return c !== null && c.dataset.value !== '' && Number(c.dataset.value) === {price:?}"
    );
    let start = Instant::now();
    feed.publish(&event).await?;
    browser
        .wait_for(&format!("{token} at {price}"), LIMIT, &script)
        .await?;
    Ok(start.elapsed())
}

/// Waits until the trade rows are exactly `nonces`, newest first, and checks
/// no row is there twice.
async fn wait_trade_rows(browser: &Browser, nonces: &[String]) -> anyhow::Result<()> {
    let rows_js =
        "return [...document.querySelectorAll('#trades tbody tr')].map(r => r.dataset.nonce)";
    let deadline = Instant::now() + LIMIT;
    loop {
        let rows: Vec<String> = serde_json::from_value(browser.eval(rows_js).await?)?;
        let unique: HashSet<&String> = rows.iter().collect();
        ensure!(
            unique.len() == rows.len(),
            "duplicated trade rows: {rows:?}"
        );
        if rows == nonces {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("trade rows are {rows:?}, expected {nonces:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Feeds every panel (volumes, 24 h changes, a two-tick batch of 24 tokens,
/// market figures) and waits until the page shows them.
async fn fill_the_screen(browser: &Browser, feed: &mut Feed) -> anyhow::Result<()> {
    const BATCH: [(&str, f64); 24] = [
        ("BTC", 64_200.25),
        ("ETH", 3_161.4),
        ("SOL", 148.92),
        ("BNB", 581.3),
        ("XRP", 0.5512),
        ("ADA", 0.4487),
        ("DOGE", 0.1203),
        ("AVAX", 35.12),
        ("DOT", 7.013),
        ("LINK", 15.08),
        ("TRX", 0.1198),
        ("MATIC", 0.7021),
        ("LTC", 80.44),
        ("ATOM", 9.012),
        ("UNI", 8.003),
        ("XLM", 0.1101),
        ("NEAR", 5.004),
        ("APT", 9.021),
        ("ARB", 1.101),
        ("OP", 2.503),
        ("FIL", 6.012),
        ("ICP", 12.04),
        ("PEPE", 0.000_010_12),
        ("SHIB", 0.000_019_87),
    ];
    for (i, (tick, scale)) in [(0, 1.0), (1, 1.0007)].into_iter().enumerate() {
        let entries: Vec<(&str, f64, f64)> = BATCH
            .iter()
            .enumerate()
            .map(|(k, &(t, p))| {
                // Second tick: some up, some down, for the colours.
                let s = if tick == 1 && k % 3 == 0 {
                    2.0 - scale
                } else {
                    scale
                };
                (t, p * s, 1.0e5 * (k + 3) as f64)
            })
            .collect();
        feed.publish(&feed.batch(&entries)).await?;
        if i == 0 {
            browser
                .wait_for(
                    "24 batch tiles",
                    LIMIT,
                    "return document.querySelectorAll('#batch .tile').length === 24",
                )
                .await?;
        }
    }
    for (token, volume) in [("BTC", 2.54e9), ("ETH", 1.22e9), ("SOL", 3.1e8)] {
        feed.publish(&feed.volume(token, volume)).await?;
    }
    feed.publish(&feed.price("ETH", 3_161.4, Some(-0.84)))
        .await?;
    feed.publish(&feed.price("SOL", 148.92, Some(5.12))).await?;
    feed.publish(&feed.price("ETH", 3_158.05, Some(-0.95)))
        .await?;
    for (side, price, amount) in [(Side::Buy, 3_161.4, 2.5), (Side::Sell, 3_158.05, 4.0)] {
        let t = feed.trade("ETH", side, price, amount);
        feed.publish(&t).await?;
    }
    let t = feed.trade("SOL", Side::Buy, 148.92, 120.0);
    feed.publish(&t).await?;
    feed.publish(&feed.market(4.87e10, 1_283_442, 24)).await?;
    browser
        .wait_for(
            "market figures, volumes and the last price",
            LIMIT,
            "return document.getElementById('stat-market').textContent.includes('trades') \
             && document.querySelector('#prices tr[data-token=\"SOL\"] td.volume').textContent !== '–' \
             && document.querySelector('#prices tr[data-token=\"ETH\"] td.price').dataset.value === '3158.05' \
             && document.querySelectorAll('#trades tbody tr').length === 7",
        )
        .await
        .map(drop)
}

/// Chromium logs a refused WebSocket connection as a console error; while
/// the server is down that is expected, and nothing else is.
fn is_refused_websocket(entry: &ConsoleEntry, ws_addr: &str) -> bool {
    entry
        .message
        .contains(&format!("WebSocket connection to 'ws://{ws_addr}/ws"))
        && entry.message.contains("failed")
}

pub(super) fn severe(entries: &[ConsoleEntry]) -> Vec<ConsoleEntry> {
    entries
        .iter()
        .filter(|e| e.level == "SEVERE")
        .cloned()
        .collect()
}

pub(super) fn lines(entries: &[ConsoleEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `target/test-output/browser/<name>`, next to the test binary's target.
pub(super) fn save(png: &[u8], name: &str) -> anyhow::Result<PathBuf> {
    let dir = output_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn output_dir() -> anyhow::Result<PathBuf> {
    // The test binary is target/<profile>/deps/it-<hash>.
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .context("the test binary is not under target/<profile>/deps")?;
    Ok(target.join("test-output").join("browser"))
}
