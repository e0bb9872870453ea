//! What the runner publishes from: the live simulation or a recording.
//!
//! Both yield steps (the messages due at one instant) against the same
//! schedule clock, so pacing, recording, counting and shutdown are written
//! once in the runner.

use odin_protocol::TokenId;

use crate::error::Error;
use crate::outgoing::Outgoing;
use crate::stamp::Stamper;

/// A time-ordered source of messages.
pub trait Source {
    /// When the next step is due, in seconds since the start of the run at
    /// speed 1; `None` when the source is exhausted.
    fn next_due(&self) -> Option<f64>;

    /// Appends the messages of the next step to `out`, stamping new events
    /// with `stamper`.
    fn step<S: Stamper>(&mut self, stamper: &mut S, out: &mut Vec<Outgoing>) -> Result<(), Error>;

    /// Drops every step due before `t` seconds without producing it, and
    /// returns how many price events (trades) were dropped.
    fn skip_before(&mut self, t: f64) -> Result<u64, Error>;

    /// The tokens that [`Outgoing::token`] indexes.
    fn token_ids(&self) -> Vec<TokenId>;
}
