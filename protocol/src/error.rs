//! Errors of the protocol crate.
//!
//! Two families live here:
//! - [`ProtocolError`]: this side could not decode or encode bytes (bad magic, checksum,
//!   truncated field, frame too large, ...). Raised by the frame and message decoders; a
//!   server answers it with an error frame of code [`ErrorCode::Protocol`] and closes.
//! - [`ServerError`]: a typed error a server sends back on the wire, with a stable numeric
//!   [`ErrorCode`] (the table in `doc/wire_format.md`), a message and code-specific fields
//!   ([`ErrorKind`]). Each code says whether retrying the request is safe.
//!
//! Pure data, no threading concerns.

use std::fmt;

/// A failure to decode or encode protocol bytes. Decoders return it instead of panicking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame does not start with the magic `SBYL`.
    #[error("bad frame magic {got:02x?}")]
    BadMagic {
        /// The four bytes found.
        got: [u8; 4],
    },
    /// A flag bit this version does not define is set (or ERROR without RESPONSE).
    #[error("unknown frame flags {flags:#04x}")]
    UnknownFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The reserved header byte is not zero.
    #[error("reserved header byte is {value:#04x}, must be 0")]
    ReservedNonZero {
        /// The value found.
        value: u8,
    },
    /// The frame (header + body) is larger than the cap in force.
    #[error("frame of {len} bytes exceeds the cap of {max} bytes")]
    FrameTooLarge {
        /// Total frame length claimed or attempted.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// The checksum over header and body does not match.
    #[error("frame checksum mismatch: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch {
        /// Checksum carried by the frame.
        expected: u32,
        /// Checksum computed over the bytes received.
        got: u32,
    },
    /// A field ends past the end of its buffer.
    #[error("truncated {what}: needed {needed} bytes, {available} available")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes that remained.
        available: u64,
    },
    /// Bytes remain after a complete message.
    #[error("{count} trailing bytes after {what}")]
    TrailingBytes {
        /// The message that was complete.
        what: &'static str,
        /// How many bytes were left.
        count: u64,
    },
    /// The opcode is not one this version defines.
    #[error("unknown opcode {opcode:#04x}")]
    UnknownOpcode {
        /// The opcode byte.
        opcode: u8,
    },
    /// An enum tag byte has no meaning for its field.
    #[error("invalid tag {tag} for {what}")]
    InvalidTag {
        /// The field being read.
        what: &'static str,
        /// The tag found.
        tag: u64,
    },
    /// A string field is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field being read.
        what: &'static str,
    },
    /// A value is out of its allowed range, or a response does not fit its request.
    #[error("invalid value for {what}: {reason}")]
    InvalidValue {
        /// The field being read.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The message uses a protocol version this build does not speak.
    #[error("unsupported protocol version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// An I/O error on the underlying stream (from the tokio codec).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The stable numeric error codes. Numbers never change meaning; new codes are added.
/// Ranges: `0x00xx` connection and protocol, `0x01xx` request problems the caller must
/// fix, `0x02xx` cluster conditions (availability, timeouts, load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The peer sent bytes that are not a valid frame or message; the connection closes.
    Protocol = 0x0001,
    /// The handshake asked for a version the server does not speak.
    UnsupportedVersion = 0x0002,
    /// An unexpected failure inside the server.
    Server = 0x0003,
    /// The request is well-formed but invalid (bad option, empty key, ...).
    Invalid = 0x0100,
    /// The table does not exist.
    UnknownTable = 0x0101,
    /// The table already exists.
    TableExists = 0x0102,
    /// The write would leave a cell with more siblings than the limit.
    TooManySiblings = 0x0103,
    /// Not enough replicas are alive to meet the consistency level; nothing was sent.
    Unavailable = 0x0200,
    /// Too few replicas acknowledged a write in time; it may still have been applied.
    WriteTimeout = 0x0201,
    /// Too few replicas answered a read in time.
    ReadTimeout = 0x0202,
    /// The node shed the request before doing anything.
    Overloaded = 0x0203,
    /// The node's disk is full, or below its free-space reserve: the write was not
    /// applied on this node.
    DiskFull = 0x0204,
    /// The user does not exist or the password is wrong (one answer for both).
    AuthenticationFailed = 0x0300,
    /// The node requires authentication and the connection has not authenticated.
    Unauthenticated = 0x0301,
    /// The authenticated user lacks a permission.
    Unauthorized = 0x0302,
}

impl ErrorCode {
    /// Every code, in table order (used by the docs test).
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::Protocol,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Server,
        ErrorCode::Invalid,
        ErrorCode::UnknownTable,
        ErrorCode::TableExists,
        ErrorCode::TooManySiblings,
        ErrorCode::Unavailable,
        ErrorCode::WriteTimeout,
        ErrorCode::ReadTimeout,
        ErrorCode::Overloaded,
        ErrorCode::DiskFull,
        ErrorCode::AuthenticationFailed,
        ErrorCode::Unauthenticated,
        ErrorCode::Unauthorized,
    ];

    /// The numeric code on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a number, if this build knows it.
    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_u16() == code)
    }

    /// Stable name of the code (as in the doc's table).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Protocol => "PROTOCOL",
            ErrorCode::UnsupportedVersion => "UNSUPPORTED_VERSION",
            ErrorCode::Server => "SERVER",
            ErrorCode::Invalid => "INVALID",
            ErrorCode::UnknownTable => "UNKNOWN_TABLE",
            ErrorCode::TableExists => "TABLE_EXISTS",
            ErrorCode::TooManySiblings => "TOO_MANY_SIBLINGS",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::WriteTimeout => "WRITE_TIMEOUT",
            ErrorCode::ReadTimeout => "READ_TIMEOUT",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::DiskFull => "DISK_FULL",
            ErrorCode::AuthenticationFailed => "AUTHENTICATION_FAILED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
        }
    }

    /// Whether sending the same request again (to this or another node) is safe: true
    /// only when the failed attempt is known to have changed nothing, or the request is
    /// a read. `WriteTimeout` and `Server` are not: the write may have been applied, and
    /// a causal write retried with the same context would add a sibling.
    pub fn retry_safe(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::ReadTimeout
                | ErrorCode::Overloaded
                | ErrorCode::DiskFull
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.as_u16())
    }
}

/// The code-specific fields of a server error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`ErrorCode::Protocol`].
    Protocol,
    /// [`ErrorCode::UnsupportedVersion`]: the versions the server speaks.
    UnsupportedVersion {
        /// Versions the server accepts, ascending.
        supported: Vec<u8>,
    },
    /// [`ErrorCode::Server`].
    Server,
    /// [`ErrorCode::Invalid`].
    Invalid,
    /// [`ErrorCode::UnknownTable`].
    UnknownTable {
        /// The table named by the request.
        table: String,
    },
    /// [`ErrorCode::TableExists`].
    TableExists {
        /// The table named by the request.
        table: String,
    },
    /// [`ErrorCode::TooManySiblings`].
    TooManySiblings {
        /// The configured sibling limit per cell.
        limit: u32,
    },
    /// [`ErrorCode::Unavailable`].
    Unavailable {
        /// Replicas the consistency level needs.
        required: u32,
        /// Replicas believed alive.
        alive: u32,
    },
    /// [`ErrorCode::WriteTimeout`].
    WriteTimeout {
        /// Replicas that acknowledged.
        acks: u32,
        /// Acknowledgements required.
        required: u32,
    },
    /// [`ErrorCode::ReadTimeout`].
    ReadTimeout {
        /// Replicas that answered.
        acks: u32,
        /// Answers required.
        required: u32,
    },
    /// [`ErrorCode::Overloaded`].
    Overloaded,
    /// [`ErrorCode::DiskFull`]: the write was not applied.
    DiskFull {
        /// Bytes free on the node's data file system when it refused.
        free: u64,
        /// The node's free-space reserve (0 when the disk itself was full).
        reserve: u64,
    },
    /// [`ErrorCode::AuthenticationFailed`]: unknown user or wrong password (not told apart).
    AuthenticationFailed,
    /// [`ErrorCode::Unauthenticated`]: authenticate first; nothing was done.
    Unauthenticated,
    /// [`ErrorCode::Unauthorized`]: nothing was done.
    Unauthorized {
        /// The permission the user lacks, `read`, `write`, `alter`, `create`, `users` or `operate`.
        permission: String,
    },
    /// A code this build does not know (sent by a newer server); its fields are kept raw.
    Unknown {
        /// The numeric code.
        code: u16,
        /// The undecoded fields.
        fields: bytes::Bytes,
    },
}

impl ErrorKind {
    /// The numeric wire code of this kind.
    pub fn code(&self) -> u16 {
        match self.error_code() {
            Some(c) => c.as_u16(),
            None => match self {
                ErrorKind::Unknown { code, .. } => *code,
                _ => ErrorCode::Server.as_u16(),
            },
        }
    }

    /// The known code of this kind, `None` for [`ErrorKind::Unknown`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        Some(match self {
            ErrorKind::Protocol => ErrorCode::Protocol,
            ErrorKind::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ErrorKind::Server => ErrorCode::Server,
            ErrorKind::Invalid => ErrorCode::Invalid,
            ErrorKind::UnknownTable { .. } => ErrorCode::UnknownTable,
            ErrorKind::TableExists { .. } => ErrorCode::TableExists,
            ErrorKind::TooManySiblings { .. } => ErrorCode::TooManySiblings,
            ErrorKind::Unavailable { .. } => ErrorCode::Unavailable,
            ErrorKind::WriteTimeout { .. } => ErrorCode::WriteTimeout,
            ErrorKind::ReadTimeout { .. } => ErrorCode::ReadTimeout,
            ErrorKind::Overloaded => ErrorCode::Overloaded,
            ErrorKind::DiskFull { .. } => ErrorCode::DiskFull,
            ErrorKind::AuthenticationFailed => ErrorCode::AuthenticationFailed,
            ErrorKind::Unauthenticated => ErrorCode::Unauthenticated,
            ErrorKind::Unauthorized { .. } => ErrorCode::Unauthorized,
            ErrorKind::Unknown { .. } => return None,
        })
    }
}

/// A typed error carried in an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.describe_code())]
pub struct ServerError {
    /// Code-specific fields; the code follows from the kind.
    pub kind: ErrorKind,
    /// Human-readable explanation.
    pub message: String,
}

impl ServerError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServerError {
            kind,
            message: message.into(),
        }
    }

    /// The numeric wire code.
    pub fn code(&self) -> u16 {
        self.kind.code()
    }

    /// Whether retrying the request is safe (unknown codes: no).
    pub fn retry_safe(&self) -> bool {
        self.kind.error_code().is_some_and(ErrorCode::retry_safe)
    }

    fn describe_code(&self) -> String {
        match self.kind.error_code() {
            Some(c) => c.to_string(),
            None => format!("UNKNOWN ({:#06x})", self.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_numbers_round_trip() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0xffff), None);
    }

    #[test]
    fn error_code_write_timeout_is_not_retry_safe() {
        assert!(!ErrorCode::WriteTimeout.retry_safe());
        assert!(ErrorCode::Unavailable.retry_safe());
    }

    #[test]
    fn server_error_display_names_code_and_fields() {
        let e = ServerError::new(
            ErrorKind::Unavailable {
                required: 2,
                alive: 1,
            },
            "need 2 replicas",
        );
        assert_eq!(e.to_string(), "UNAVAILABLE (0x0200): need 2 replicas");
        assert_eq!(e.code(), 0x0200);
        assert!(e.retry_safe());
    }
}
