//! The JetStream stream the last prices are kept in: its settings
//! ([`stream_config`]), how an existing one differs from them
//! ([`differences`]), making sure it exists at start ([`ensure_stream`]),
//! and the JetStream context every read of it uses ([`jetstream`]).

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, ErrorCode};
use odin_protocol::Subjects;

use super::config::LastPricesConfig;

/// How long JetStream itself remembers a `Nats-Msg-Id` to drop a repeated
/// price. Short on purpose: the gateway de-duplicates at ingest anyway, a
/// repeated price carries the same bytes, and a long window would make the
/// NATS server hold every nonce published for that long.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2);

/// How long one JetStream request may take before it is retried: a cluster
/// that is electing a leader does not answer at all, and the next attempt
/// may reach a node that does.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The JetStream context of `nats` with the [`REQUEST_TIMEOUT`].
pub(super) fn jetstream(nats: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(nats.clone())
}

/// The stream Odin keeps its last prices in: every price subject, one
/// message per subject, on disk, `config.replicas` copies.
pub fn stream_config(config: &LastPricesConfig, subjects: &Subjects) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some(
            "Odin: the last price_update of every token (odin-server --last-prices-stream)".into(),
        ),
        subjects: vec![subjects.all_prices()],
        max_messages_per_subject: 1,
        discard: DiscardPolicy::Old,
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        // Any replica answers a direct get, so a catch-up after a reconnect
        // does not wait for a cluster that lost the stream's leader.
        allow_direct: true,
        ..stream::Config::default()
    }
}

/// What an existing stream does differently from `want` in the settings the
/// store relies on, one line each; empty when it matches.
pub fn differences(want: &stream::Config, have: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |what: &str, have: &dyn std::fmt::Debug, want: &dyn std::fmt::Debug| {
        let (have, want) = (format!("{have:?}"), format!("{want:?}"));
        if have != want {
            out.push(format!("{what} {have} (want {want})"));
        }
    };
    compare("subjects", &have.subjects, &want.subjects);
    compare(
        "max messages per subject",
        &have.max_messages_per_subject,
        &want.max_messages_per_subject,
    );
    // 0 replicas is the server's default of 1.
    compare(
        "replicas",
        &have.num_replicas.max(1),
        &want.num_replicas.max(1),
    );
    compare("allow direct", &have.allow_direct, &want.allow_direct);
    compare("retention", &have.retention, &want.retention);
    out
}

/// Returns the stream `want` names, creating it when it is missing. A stream
/// that exists with other settings is used as it is (it may be an
/// operator's) and the differences are logged as a warning.
pub async fn ensure_stream(
    js: &jetstream::Context,
    want: &stream::Config,
) -> anyhow::Result<stream::Stream> {
    match js.get_stream(&want.name).await {
        Ok(stream) => {
            let diff = differences(want, &stream.cached_info().config);
            if !diff.is_empty() {
                tracing::warn!(
                    stream = %want.name,
                    "the last-prices stream exists with other settings than odin-server \
                     would create: {}; using it as it is (delete it, or fix it with \
                     `nats stream edit`, to get the expected behaviour)",
                    diff.join("; ")
                );
            }
            Ok(stream)
        }
        Err(e) if is_not_found(&e) => {
            let stream = js
                .create_stream(want.clone())
                .await
                .with_context(|| format!("cannot create the last-prices stream {:?}", want.name))?;
            tracing::info!(
                stream = %want.name,
                subjects = ?want.subjects,
                replicas = want.num_replicas,
                "created the last-prices stream"
            );
            Ok(stream)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "cannot look up the last-prices stream {:?}",
            want.name
        ))),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(err) if err.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_keeps_one_price_per_token_on_every_price_subject() {
        let mut config = LastPricesConfig::new("ODIN_LAST_PRICES");
        config.replicas = 3;
        let want = stream_config(&config, &Subjects::new("acme").unwrap());
        assert_eq!(want.subjects, ["acme.token.*.price"]);
        assert_eq!(want.max_messages_per_subject, 1);
        assert_eq!(want.num_replicas, 3);
        assert!(differences(&want, &want).is_empty());
        let other = stream::Config {
            max_messages_per_subject: 5,
            num_replicas: 1,
            ..want.clone()
        };
        assert_eq!(
            differences(&want, &other),
            ["max messages per subject 5 (want 1)", "replicas 1 (want 3)"]
        );
    }
}
