//! [`ClientError`]: everything a client call can fail with, and the retry rule the client
//! applies across nodes.

use std::time::Duration;

use crate::error::{ErrorCode, ProtocolError, ServerError};

/// A failed client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not open a connection to a node.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The node address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A node address did not resolve.
    #[error("cannot resolve {addr}: {reason}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No address was given.
    #[error("no node addresses given")]
    NoNodes,
    /// The connection failed or closed. `sent` says whether the request may have reached
    /// the server (then a write may have been applied).
    #[error("connection to {addr} closed ({reason}); request sent: {sent}")]
    ConnectionClosed {
        /// The node address.
        addr: String,
        /// Why the connection closed.
        reason: String,
        /// Whether the request frame had been handed to the connection.
        sent: bool,
    },
    /// No response within the per-request timeout; a write may have been applied.
    #[error("request timed out after {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// Bytes from the server could not be decoded, or the request could not be encoded.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The server answered with a typed error.
    #[error("server error: {0}")]
    Server(#[from] ServerError),
    /// The node refused the user and password (an unknown user and a wrong password are
    /// not told apart).
    #[error("authentication failed for user {user}")]
    AuthenticationFailed {
        /// The user name.
        user: String,
    },
    /// The login exchange went wrong on this side: a malformed server message, or a
    /// server that could not prove it knows the password.
    #[error("authentication with {addr} failed: {source}")]
    Scram {
        /// The node address.
        addr: String,
        /// What was wrong.
        #[source]
        source: crate::scram::ScramError,
    },
    /// The server answered with a response that does not fit the request.
    #[error("unexpected response to {opcode}: {got}")]
    UnexpectedResponse {
        /// The request's opcode name.
        opcode: &'static str,
        /// What came back.
        got: String,
    },
}

impl ClientError {
    /// The server error code, if the server answered with an error.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) => e.kind.error_code(),
            _ => None,
        }
    }

    /// Whether the client may send the same request to another node after this failure:
    /// the request never left (connect failure, closed before sending), or it is
    /// `resendable` ([`Request::is_resendable`]: a read, or writes that all carry write
    /// ids) and only the transport failed or the answer was `READ_TIMEOUT` or
    /// `WRITE_TIMEOUT`, or the server answered a code that changed nothing
    /// ([`ErrorCode::retry_safe`]: `UNAVAILABLE`, `OVERLOADED`). `SERVER` never. A write
    /// without a write id is never resent once sent: it may have been applied, and a
    /// second application of a causal write would be a second sibling.
    ///
    /// [`Request::is_resendable`]: crate::Request::is_resendable
    pub(crate) fn may_retry_elsewhere(&self, resendable: bool) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::ConnectionClosed { sent, .. } => !sent || resendable,
            ClientError::Timeout { .. } => resendable,
            ClientError::Server(e) => match e.kind.error_code() {
                Some(ErrorCode::ReadTimeout | ErrorCode::WriteTimeout) => resendable,
                Some(code) => code.retry_safe(),
                None => false,
            },
            _ => false,
        }
    }

    /// Whether this failure says the node may be gone, so the topology is worth fetching
    /// again: a connect failure or a connection that closed.
    pub(crate) fn suggests_topology_change(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::ConnectionClosed { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorKind, ServerError};

    fn server(kind: ErrorKind) -> ClientError {
        ClientError::Server(ServerError::new(kind, "x"))
    }

    #[test]
    fn client_error_retry_rule_follows_the_code_table() {
        let unavailable = server(ErrorKind::Unavailable {
            required: 2,
            alive: 1,
        });
        assert!(unavailable.may_retry_elsewhere(false));
        assert!(unavailable.may_retry_elsewhere(true));
        assert!(server(ErrorKind::Overloaded).may_retry_elsewhere(false));
        let read_timeout = server(ErrorKind::ReadTimeout {
            acks: 0,
            required: 1,
        });
        assert!(read_timeout.may_retry_elsewhere(true));
        assert!(!read_timeout.may_retry_elsewhere(false));
        let write_timeout = server(ErrorKind::WriteTimeout {
            acks: 0,
            required: 1,
        });
        assert!(!write_timeout.may_retry_elsewhere(false));
        assert!(
            write_timeout.may_retry_elsewhere(true),
            "a write with a write id may be resent"
        );
        assert!(!server(ErrorKind::Server).may_retry_elsewhere(false));
        assert!(!server(ErrorKind::Invalid).may_retry_elsewhere(true));
        let closed = |sent| ClientError::ConnectionClosed {
            addr: "a".into(),
            reason: "r".into(),
            sent,
        };
        assert!(closed(false).may_retry_elsewhere(false));
        assert!(!closed(true).may_retry_elsewhere(false));
        assert!(closed(true).may_retry_elsewhere(true));
        let timeout = ClientError::Timeout {
            after: Duration::from_secs(1),
        };
        assert!(!timeout.may_retry_elsewhere(false));
        assert!(timeout.may_retry_elsewhere(true));
    }
}
