//! TLS for tests: a throw-away certificate authority that issues server
//! certificates for `localhost` and `127.0.0.1` (rcgen), the client side
//! that trusts it (rustls), and a probe that reports which certificate a
//! server presents to a new connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What a client trusts: a rustls client configuration.
pub type ClientTls = Arc<rustls::ClientConfig>;

/// A certificate authority that exists only for one test run.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate (leaf, then the CA: a full chain) and its key, as
/// PEM, with the leaf's DER to compare what a server presents.
#[derive(Debug, Clone)]
pub struct TestCertificate {
    /// The chain as PEM, leaf first.
    pub chain_pem: String,
    /// The leaf's private key as PEM (PKCS#8).
    pub key_pem: String,
    /// The leaf as DER: what a client sees as the peer's certificate.
    pub der: Vec<u8>,
    /// The leaf's SubjectPublicKeyInfo as DER (Chromium trusts a key by
    /// its SHA-256, `--ignore-certificate-errors-spki-list`).
    pub spki_der: Vec<u8>,
}

impl TestCa {
    /// A fresh CA with its own P-256 key.
    pub fn new() -> anyhow::Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Odin test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(TestCa { cert, key })
    }

    /// The CA's certificate as PEM: what clients are told to trust.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `localhost` and `127.0.0.1` with `serial`
    /// (distinct serials tell reloaded certificates apart), on a new key.
    pub fn issue(&self, serial: u64) -> anyhow::Result<TestCertificate> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("odin test server {serial}"));
        params.serial_number = Some(SerialNumber::from(serial.to_be_bytes().to_vec()));
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(TestCertificate {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            spki_der: key.public_key_der(),
        })
    }

    /// A client configuration trusting this CA only.
    pub fn client(&self) -> anyhow::Result<ClientTls> {
        client_trusting(self.pem().as_bytes())
    }
}

impl TestCertificate {
    /// The base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo: what
    /// Chromium's `--ignore-certificate-errors-spki-list` takes to trust
    /// this certificate's key.
    pub fn spki_sha256_base64(&self) -> String {
        let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let sha256 = suite
            .tls13()
            .expect("a TLS 1.3 suite")
            .common
            .hash_provider
            .hash(&self.spki_der);
        base64(sha256.as_ref())
    }

    /// Writes the key, then the chain (the server loads a change once both
    /// files have stayed the same for a second).
    pub fn write(&self, cert: &Path, key: &Path) -> anyhow::Result<()> {
        std::fs::write(key, &self.key_pem).with_context(|| format!("writing {}", key.display()))?;
        std::fs::write(cert, &self.chain_pem)
            .with_context(|| format!("writing {}", cert.display()))?;
        Ok(())
    }
}

/// A client configuration (ring, TLS 1.2 and 1.3, ALPN `http/1.1`)
/// trusting the certificates in `pem` (a CA or a self-signed server
/// certificate) and nothing else.
pub fn client_trusting(pem: &[u8]) -> anyhow::Result<ClientTls> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.context("a PEM certificate to trust")?)
            .context("a certificate rustls can trust")?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate to trust in the PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates in the PEM file `path`.
pub fn client_trusting_file(path: &Path) -> anyhow::Result<ClientTls> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    client_trusting(&pem).with_context(|| format!("{}", path.display()))
}

/// Opens TCP to `addr` and runs the client handshake for `host`.
pub async fn connect(
    tls: &ClientTls,
    addr: SocketAddr,
    host: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let name = ServerName::try_from(host.to_owned()).context("a TLS server name")?;
    TlsConnector::from(tls.clone())
        .connect(name, stream)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))
}

/// The leaf certificate (DER) a new connection to `addr` is shown.
pub async fn presented(tls: &ClientTls, addr: SocketAddr) -> anyhow::Result<Vec<u8>> {
    let stream = connect(tls, addr, "localhost").await?;
    let (_, session) = stream.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("the server presented no certificate")?;
    Ok(leaf.to_vec())
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
    }
}
