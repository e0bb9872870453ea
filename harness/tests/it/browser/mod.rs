//! The client page (`client/`) in a real headless Chromium (against a
//! server the test starts, and, asked for, against a running gateway such as
//! the compose stack's), its JavaScript modules' unit tests, and a check of
//! the compose file that runs the whole system.
//!
//! Where Chromium, chromedriver or Node is missing, a test prints
//! `SKIPPED: browser test: <reason>` and returns.

mod chrome;
mod compressed;
mod deploy;
mod external;
mod feed;
mod modules;
mod page;
mod tls;
