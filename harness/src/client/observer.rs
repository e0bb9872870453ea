//! How the client reports to its application: an [`Observer`] gets every
//! delivered event (hot path, borrowed, no allocation) and every lifecycle
//! [`Notice`]. Load users pass a closure; tests use [`ClientEvent`]s on a
//! channel (see [`super::TestClient`]).

use std::time::Duration;

use odin_protocol::ServerMessage;
use odin_protocol::message::{ChannelsAck, ConnectionEstablished};
use tokio::sync::mpsc;

use super::view::MessageView;

/// Receives what the client sees. Called on the client's task: keep it quick
/// (a histogram record, a counter), or the client falls behind and the
/// server disconnects it as a slow consumer — which is what a slow browser
/// tab would get, too.
pub trait Observer: Send {
    /// An event passed de-duplication: the application's message, with its
    /// latency (now − `timestamp`) in microseconds.
    fn on_message(&mut self, message: &MessageView<'_>, latency_us: i64);

    /// Everything else that happens; ignored unless overridden.
    fn on_notice(&mut self, notice: Notice<'_>) {
        let _ = notice;
    }
}

/// A closure is an observer of messages only: the load-test form.
impl<F> Observer for F
where
    F: FnMut(&MessageView<'_>, i64) + Send,
{
    fn on_message(&mut self, message: &MessageView<'_>, latency_us: i64) {
        self(message, latency_us)
    }
}

/// A lifecycle event, borrowed from the client's buffers.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// A connection attempt failed before the upgrade completed.
    ConnectFailed {
        /// What went wrong.
        error: &'a anyhow::Error,
        /// The HTTP status of a refused upgrade (401, 503 …).
        status: Option<u16>,
    },
    /// `connection_established` arrived.
    Connected(&'a MessageView<'a>),
    /// `subscribed` arrived: the client is live.
    Subscribed(&'a MessageView<'a>),
    /// An event the application already had was dropped.
    Duplicate(&'a MessageView<'a>),
    /// Any other server message: heartbeat, pong, error, unsubscribed, or an
    /// unknown type.
    Control(&'a MessageView<'a>),
    /// A frame that is no valid server message (binary, or bad JSON).
    Invalid {
        /// The frame's text (a description for binary frames).
        frame: &'a str,
        /// Why it was refused.
        reason: &'a str,
    },
    /// The connection ended.
    Disconnected {
        /// The close code the server sent, if any.
        code: Option<u16>,
        /// The close reason, or what broke the connection.
        reason: &'a str,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// How long.
        delay: Duration,
    },
    /// The client stopped (shutdown was asked for).
    Stopped,
}

/// An owned [`Notice`] or message, as a test receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// A connection attempt failed.
    ConnectFailed {
        /// The error, rendered with its chain.
        error: String,
        /// The HTTP status of a refused upgrade.
        status: Option<u16>,
    },
    /// `connection_established` arrived.
    Connected(ConnectionEstablished),
    /// `subscribed` arrived.
    Subscribed(ChannelsAck),
    /// An event for the application, with its latency in microseconds.
    Message {
        /// The event.
        message: ServerMessage,
        /// now − `timestamp`, in microseconds.
        latency_us: i64,
    },
    /// An event dropped as a duplicate.
    Duplicate {
        /// Its nonce.
        nonce: String,
    },
    /// A heartbeat, pong, error, unsubscribed or unknown message.
    Control(ServerMessage),
    /// A frame that is no valid server message.
    Invalid {
        /// The frame.
        frame: String,
        /// Why it was refused.
        reason: String,
    },
    /// The connection ended.
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// The close reason or the error.
        reason: String,
    },
    /// Waiting before the next attempt.
    BackingOff {
        /// How long.
        delay: Duration,
    },
    /// The client stopped.
    Stopped,
}

/// Sends every message and notice as a [`ClientEvent`] on a channel.
///
/// Unbounded so that a test that reads late never stalls the client (which
/// would turn into a slow-consumer disconnect and confuse the test); tests
/// are short, so the queue stays small.
#[derive(Debug)]
pub(crate) struct ChannelObserver {
    pub(crate) tx: mpsc::UnboundedSender<ClientEvent>,
}

impl ChannelObserver {
    fn send(&self, event: ClientEvent) {
        // The test may have stopped listening; that is its business.
        let _ = self.tx.send(event);
    }

    /// Decodes a view fully, or reports why it cannot be.
    fn decoded(&self, view: &MessageView<'_>) -> Option<ServerMessage> {
        match view.decode() {
            Ok(m) => Some(m),
            Err(e) => {
                self.send(ClientEvent::Invalid {
                    frame: view.raw().to_owned(),
                    reason: e.to_string(),
                });
                None
            }
        }
    }
}

impl Observer for ChannelObserver {
    fn on_message(&mut self, message: &MessageView<'_>, latency_us: i64) {
        if let Some(message) = self.decoded(message) {
            self.send(ClientEvent::Message {
                message,
                latency_us,
            });
        }
    }

    fn on_notice(&mut self, notice: Notice<'_>) {
        let event = match notice {
            Notice::ConnectFailed { error, status } => ClientEvent::ConnectFailed {
                error: format!("{error:#}"),
                status,
            },
            Notice::Connected(view) => match self.decoded(view) {
                Some(ServerMessage::ConnectionEstablished(m)) => ClientEvent::Connected(m),
                _ => return,
            },
            Notice::Subscribed(view) => match self.decoded(view) {
                Some(ServerMessage::Subscribed(m)) => ClientEvent::Subscribed(m),
                _ => return,
            },
            Notice::Duplicate(view) => ClientEvent::Duplicate {
                nonce: view.nonce().to_owned(),
            },
            Notice::Control(view) => match self.decoded(view) {
                Some(m) => ClientEvent::Control(m),
                None => return,
            },
            Notice::Invalid { frame, reason } => ClientEvent::Invalid {
                frame: frame.to_owned(),
                reason: reason.to_owned(),
            },
            Notice::Disconnected { code, reason } => ClientEvent::Disconnected {
                code,
                reason: reason.to_owned(),
            },
            Notice::BackingOff { delay } => ClientEvent::BackingOff { delay },
            Notice::Stopped => ClientEvent::Stopped,
        };
        self.send(event);
    }
}
