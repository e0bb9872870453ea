//! What a client's text message means: `subscribe`, `unsubscribe` and
//! `ping`, answered as `PROTOCOL.md` §3 says (`subscribed`, `unsubscribed`,
//! `pong`, and `error` for a bad message or channel). No rate limit and no
//! strike count: the forwarder trusts its clients.

use std::collections::HashSet;
use std::sync::Arc;

use odin_protocol::message::{ChannelRequest, ChannelsAck, ErrorCode, ErrorMessage, Pong};
use odin_protocol::{Channel, ClientMessage, ServerMessage};

use super::queue::Queue;
use super::shared::Shared;

/// One connection's subscriptions.
pub(crate) struct Session {
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    /// Invariant: mirrors the router; at most `max_channels` entries.
    channels: HashSet<Channel>,
}

impl Session {
    pub(crate) fn new(queue: Arc<Queue>, shared: Arc<Shared>) -> Self {
        Self {
            queue,
            shared,
            channels: HashSet::new(),
        }
    }

    /// Handles one text message.
    pub(crate) fn on_text(&mut self, text: &str) {
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(ClientMessage::Subscribe(req)) => self.subscribe(req),
            Ok(ClientMessage::Unsubscribe(req)) => self.unsubscribe(req),
            Ok(ClientMessage::Ping(req)) => {
                let pong = self.shared.message(|timestamp, nonce| {
                    ServerMessage::Pong(Pong {
                        id: req.id,
                        timestamp,
                        nonce,
                    })
                });
                self.queue.push(pong);
            }
            // The bare forwarder checks no token, so it has none to refresh.
            Ok(ClientMessage::Refresh(req)) => self.error(
                ErrorCode::InvalidMessage,
                "refresh: this forwarder checks no tokens".into(),
                req.id,
                None,
            ),
            Err(e) => self.error(
                ErrorCode::InvalidMessage,
                format!("invalid message: {e}"),
                None,
                None,
            ),
        }
    }

    fn subscribe(&mut self, req: ChannelRequest) {
        let mut acked = Vec::new();
        let mut newly = Vec::new();
        let mut refused = 0usize;
        let mut first_refused = None;
        let mut invalid = Vec::new();
        for raw in dedup(&req.channels) {
            match Channel::parse(raw) {
                Ok(ch) if self.channels.contains(&ch) => acked.push(raw.to_owned()),
                Ok(ch) if self.channels.len() < self.shared.max_channels => {
                    self.channels.insert(ch.clone());
                    newly.push(ch);
                    acked.push(raw.to_owned());
                }
                Ok(_) => {
                    refused += 1;
                    first_refused.get_or_insert(raw);
                }
                Err(e) => invalid.push((raw, format!("invalid channel {raw:?}: {e}"))),
            }
        }
        let ack = self.ack(acked, &req.id, ServerMessage::Subscribed);
        self.shared.router.subscribe(&newly, &self.queue, ack);
        for (channel, message) in invalid {
            let channel = Some(channel.to_owned());
            self.error(ErrorCode::InvalidChannel, message, req.id.clone(), channel);
        }
        if refused > 0 {
            let max = self.shared.max_channels;
            let message =
                format!("channel limit of {max} reached; {refused} channel(s) not subscribed");
            let channel = first_refused.map(str::to_owned);
            self.error(ErrorCode::TooManyChannels, message, req.id, channel);
        }
    }

    fn unsubscribe(&mut self, req: ChannelRequest) {
        let mut acked = Vec::new();
        let mut removed = Vec::new();
        let mut invalid = Vec::new();
        for raw in dedup(&req.channels) {
            match Channel::parse(raw) {
                Ok(ch) => {
                    if self.channels.remove(&ch) {
                        removed.push(ch);
                    }
                    acked.push(raw.to_owned());
                }
                Err(e) => invalid.push((raw, format!("invalid channel {raw:?}: {e}"))),
            }
        }
        self.shared.router.unsubscribe(&removed, &self.queue);
        self.queue
            .push(self.ack(acked, &req.id, ServerMessage::Unsubscribed));
        for (channel, message) in invalid {
            let channel = Some(channel.to_owned());
            self.error(ErrorCode::InvalidChannel, message, req.id.clone(), channel);
        }
    }

    fn ack(
        &self,
        channels: Vec<String>,
        id: &Option<String>,
        variant: fn(ChannelsAck) -> ServerMessage,
    ) -> bytes::Bytes {
        self.shared.message(|timestamp, nonce| {
            variant(ChannelsAck {
                channels,
                id: id.clone(),
                timestamp,
                nonce,
            })
        })
    }

    fn error(&self, code: ErrorCode, message: String, id: Option<String>, channel: Option<String>) {
        let frame = self.shared.message(|timestamp, nonce| {
            ServerMessage::Error(ErrorMessage {
                code,
                message,
                id,
                channel,
                timestamp,
                nonce,
            })
        });
        self.queue.push(frame);
    }

    /// Leaves every channel; called once when the connection ends.
    pub(crate) fn finish(&mut self) {
        let channels: Vec<Channel> = self.channels.drain().collect();
        self.shared.router.unsubscribe(&channels, &self.queue);
    }
}

/// The distinct strings of a request, in order.
fn dedup(channels: &[String]) -> impl Iterator<Item = &str> {
    let mut seen = HashSet::new();
    channels
        .iter()
        .map(String::as_str)
        .filter(move |c| seen.insert(*c))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use clap::Parser;

    use super::*;
    use crate::config::Config;
    use crate::router::Route;

    fn session(max_channels: &str) -> (Session, Arc<Queue>, Arc<Shared>) {
        let config =
            Config::try_parse_from(["odin-forwarder", "--max-channels", max_channels]).unwrap();
        let shared = Arc::new(Shared::new(&config));
        let queue = Arc::new(Queue::new(1 << 20));
        (Session::new(queue.clone(), shared.clone()), queue, shared)
    }

    fn replies(queue: &Queue) -> Vec<serde_json::Value> {
        let mut frames = VecDeque::new();
        queue.take(&mut frames);
        frames
            .iter()
            .map(|f| {
                // Unframe: these replies are short (one-byte length) or use
                // the 16-bit form.
                let start = if f[1] == 126 { 4 } else { 2 };
                serde_json::from_slice(&f[start..]).unwrap()
            })
            .collect()
    }

    #[test]
    fn subscribe_answers_as_the_protocol_says() {
        let (mut s, queue, shared) = session("2");
        s.on_text(r#"{"type":"subscribe","channels":["token.A","bad channel","token.A","market","token.B"],"id":"r1"}"#);
        let got = replies(&queue);
        assert_eq!(got[0]["type"], "subscribed");
        assert_eq!(got[0]["channels"], serde_json::json!(["token.A", "market"]));
        assert_eq!(got[0]["id"], "r1");
        assert!(got[0]["nonce"].is_string() && got[0]["timestamp"].is_number());
        assert_eq!(got[1]["code"], "invalid_channel");
        assert!(got[1]["message"].as_str().unwrap().contains("bad channel"));
        assert_eq!(got[2]["code"], "too_many_channels");
        assert_eq!(got.len(), 3);
        let frame = bytes::Bytes::from_static(b"e");
        let wakes = &mut Vec::new();
        assert_eq!(shared.router.fan_out(Route::Token("A"), &frame, wakes), 1);
        assert_eq!(shared.router.fan_out(Route::Market, &frame, wakes), 1);
        queue.take(&mut VecDeque::new());

        s.on_text(r#"{"type":"unsubscribe","channels":["token.A"]}"#);
        s.on_text(r#"{"type":"ping","id":"p"}"#);
        s.on_text("not json");
        let got = replies(&queue);
        assert_eq!(got[0]["type"], "unsubscribed");
        assert_eq!(got[1]["type"], "pong");
        assert_eq!(got[1]["id"], "p");
        assert_eq!(got[2]["code"], "invalid_message");
        assert_eq!(shared.router.fan_out(Route::Token("A"), &frame, wakes), 0);
        s.finish();
        assert_eq!(shared.router.fan_out(Route::Market, &frame, wakes), 0);
    }
}
