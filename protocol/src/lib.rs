//! Sibyl's binary framed client protocol and its async Rust client.
//!
//! # Layout
//! - [`frame`]: the fixed 20-byte header (all offsets as constants), [`Frame`], checksums.
//! - [`codec`]: [`FrameCodec`], the `tokio_util` decoder / encoder with a settable cap.
//! - [`wire`]: the primitive field encodings every message is built from.
//! - [`message`]: the [`Opcode`] table, [`Request`], [`Response`] and their value types.
//! - [`error`]: [`ProtocolError`] (bytes we cannot decode), [`ServerError`] with the stable
//!   [`ErrorCode`] table and retry safety.
//! - [`scram`]: SCRAM-SHA-256 (RFC 5802 / 7677): the stored password verifier and both
//!   ends of the authentication exchange.
//! - [`fuzzing`]: the fuzz harnesses (used by `fuzz/` and by the corpus replay test).
//! - [`token`]: the token of a partition key (murmur3 and md5), as clients route by it.
//! - [`client`]: the async client: multiplexed connections, a pool per node, token-aware
//!   routing over the topology, table handles.
//!
//! The byte-level contract is `doc/wire_format.md`; a third-party client needs nothing else.
//! A server reads frames with `Framed<TcpStream, FrameCodec>`, decodes them with
//! [`Request::from_frame`], answers with [`Response::to_frame`] (echoing stream id and
//! opcode) and raises the codec cap after the handshake
//! ([`Response::negotiate_handshake`] builds the answer to a handshake).
//!
//! # Client example
//!
//! ```no_run
//! use sibyl_protocol::{Client, Consistency, TableOptions};
//!
//! # async fn demo() -> Result<(), sibyl_protocol::ClientError> {
//! let client = Client::connect(&["127.0.0.1:7400"]).await?;
//! client.create_table_if_not_exists("users", TableOptions::default()).await?;
//! let users = client.table("users");
//! users.put("alice", [("email", "alice@example.com")]).await?;
//! let row = users.get("alice").consistency(Consistency::QUORUM).await?;
//! // Supersede exactly what was read: the contexts travel inside `row`.
//! users.put("alice", [("email", "alice@new.example")]).context_from(&row).await?;
//! let page = users.slice("alice", "a".."m", 100).await?;
//! if page.has_more() {
//!     let _next = users.slice("alice", "a".."m", 100).after(&page).await?;
//! }
//! users.delete("alice", "email").context_from(&row).await?;
//! # Ok(())
//! # }
//! ```

// Bytes from the network never panic the library: no unwrap, no unchecked indexing.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod message;
pub mod scram;
pub mod token;
pub mod wire;

pub use client::{Client, ClientError, ClientOptions, Credentials, Page, Row, Table};
pub use codec::FrameCodec;
pub use error::{ErrorCode, ErrorKind, ProtocolError, ServerError};
pub use frame::{Frame, FrameHeader, DEFAULT_MAX_FRAME_LEN, HANDSHAKE_MAX_FRAME_LEN, HEADER_LEN};
pub use message::opcode::Opcode;
pub use message::request::{DeleteTarget, Mutation, Request, RowDelete, RowInsert, WriteId};
pub use message::response::Response;
pub use message::types::{
    Cell, CellContext, ClusterDescription, ColumnWrite, Compaction, ConflictMode, Consistency,
    ConsistencyLevel, DiskShortage, Grant, HintOwner, NodeHealth, NodeInfo, NodeSchema, NodeState,
    Permission, Placement, QuorumMode, ReadRepair, RebalanceNode, RebalanceReport, RepairState,
    RepairStatus, ResponseMeta, Selector, Sibling, StreamEntry, StreamsReport, TableCleanup,
    TableOptions, TableStatistics, TableSync, Topology, UserInfo,
};

/// The protocol version this build speaks by default.
pub const PROTOCOL_VERSION: u8 = 1;
/// Every protocol version this build speaks, ascending.
pub const SUPPORTED_VERSIONS: &[u8] = &[1];
/// Default TCP port of the client protocol.
pub const DEFAULT_CLIENT_PORT: u16 = 7400;
/// Default TCP port of the peer (node-to-node) protocol; same framing, opcodes 0x80..=0xFF.
pub const DEFAULT_PEER_PORT: u16 = 7401;
