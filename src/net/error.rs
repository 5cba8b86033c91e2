//! [`NetError`]: why a peer call or send did not get through. Each variant carries what
//! the caller needs to react: which peer, and whether retrying elsewhere makes sense.

use std::net::SocketAddr;
use std::time::Duration;

use super::Family;
use crate::ring::NodeId;

/// Why a peer call or one-way send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// No answer before the deadline (the request may or may not have been handled).
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// How long the call waited.
        after: Duration,
    },
    /// The peer cannot be reached: connect failed, the connection broke with the request
    /// outstanding, or the peer is in reconnect backoff.
    #[error("peer {addr} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// A bounded queue or in-flight limit is full, here or at the peer: back off.
    #[error("overloaded ({what}) towards {addr}")]
    Overloaded {
        /// The peer.
        addr: SocketAddr,
        /// Which bound was hit.
        what: &'static str,
    },
    /// This node's network was shut down.
    #[error("the peer network is shut down")]
    Closed,
    /// The peer refused the connection's handshake (another cluster or version).
    #[error("peer {addr} refused the handshake: {reason}")]
    Refused {
        /// The peer.
        addr: SocketAddr,
        /// The peer's reason.
        reason: String,
    },
    /// The peer has no handler for the family.
    #[error("peer {addr} has no handler for {family:?} messages")]
    NoHandler {
        /// The peer.
        addr: SocketAddr,
        /// The family.
        family: Family,
    },
    /// The peer's handler failed the request.
    #[error("peer {addr} failed the request: {message}")]
    Remote {
        /// The peer.
        addr: SocketAddr,
        /// The handler's message.
        message: String,
    },
    /// A handler is already registered for the family.
    #[error("a handler is already registered for {family:?} messages")]
    AlreadyRegistered {
        /// The family.
        family: Family,
    },
    /// The message body is larger than a frame may carry.
    #[error("message of {len} bytes exceeds the {max}-byte frame cap")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A call meant for one node found another at its address (a node whose disk was
    /// wiped came back there under a new id): its answer, if any, is not the expected
    /// node's and is discarded.
    #[error("peer {addr} is node {found}, not {expected}")]
    WrongNode {
        /// The address called.
        addr: SocketAddr,
        /// The node the caller meant.
        expected: NodeId,
        /// The node that shook hands at that address.
        found: NodeId,
    },
}

/// A handler's refusal of a request, sent back to the caller as an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    /// Why (travels to the caller, at most [`super::frame::MAX_ERROR_MESSAGE`] bytes).
    pub message: String,
}

impl HandlerError {
    /// A handler error with `message`.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
        }
    }
}
