//! What a client's messages mean: subscribe, unsubscribe, ping and refresh
//! (a fresh token moves the connection's expiry, version 2), with the
//! bad-input rules of `PROTOCOL.md` §5 (invalid messages, invalid channels,
//! the channel limit, the rate limit, and the close after ten strikes).
//!
//! The session never touches the socket: it turns one text payload into
//! frames pushed to the connection's outbox and, at worst, a close request.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use odin_protocol::close::POLICY_VIOLATION;
use odin_protocol::message::{
    ChannelRequest, ChannelsAck, ErrorCode, Pong, RefreshRequest, Refreshed,
};
use odin_protocol::{Channel, ClientMessage, ServerMessage};

use crate::auth::AuthError;
use crate::expiry::Deadline;
use crate::outbox::{CloseRequest, Outbox};
use crate::router::ConnId;
use crate::shared::Shared;

/// Invalid or rate-limited messages within [`STRIKE_WINDOW`] that close the
/// connection with `1008`.
pub(crate) const MAX_STRIKES: usize = 10;
/// The window strikes are counted in.
pub(crate) const STRIKE_WINDOW: Duration = Duration::from_secs(60);

/// Who the connection's token named, and when the connection ends: a
/// `refresh` must name the same `sub`, and moves the end.
pub(crate) struct Subject {
    /// The `sub` of the token given at connect.
    pub(crate) sub: String,
    /// The connection's expiry, shared with the writer.
    pub(crate) deadline: Deadline,
}

/// One connection's subscriptions and abuse counters.
pub(crate) struct Session {
    conn: ConnId,
    subject: Subject,
    outbox: Arc<Outbox>,
    shared: Arc<Shared>,
    /// Invariant: at most `config.max_channels` entries; mirrors the router.
    channels: HashSet<Channel>,
    limiter: DefaultDirectRateLimiter,
    /// Times of recent strikes, oldest first, none older than the window.
    strikes: VecDeque<Instant>,
}

impl Session {
    pub(crate) fn new(
        conn: ConnId,
        outbox: Arc<Outbox>,
        shared: Arc<Shared>,
        subject: Subject,
    ) -> Self {
        let per_second =
            NonZeroU32::new(shared.config.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(shared.config.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            conn,
            subject,
            outbox,
            limiter: RateLimiter::direct_with_clock(
                Quota::per_second(per_second).allow_burst(burst),
                shared.rate_clock.clone(),
            ),
            shared,
            channels: HashSet::new(),
            strikes: VecDeque::new(),
        }
    }

    /// Handles one text message from the client.
    pub(crate) fn on_text(&mut self, text: &str) {
        if self.limiter.check().is_err() {
            let id = request_id(text);
            self.reject(
                ErrorCode::RateLimited,
                "rate limit exceeded; slow down".into(),
                id,
            );
            return;
        }
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Subscribe(req)) => self.subscribe(req),
            Ok(ClientMessage::Unsubscribe(req)) => self.unsubscribe(req),
            Ok(ClientMessage::Ping(req)) => {
                let frame = self.shared.frame(|timestamp, nonce| {
                    ServerMessage::Pong(Pong {
                        id: req.id,
                        timestamp,
                        nonce,
                    })
                });
                self.outbox.push(frame);
            }
            Ok(ClientMessage::Refresh(req)) => self.refresh(req),
            Err(e) => {
                let id = request_id(text);
                self.reject(
                    ErrorCode::InvalidMessage,
                    format!("invalid message: {e}"),
                    id,
                );
            }
        }
    }

    /// A ping or pong frame from the client: it uses the same budget as a
    /// message. Returns whether it may be acted on (a ping answered); over
    /// the budget it gets `rate_limited` and counts as a strike, so a flood
    /// of control frames ends in `1008` like any other.
    pub(crate) fn on_control_frame(&mut self) -> bool {
        if self.limiter.check().is_ok() {
            return true;
        }
        self.reject(
            ErrorCode::RateLimited,
            "rate limit exceeded (ping and pong frames count); slow down".into(),
            None,
        );
        false
    }

    /// Sends an error that counts as a strike; the tenth strike within the
    /// window also closes the connection with `1008`, after the error.
    fn reject(&mut self, code: ErrorCode, message: String, id: Option<String>) {
        self.outbox
            .push(self.shared.error_frame(code, message, id, None));
        let now = Instant::now();
        while self
            .strikes
            .front()
            .is_some_and(|&t| now.duration_since(t) >= STRIKE_WINDOW)
        {
            self.strikes.pop_front();
        }
        self.strikes.push_back(now);
        if self.strikes.len() >= MAX_STRIKES {
            self.outbox.close(CloseRequest {
                code: POLICY_VIOLATION,
                drain: true,
                reply: false,
            });
        }
    }

    /// Checks a fresh token like the one given at connect; a valid one for
    /// the same `sub` moves the connection's expiry to its `exp`. A refused
    /// one is a strike and changes nothing: the old expiry still holds.
    fn refresh(&mut self, req: RefreshRequest) {
        let verified = match self.shared.authenticator.verify(&req.token) {
            Ok(v) if v.sub == self.subject.sub => v,
            Ok(_) => {
                self.refuse_refresh(
                    AuthError::Invalid("the token is for another sub".into()),
                    req.id,
                );
                return;
            }
            Err(e) => {
                self.refuse_refresh(e, req.id);
                return;
            }
        };
        self.subject.deadline.move_to(verified.expires_at);
        let exp = verified
            .expires_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let frame = self.shared.frame(|timestamp, nonce| {
            ServerMessage::Refreshed(Refreshed {
                exp,
                id: req.id,
                timestamp,
                nonce,
            })
        });
        self.outbox.push(frame);
    }

    fn refuse_refresh(&mut self, error: AuthError, id: Option<String>) {
        self.shared.metrics.auth_failures.inc();
        let code = match error {
            AuthError::Expired => ErrorCode::AuthExpired,
            AuthError::Missing | AuthError::Invalid(_) => ErrorCode::AuthInvalid,
        };
        self.reject(code, format!("refresh refused: {error}"), id);
    }

    fn subscribe(&mut self, req: ChannelRequest) {
        let max = self.shared.config.max_channels;
        let (valid, errors) = parse_channels(&req.channels);
        let mut acked = Vec::new();
        let mut newly = Vec::new();
        let mut refused_for_limit = 0usize;
        // The first channel the limit refused, for the error's `channel`.
        let mut first_refused = None;
        for (raw, ch) in valid {
            if self.channels.contains(&ch) {
                acked.push(raw.to_owned());
            } else if self.channels.len() < max {
                self.channels.insert(ch.clone());
                newly.push(ch);
                acked.push(raw.to_owned());
            } else {
                refused_for_limit += 1;
                first_refused.get_or_insert(raw);
            }
        }
        let ack = self.ack(acked, &req.id, ServerMessage::Subscribed);
        self.shared
            .router
            .subscribe(self.conn, &self.outbox, &newly, ack);
        self.send_channel_errors(errors, &req.id);
        if refused_for_limit > 0 {
            let message = format!(
                "channel limit of {max} reached; {refused_for_limit} channel(s) not subscribed"
            );
            let frame = self.shared.error_frame(
                ErrorCode::TooManyChannels,
                message,
                req.id,
                first_refused.map(str::to_owned),
            );
            self.outbox.push(frame);
        }
    }

    fn unsubscribe(&mut self, req: ChannelRequest) {
        let (valid, errors) = parse_channels(&req.channels);
        let mut acked = Vec::new();
        let mut removed = Vec::new();
        for (raw, ch) in valid {
            if self.channels.remove(&ch) {
                removed.push(ch);
            }
            acked.push(raw.to_owned());
        }
        self.shared.router.unsubscribe(self.conn, &removed);
        let ack = self.ack(acked, &req.id, ServerMessage::Unsubscribed);
        self.outbox.push(ack);
        self.send_channel_errors(errors, &req.id);
    }

    /// A `subscribed`/`unsubscribed` frame (`variant`) for `channels`.
    fn ack(
        &self,
        channels: Vec<String>,
        id: &Option<String>,
        variant: fn(ChannelsAck) -> ServerMessage,
    ) -> crate::outbox::Frame {
        self.shared.frame(|timestamp, nonce| {
            variant(ChannelsAck {
                channels,
                id: id.clone(),
                timestamp,
                nonce,
            })
        })
    }

    /// One `invalid_channel` error per refused channel, naming it.
    fn send_channel_errors(&self, errors: Vec<(&str, String)>, id: &Option<String>) {
        for (channel, message) in errors {
            let frame = self.shared.error_frame(
                ErrorCode::InvalidChannel,
                message,
                id.clone(),
                Some(channel.to_owned()),
            );
            self.outbox.push(frame);
        }
    }

    /// Leaves every channel; called once when the connection ends.
    pub(crate) fn finish(&mut self) {
        let channels: Vec<Channel> = self.channels.drain().collect();
        self.shared.router.unsubscribe(self.conn, &channels);
    }
}

/// The distinct channels of a request, parsed: the valid ones with their
/// text, and each invalid one with an error message naming it.
type Parsed<'a> = (Vec<(&'a str, Channel)>, Vec<(&'a str, String)>);

fn parse_channels(channels: &[String]) -> Parsed<'_> {
    let mut seen = HashSet::new();
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for raw in channels {
        if !seen.insert(raw.as_str()) {
            continue;
        }
        match Channel::parse(raw) {
            Ok(ch) => valid.push((raw.as_str(), ch)),
            Err(e) => errors.push((raw.as_str(), format!("invalid channel {raw:?}: {e}"))),
        }
    }
    (valid, errors)
}

/// The `id` of a message that failed to parse, when it has a string one, so
/// the error can still be matched to its request.
fn request_id(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<serde_json::Value>,
    }
    match serde_json::from_str::<IdOnly>(text).ok()?.id? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn recovers_string_ids_only() {
        assert_eq!(request_id(r#"{"type":"x","id":"7"}"#), Some("7".into()));
        assert_eq!(request_id(r#"{"type":"x","id":7}"#), None);
        assert_eq!(request_id("not json"), None);
    }
}
