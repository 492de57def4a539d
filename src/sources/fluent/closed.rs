//! Why sluice closed a Forward protocol connection: logged, and counted by reason.

use crate::fluent::frame::FrameError;
use crate::fluent::handshake::HandshakeError;
use crate::fluent::message;

/// Why a connection was closed by sluice.
#[derive(Debug, thiserror::Error)]
pub(super) enum Closed {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Message(#[from] message::MessageError),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("handshake: {0}")]
    HandshakeRead(Box<Closed>),
    #[error("{0}")]
    Refused(&'static str),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("the connection ended inside a message")]
    Truncated,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("the client sent plain Forward protocol to a listener with tls: set tls on the client")]
    PlainToTls,
    #[error("no ack: {0}")]
    NoAck(&'static str),
    #[error("memory_limit stayed full")]
    Memory,
    #[error(
        "memory_limit is full of messages waiting to decode: this one gave way to an earlier one (the client resends)"
    )]
    Evicted,
    #[error("no message within idle_timeout")]
    Idle,
    #[error(
        "decoding the message took more memory than it could hold ({may} bytes, of up to {need} it may need)"
    )]
    TooCostly { need: usize, may: usize },
    #[error("the client did not read what was sent to it")]
    WriteTimeout,
}

impl Closed {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Message(message::MessageError::TlsHandshake) => "tls",
            Self::Frame(_) | Self::Message(_) | Self::Truncated => "malformed",
            Self::Handshake(_) | Self::HandshakeRead(_) | Self::Refused(_) => "handshake",
            Self::Timeout(_) | Self::Idle => "timeout",
            Self::Io(_) => "io",
            Self::Tls(_) | Self::PlainToTls => "tls",
            Self::NoAck(_) => "no_ack",
            Self::Memory | Self::Evicted | Self::TooCostly { .. } => "memory_limit",
            Self::WriteTimeout => "timeout",
        }
    }
}
