//! Odin's test harness: everything a test, a benchmark or a load run needs to
//! bring the real system up on one machine and talk to it like a browser.

pub mod bins;
pub mod child;
pub mod client;
pub mod http;
pub mod nats;
pub mod process;
pub mod publisher;
pub mod server;
pub mod wait;

/// Reports a test that cannot run here, with its reason, on the process's
/// real stderr: `cargo test` captures `eprintln!` of passing tests, and a
/// skip must never look like a silent pass.
pub fn report_skip(reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}
