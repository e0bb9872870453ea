//! Odin's test harness: everything a test, a benchmark or a load run needs to
//! bring the real system up on one machine and talk to it like a browser.

pub mod bins;
pub mod child;
pub mod client;
mod docker_cli;
pub mod host;
pub mod http;
pub mod nats;
pub mod process;
pub mod publisher;
pub mod server;
pub mod test_log;
pub mod tls;
pub mod wait;

/// Reports a test that cannot run here, with its reason: on the process's
/// real stderr, and in the test log `make test` summarises
/// ([`test_log::skip`]), so a skip never looks like a silent pass.
pub fn report_skip(reason: &str) {
    test_log::skip(reason);
}
