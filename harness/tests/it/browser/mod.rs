//! The client page (`client/`) in a real headless Chromium, its JavaScript
//! modules' unit tests, and a syntax check of the Docker files that run the
//! whole system.
//!
//! Where Chromium, chromedriver or Node is missing, a test prints
//! `SKIPPED: browser test: <reason>` and returns.

mod chrome;
mod deploy;
mod feed;
mod modules;
mod page;
