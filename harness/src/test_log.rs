//! What the tests ran on, for the summary `make test` prints after
//! `cargo test`: each NATS server started (and on which backend) and each
//! test skipped (and why), as one JSON line per fact in the file
//! `ODIN_TEST_LOG` names (`scripts/test-summary.py` reads it). `cargo test`
//! shows a skipped test as passed; the summary lists it as skipped.
//!
//! Without `ODIN_TEST_LOG` nothing is written. Every test process appends
//! whole lines with one write each, so parallel tests and test binaries can
//! share the file.

use std::io::Write as _;

use serde_json::json;

/// The environment variable naming the log file.
pub const TEST_LOG_ENV: &str = "ODIN_TEST_LOG";

/// Records that the running test cannot run here, and why; also says so on
/// the process's real stderr (`cargo test` captures `eprintln!` of passing
/// tests).
pub fn skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
    append(json!({ "skip": test_name(), "reason": reason }));
}

/// Records a NATS server started for the running test on `backend` (its
/// name, e.g. `container`; `nodes` > 1 for a cluster).
pub fn nats(backend: impl std::fmt::Display, nodes: usize) {
    append(json!({ "nats": backend.to_string(), "nodes": nodes, "test": test_name() }));
}

/// The running test's name: libtest names each test's thread after it.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("(unnamed thread)")
        .to_owned()
}

fn append(fact: serde_json::Value) {
    let Some(path) = std::env::var_os(TEST_LOG_ENV).filter(|p| !p.is_empty()) else {
        return;
    };
    let mut line = fact.to_string();
    line.push('\n');
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = written {
        let _ = writeln!(
            std::io::stderr(),
            "cannot append to {TEST_LOG_ENV}={}: {e}",
            std::path::Path::new(&path).display()
        );
    }
}
