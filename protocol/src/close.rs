//! WebSocket close codes the server uses, with the reason text it sends.

/// A close code and its reason, as sent in the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    /// The numeric code.
    pub code: u16,
    /// The reason text sent with it.
    pub reason: &'static str,
}

/// `1001`: the server is shutting down.
pub const GOING_AWAY: CloseCode = CloseCode {
    code: 1001,
    reason: "going away",
};
/// `1002`: the client broke the WebSocket protocol (reserved bits set, an
/// unmasked frame, a reserved opcode, a fragmented or over-long control
/// frame, a continuation of nothing).
pub const PROTOCOL_ERROR: CloseCode = CloseCode {
    code: 1002,
    reason: "protocol error",
};
/// `1003`: the client sent a binary frame.
pub const UNSUPPORTED_DATA: CloseCode = CloseCode {
    code: 1003,
    reason: "binary frames are not supported",
};
/// `1007`: a text frame whose payload is not valid UTF-8 (RFC 6455 §8.1:
/// the WebSocket layer fails such a connection; it never reaches the JSON
/// parser, so it is no `invalid_message`).
pub const INVALID_PAYLOAD: CloseCode = CloseCode {
    code: 1007,
    reason: "text is not valid UTF-8",
};
/// `1008`: too many invalid or rate-limited messages.
pub const POLICY_VIOLATION: CloseCode = CloseCode {
    code: 1008,
    reason: "too many invalid messages",
};
/// `1009`: a message was larger than the size limit.
pub const MESSAGE_TOO_BIG: CloseCode = CloseCode {
    code: 1009,
    reason: "message too big",
};
/// `4001`: the token's `exp` passed during the connection.
pub const TOKEN_EXPIRED: CloseCode = CloseCode {
    code: 4001,
    reason: "token expired",
};
/// `4002`: the client did not answer a ping before the next one was due.
pub const NO_PONG: CloseCode = CloseCode {
    code: 4002,
    reason: "no pong",
};
/// `4003`: the connection reached its lifetime (`--max-connection-lifetime`);
/// the client reconnects (a version 2 client got a `reconnect` advisory
/// first, saying after how long).
pub const LIFETIME_REACHED: CloseCode = CloseCode {
    code: 4003,
    reason: "connection lifetime reached",
};
/// `4008`: the client could not keep up.
pub const SLOW_CONSUMER: CloseCode = CloseCode {
    code: 4008,
    reason: "slow consumer",
};
