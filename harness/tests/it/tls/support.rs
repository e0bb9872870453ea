//! A gateway serving TLS from files in a temporary directory, issued by a
//! throw-away CA its clients trust, with NATS and a publisher.

use std::path::PathBuf;

use odin_harness::client::{ClientConfig, ClientEvent, TestClient};
use odin_harness::nats::NatsServer;
use odin_harness::server::{Endpoint, TestServer, test_config};
use odin_harness::tls::{ClientTls, TestCa, TestCertificate};
use odin_harness::wait::LIMIT;
use odin_server::ServerConfig;
use odin_server::tls::TlsFiles;

use crate::support::{Publisher, wait_subscribed_in_nats};

/// NATS, a TLS gateway and what its clients trust.
pub(crate) struct TlsStack {
    /// Kept running for the test's length.
    _nats: NatsServer,
    pub(crate) server: TestServer,
    pub(crate) publisher: Publisher,
    pub(crate) ca: TestCa,
    pub(crate) trust: ClientTls,
    /// The certificate the server started with (serial 1).
    pub(crate) first: TestCertificate,
    pub(crate) files: TlsFiles,
    _dir: tempfile::TempDir,
}

impl TlsStack {
    pub(crate) async fn start() -> TlsStack {
        Self::start_with(|_| {}).await
    }

    pub(crate) async fn start_with(tune: impl FnOnce(&mut ServerConfig)) -> TlsStack {
        let nats = NatsServer::start().await.expect("NATS starts");
        let (ca, first, dir, files) = certificate_files();
        let trust = ca.client().expect("a client trusting the CA");
        let mut config = test_config(&nats.url());
        config.tls = Some(files.clone());
        tune(&mut config);
        let server = TestServer::start_trusting(config, Some(trust.clone()))
            .await
            .expect("TLS server starts");
        let publisher = Publisher::connect(&nats.url()).await;
        let subjects = odin_protocol::Subjects::default().all();
        wait_subscribed_in_nats(&nats, server.endpoint(), &subjects).await;
        TlsStack {
            _nats: nats,
            server,
            publisher,
            ca,
            trust,
            first,
            files,
            _dir: dir,
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        self.server.endpoint()
    }

    /// A reference client over `wss://`, subscribed to `token.BTC`.
    pub(crate) async fn subscribed_client(&self) -> TestClient {
        subscribed_client(self.endpoint()).await
    }
}

/// A CA, its first server certificate (serial 1) written to files in a new
/// temporary directory, and the files.
pub(crate) fn certificate_files() -> (TestCa, TestCertificate, tempfile::TempDir, TlsFiles) {
    let ca = TestCa::new().expect("a test CA");
    let first = ca.issue(1).expect("a server certificate");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    first.write(&files.cert, &files.key).expect("written");
    (ca, first, dir, files)
}

/// A reference client of `endpoint` over `wss://`, subscribed to
/// `token.BTC`.
pub(crate) async fn subscribed_client(endpoint: &Endpoint) -> TestClient {
    let url = endpoint.ws_url();
    assert!(url.starts_with("wss://"), "{url}");
    let tls = endpoint.tls.clone().expect("a TLS endpoint");
    let config = ClientConfig::new(url, ["token.BTC"]).with_tls(tls);
    let token = endpoint.token("tls-user");
    let mut client = TestClient::spawn(config, move || token.clone());
    client
        .wait_subscribed(LIMIT)
        .await
        .expect("subscribed over wss://");
    client
}

/// Waits until `client` receives `published` (the event's JSON, as the
/// publisher returns it).
pub(crate) async fn receives(client: &mut TestClient, published: &str) {
    let published: serde_json::Value = serde_json::from_str(published).expect("JSON");
    let nonce = published["nonce"].clone();
    client
        .wait_for(&format!("the event {nonce}"), LIMIT, |event| match event {
            ClientEvent::Message { message, .. } => {
                let value = serde_json::to_value(&message).expect("serializable");
                (value["nonce"] == nonce).then_some(())
            }
            _ => None,
        })
        .await
        .expect("the event arrives");
}

/// Where the certificate files are, as flags.
pub(crate) fn flags(files: &TlsFiles) -> [String; 4] {
    let path = |p: &PathBuf| p.display().to_string();
    [
        "--tls-cert".into(),
        path(&files.cert),
        "--tls-key".into(),
        path(&files.key),
    ]
}
