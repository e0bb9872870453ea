//! A one-certificate trust store for Goose's HTTP clients.
//!
//! Goose builds a reqwest client for every user, and every build has rustls
//! read and parse the machine's whole CA store: about 2 ms of CPU per user
//! here, so a ramp of 5,000 users/s would need ten cores for certificates
//! alone (profiled: base64 and PEM decoding on top). Load users never speak
//! HTTPS — their WebSockets are plain `ws://` through tungstenite — so
//! `odin-load` points rustls at one CA certificate of the system store
//! (`SSL_CERT_FILE`) and an empty directory (`SSL_CERT_DIR`), whatever they
//! were (many machines set them to the whole store, as this one does).
//!
//! A machine with no system store at all (the `odin-load` image is `FROM
//! scratch`) gets [`FALLBACK`], one public root carried in the binary: with
//! no certificate, Goose cannot build its clients.

use std::path::{Path, PathBuf};

/// The system bundles looked for, in order (Debian, Fedora, others).
const BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The certificate used where the machine has no bundle: ISRG Root X1
/// (any one certificate will do; it is never used to verify anything).
const FALLBACK: &str = include_str!("../certs/isrg-root-x1.pem");

/// Set in the environment of a process that already runs with the small
/// store (so it does not restart itself again), and of its children.
const MARK: &str = "ODIN_LOAD_SMALL_TRUST_STORE";

/// The environment of a one-certificate store (`SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, and the mark), written under the temporary directory;
/// `None` when this process already has it or it cannot be written.
pub fn minimal_trust_env() -> Option<[(&'static str, PathBuf); 3]> {
    if std::env::var_os(MARK).is_some() {
        return None;
    }
    let pem = BUNDLES
        .iter()
        .find_map(|p| first_certificate(Path::new(p)))
        .unwrap_or_else(|| FALLBACK.to_owned());
    let dir = std::env::temp_dir().join("odin-load-trust");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).ok()?;
    let file = dir.join("ca.pem");
    // Written aside and renamed: several load processes may start at once.
    let partial = dir.join(format!("ca.pem.{}", std::process::id()));
    std::fs::write(&partial, pem).ok()?;
    std::fs::rename(&partial, &file).ok()?;
    Some([
        ("SSL_CERT_FILE", file),
        ("SSL_CERT_DIR", empty),
        (MARK, PathBuf::from("1")),
    ])
}

/// Restarts this program (same process, `exec`) with the one-certificate
/// store in its environment, unless it is there already or cannot be made.
/// Call first thing in `main`; returns only when nothing was changed.
pub fn reexec_with_minimal_trust_store() {
    use std::os::unix::process::CommandExt;
    let Some(env) = minimal_trust_env() else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(env)
        .exec();
    eprintln!(
        "odin-load: warning: could not restart with a small trust store ({error}); every user will load the system's CA store"
    );
}

/// The first PEM certificate block of a bundle.
fn first_certificate(bundle: &Path) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::fs::read_to_string(bundle).ok()?;
    let start = text.find(BEGIN)?;
    let end = start + text[start..].find(END)? + END.len();
    Some(format!("{}\n", &text[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_certificate_only() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(
            &bundle,
            "# comment\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(
            first_certificate(&bundle).unwrap(),
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"
        );
        std::fs::write(&bundle, "no certificate here").unwrap();
        assert_eq!(first_certificate(&bundle), None);
    }
}
