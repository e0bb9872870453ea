//! Odin's test harness: everything a test, a benchmark or a load run needs to
//! bring the real system up on one machine and talk to it like a browser.

pub mod bins;
pub mod client;
pub mod nats;
pub mod publisher;
pub mod server;
