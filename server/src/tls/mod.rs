//! TLS on both listeners (`--tls-cert`, `--tls-key`): rustls with the `ring`
//! provider, TLS 1.3 preferred and TLS 1.2 allowed, only rustls's own
//! (AEAD, forward-secret) cipher suites, ALPN `http/1.1`.
//!
//! The certificate is read from its files at start ([`Tls::load`]) and again
//! on SIGHUP or when the files change ([`reload::watch`]): the new one is
//! handed to every handshake from then on, while connections already up
//! keep the session they made; sessions cached for resumption are dropped,
//! so no new connection resumes one made under the old certificate. A
//! reload that fails keeps the certificate
//! being served, logs why and counts the failure.
//!
//! [`lazy::LazyTls`] runs the handshake on the HTTP port inside the
//! connection's own task, so a slow client never holds up `accept`.

mod certificate;
pub(crate) mod lazy;
pub(crate) mod reload;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use certificate::Contents;
pub use certificate::{TlsError, TlsFiles};

/// The certificate being served and what serves it.
pub(crate) struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    /// The sessions clients may resume, emptied by every reload.
    sessions: Arc<Sessions>,
    /// The files' bytes as last loaded (or last tried and refused): a
    /// change on disk is a change from these.
    seen: Mutex<Contents>,
    /// Accepts a handshake with whatever certificate is current.
    acceptor: TlsAcceptor,
}

/// The outcome of one look at the files.
#[derive(Debug)]
pub(crate) enum Reload {
    /// The files are as they were: nothing done.
    Unchanged,
    /// A new certificate is served from now on.
    Loaded,
    /// The files hold no usable certificate; the old one is kept.
    Failed(TlsError),
}

impl Tls {
    /// Reads and checks the certificate and key: a server must not start
    /// without them.
    pub(crate) fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let contents = Contents::read(&files)?;
        let key = contents.certified_key(&files, &provider)?;
        let current = Arc::new(Current(RwLock::new(key)));
        let sessions = Arc::new(Sessions(RwLock::new(Sessions::fresh())));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = sessions.clone();
        Ok(Tls {
            files,
            provider,
            current,
            sessions,
            seen: Mutex::new(contents),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// What runs the server side of a handshake.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again and serves what they hold if it differs from
    /// what was last read (or always, with `force`: SIGHUP).
    pub(crate) fn reload(&self, force: bool) -> Reload {
        let contents = match Contents::read(&self.files) {
            Ok(contents) => contents,
            Err(e) => return Reload::Failed(e),
        };
        let mut seen = self.seen.lock();
        if !force && *seen == contents {
            return Reload::Unchanged;
        }
        let loaded = contents.certified_key(&self.files, &self.provider);
        // Refused contents are remembered too: the same broken files are
        // reported once, not every second.
        *seen = contents;
        match loaded {
            Ok(key) => {
                *self.current.0.write() = key;
                // A resumed session skips the certificate: without this a
                // client could go on under the old one (perhaps the very
                // key the reload replaces) until its session expired.
                *self.sessions.0.write() = Sessions::fresh();
                Reload::Loaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Whether the files differ from what was last read, without loading
    /// them (a file half-written is looked at again a second later).
    pub(crate) fn changed_on_disk(&self) -> Option<Contents> {
        let contents = Contents::read(&self.files).ok()?;
        (*self.seen.lock() != contents).then_some(contents)
    }
}

/// The certificate handed to each new handshake.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The session cache, replaced whole on every reload: sessions made under
/// an old certificate cannot be resumed under the new one.
#[derive(Debug)]
struct Sessions(RwLock<Arc<dyn StoresServerSessions>>);

impl Sessions {
    /// How many sessions are kept for resumption (rustls's default).
    const CAPACITY: usize = 256;

    fn fresh() -> Arc<dyn StoresServerSessions> {
        ServerSessionMemoryCache::new(Self::CAPACITY)
    }

    fn current(&self) -> Arc<dyn StoresServerSessions> {
        self.0.read().clone()
    }
}

impl StoresServerSessions for Sessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.current().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.current().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}
