//! Reading a certificate chain and its private key from PEM files, and
//! checking that they belong together, before anything is served with
//! them: a reload that fails here leaves the served certificate alone.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// The two PEM files TLS is served from (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM, "full chain").
    pub cert: PathBuf,
    /// The leaf's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The certificate file holds no certificate, or a broken one.
    #[error("{}: no PEM certificate in it ({why})", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        why: String,
    },
    /// The key file holds no private key, or a broken one.
    #[error("{}: no usable PEM private key in it ({why})", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What the PEM reader or the crypto provider said.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("the key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the settings.
    #[error("TLS settings refused: {0}")]
    Settings(#[from] rustls::Error),
}

/// The files' bytes as last read: a reload compares them to see a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Contents {
    /// Reads both files.
    pub(crate) fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(Contents {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
        })
    }

    /// The chain and key these bytes hold, checked to belong together.
    pub(crate) fn certified_key(
        &self,
        files: &TlsFiles,
        provider: &CryptoProvider,
    ) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate {
                path: files.cert.clone(),
                why: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Certificate {
                path: files.cert.clone(),
                why: "no CERTIFICATE block".into(),
            });
        }
        let key_error = |why: String| TlsError::Key {
            path: files.key.clone(),
            why,
        };
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| key_error(e.to_string()))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_error(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => Ok(Arc::new(certified)),
            // A key type whose public half the provider cannot tell: the
            // handshake itself will fail if they do not match.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Arc::new(certified))
            }
            Err(_) => Err(TlsError::Mismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            }),
        }
    }
}
