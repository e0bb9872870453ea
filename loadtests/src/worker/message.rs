//! The worker protocol's messages, whichever transport carries them: each
//! is one JSON document, a line on a local worker's pipes
//! ([`super::pipes`]) or one NATS message for a worker on another host
//! ([`super::bus`]).
//!
//! Worker → coordinator: [`FromWorker::Ready`] once its users are in, then
//! [`FromWorker::Report`] (or [`FromWorker::Failed`]). Coordinator → worker:
//! [`ToWorker::Publish`] when the publisher starts, [`ToWorker::Totals`]
//! after the drain.

use std::time::Duration;

use anyhow::Context;
use odin_publisher::Totals;
use serde::{Deserialize, Serialize};

use crate::report::RunReport;
use crate::scenario::Scenario;

/// What a worker tells its coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FromWorker {
    /// Its users are in: the coordinator may publish once every worker is.
    Ready(Ready),
    /// Its share judged (histograms in their serialized form, counters),
    /// for [`crate::merge`].
    Report(Box<RunReport>),
    /// Its share could not run; why.
    Failed {
        /// The error, with its causes.
        error: String,
    },
}

/// A worker's users are in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ready {
    /// Users connected and subscribed.
    pub live: usize,
    /// Users that gave up.
    pub failed: usize,
    /// When it launched its first user, protocol milliseconds on the
    /// coordinator's clock (a remote worker's corrected by its offset).
    pub ramp_started_ms: f64,
    /// When its last user was in, likewise.
    pub all_in_ms: f64,
    /// Its clock against the coordinator's, when measured (remote workers).
    pub clock: Option<super::clock::ClockOffset>,
}

/// What a coordinator tells a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ToWorker {
    /// The publisher starts now: every event younger than `started_ms`
    /// (protocol milliseconds, the publisher's clock) belongs to the run.
    #[serde(rename_all = "camelCase")]
    Publish {
        /// The mark.
        started_ms: f64,
    },
    /// The publisher is done and the drain is over: what it published, and
    /// how long publishing took.
    #[serde(rename_all = "camelCase")]
    Totals {
        /// The publisher's totals, for the loss accounting.
        totals: Box<Totals>,
        /// Seconds of publishing, for the throughput.
        publish_secs: f64,
    },
}

/// One worker's part of a run: everything a worker started anywhere needs
/// to run it (a local worker gets the same on its command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// The worker's number in the run, from 0.
    pub index: usize,
    /// Its slice of the scenario: its users, numbered from `first_user`.
    pub scenario: Scenario,
    /// The gateway its users connect to, `ws://host:port/ws` as the worker
    /// reaches it.
    pub ws_url: String,
    /// The secret the users' tokens are signed with.
    pub jwt_secret: String,
    /// How long a user may take to connect and subscribe.
    #[serde(with = "as_millis")]
    pub connect_timeout: Duration,
    /// Generator scheduling lag (p99) beyond which its run is invalid.
    #[serde(with = "as_millis")]
    pub max_generator_lag: Duration,
}

/// The coordinator's answer to a worker asking to join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum JoinReply {
    /// Its part.
    Share(Box<Share>),
    /// No part left: every share is taken.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Durations as milliseconds, which any JSON reader understands.
mod as_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// One message as JSON.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    serde_json::to_vec(message).expect("protocol messages serialise")
}

/// One message from JSON, with what it was when it is none.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(bytes).with_context(|| {
        let text = String::from_utf8_lossy(bytes);
        let shown: String = text.chars().take(120).collect();
        format!("not a worker protocol message: {shown:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_it_was_written() {
        let totals = Totals {
            achieved_rate: 12.5,
            price_updates_by_token: [("t1".to_owned(), 3)].into(),
            ..Totals::default()
        };
        for message in [
            ToWorker::Publish {
                started_ms: 1_700_000_000_123.5,
            },
            ToWorker::Totals {
                totals: Box::new(totals),
                publish_secs: 4.25,
            },
        ] {
            assert_eq!(decode::<ToWorker>(&encode(&message)).unwrap(), message);
        }
        let ready = Ready {
            live: 7,
            failed: 1,
            ramp_started_ms: 1.5,
            all_in_ms: 2.5,
            clock: None,
        };
        match decode::<FromWorker>(&encode(&FromWorker::Ready(ready))).unwrap() {
            FromWorker::Ready(back) => assert_eq!(back, ready),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stray_line_is_named_in_the_error() {
        let e = decode::<ToWorker>(b"publish 12").unwrap_err();
        assert!(format!("{e:#}").contains("\"publish 12\""), "{e:#}");
    }
}
