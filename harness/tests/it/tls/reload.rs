//! The certificate reloaded without a restart: on a change of its files
//! and on SIGHUP, with connections kept; a bad reload keeps the old one.

use odin_harness::nats::NatsServer;
use odin_harness::server::ServerProcess;
use odin_harness::tls::presented;
use odin_harness::wait::{LIMIT, eventually};

use super::support::{TlsStack, certificate_files, flags, receives, subscribed_client};
use crate::support::{Publisher, wait_subscribed_in_nats};

#[tokio::test]
async fn a_new_certificate_on_disk_is_served_to_new_connections_while_old_ones_keep_receiving() {
    let mut stack = TlsStack::start().await;
    let addr = stack.endpoint().ws_addr;
    assert_eq!(
        presented(&stack.trust, addr).await.unwrap(),
        stack.first.der
    );
    // The HTTP port speaks TLS with the same certificate.
    let http = stack.endpoint().http_addr;
    assert_eq!(
        presented(&stack.trust, http).await.unwrap(),
        stack.first.der
    );
    let mut old = stack.subscribed_client().await;
    let nonce = stack.publisher.price("BTC", 1.0).await;
    receives(&mut old, &nonce).await;

    let second = stack.ca.issue(2).unwrap();
    second.write(&stack.files.cert, &stack.files.key).unwrap();
    eventually(LIMIT, "the new certificate served", async || {
        (presented(&stack.trust, addr).await.ok()? == second.der).then_some(())
    })
    .await;
    assert_eq!(presented(&stack.trust, http).await.unwrap(), second.der);
    let stats = stack.endpoint().stats().await.unwrap();
    assert_eq!((stats.tls_reloads, stats.tls_reload_failures), (1, 0));

    // The connection made with the old certificate is still up and
    // receiving; a new one (new certificate) receives too.
    let mut new = stack.subscribed_client().await;
    let nonce = stack.publisher.price("BTC", 2.0).await;
    receives(&mut old, &nonce).await;
    receives(&mut new, &nonce).await;
    assert_eq!(old.stats().connects, 1, "{:?}", old.stats());
    assert_eq!(old.stats().disconnects, 0, "{:?}", old.stats());
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_certificate_and_is_counted() {
    let mut stack = TlsStack::start().await;
    let addr = stack.endpoint().ws_addr;
    let mut client = stack.subscribed_client().await;

    // Not PEM at all.
    std::fs::write(&stack.files.cert, "not a certificate\n").unwrap();
    stack
        .endpoint()
        .wait_for_stats(LIMIT, |s| s.tls_reload_failures == 1)
        .await
        .unwrap();
    assert_eq!(
        presented(&stack.trust, addr).await.unwrap(),
        stack.first.der
    );

    // A good certificate with another certificate's key.
    let other = stack.ca.issue(3).unwrap();
    std::fs::write(&stack.files.cert, &stack.first.chain_pem).unwrap();
    std::fs::write(&stack.files.key, &other.key_pem).unwrap();
    let stats = stack
        .endpoint()
        .wait_for_stats(LIMIT, |s| s.tls_reload_failures == 2)
        .await
        .unwrap();
    assert_eq!(stats.tls_reloads, 0);
    assert_eq!(
        presented(&stack.trust, addr).await.unwrap(),
        stack.first.der
    );

    let nonce = stack.publisher.price("BTC", 3.0).await;
    receives(&mut client, &nonce).await;
    assert_eq!(client.stats().connects, 1);
}

#[tokio::test]
async fn sighup_reloads_the_certificate_at_once_and_connections_stay() {
    let nats = NatsServer::start().await.unwrap();
    let (ca, first, _dir, files) = certificate_files();
    let trust = ca.client().unwrap();
    let flags = flags(&files);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut server = ServerProcess::start(&nats.url(), &flags).await.unwrap();
    server.trust(trust.clone());
    let endpoint = server.endpoint().clone();
    let subjects = odin_protocol::Subjects::default().all();
    wait_subscribed_in_nats(&nats, &endpoint, &subjects).await;
    let mut client = subscribed_client(&endpoint).await;
    assert_eq!(
        presented(&trust, endpoint.ws_addr).await.unwrap(),
        first.der
    );

    // SIGHUP reloads even unchanged files (the poll never does: it loads
    // a change only), so the count proves the signal did it.
    server.signal("HUP").unwrap();
    endpoint
        .wait_for_stats(LIMIT, |s| s.tls_reloads == 1)
        .await
        .unwrap();

    let second = ca.issue(2).unwrap();
    second.write(&files.cert, &files.key).unwrap();
    server.signal("HUP").unwrap();
    eventually(LIMIT, "the new certificate served", async || {
        (presented(&trust, endpoint.ws_addr).await.ok()? == second.der).then_some(())
    })
    .await;

    let mut publisher = Publisher::connect(&nats.url()).await;
    let nonce = publisher.price("BTC", 4.0).await;
    receives(&mut client, &nonce).await;
    assert_eq!(client.stats().connects, 1, "{:?}", client.stats());
    assert!(
        server.logs().iter().all(|l| !l.contains("panicked")),
        "{:?}",
        server.logs()
    );
}
