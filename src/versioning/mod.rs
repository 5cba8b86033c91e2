//! Versioning: how Sibyl tells versions of a cell apart and combines them.
//!
//! The node stores one storage-engine key per cell (the node builds the key from the
//! partition token, partition key and column name). The engine value is a *cell* encoded by
//! this module, and the engine is given one of this module's merge policies per table:
//!
//! - `causal` tables ([`CausalMerge`]): a cell is a dotted version vector set ([`Dvv`],
//!   Almeida et al., DAIS 2014; Riak 2.0's `dvvset`). Concurrent writes survive as
//!   siblings; a write carrying the [`Context`] of a read replaces exactly the versions that
//!   read saw; deletes are causal tombstones (a sibling without a value).
//! - `lww` tables ([`LwwMerge`]): a cell is an [`LwwCell`] with a timestamp; the highest
//!   timestamp wins (Cassandra's rule, ties broken deterministically). Concurrent updates
//!   are lost by design.
//!
//! Both kinds of cell may carry an expiry (TTL): expired values vanish from reads and are
//! dropped by compaction.
//!
//! # How the node uses this (causal tables)
//! - Write (coordinator, under a per-cell lock): read the local cell, call
//!   [`prepare_causal_write`] with the client's decoded [`Context`] (if any) and this
//!   node's [`Actor`], write the returned cell locally and send the same bytes to the
//!   other replicas; their engines fold it in with [`CausalMerge`] (DVV sync).
//! - Read: each replica's engine returns its whole cell ([`CausalMerge`]'s `read`); the
//!   coordinator decodes them ([`decode_causal_cell`]) and reconciles with [`Dvv::sync`];
//!   a replica whose cell the result [`Dvv::dominates`] is stale and gets the reconciled
//!   cell (read repair). The client receives [`Dvv::values`] (live values; tombstones
//!   mean "deleted") and `Context::of(&dvv).encode()`.
//! - Contexts coming back go through [`Context::decode`]; its error maps to `Invalid`.
//!
//! # Layout
//! - [`actor`]: the node's actor id ([`Actor`]) and its persisted epoch ([`ActorEpoch`]).
//! - [`clock`]: the time seam ([`Clock`], [`SystemClock`], [`ManualClock`]).
//! - [`vv`]: plain version vectors ([`VersionVector`]).
//! - [`dvv`]: the DVV set algebra: sync, join, update, dominance ([`Dvv`], [`Sibling`]).
//! - [`format`]: the byte formats (spec + constants shared by encoders and decoders).
//! - [`cell`]: encoding of causal cells.
//! - [`lww`]: LWW cells and their ordering.
//! - [`context`]: the opaque, checksummed contexts handed to clients.
//! - [`policy`]: the [`sibyl_storage::MergePolicy`] implementations.
//! - [`row_tombstone`]: whole-row deletes ([`RowTombstone`]) and what they cover.
//! - [`ttl`]: the expiry of a write with a TTL (rounded up to a whole second).
//! - [`write`]: the coordinator's read-modify-write helpers ([`prepare_causal_write`],
//!   [`prepare_lww_write`]).
//!
//! # Threading
//! Every type here is plain data or `Send + Sync`; the policies are called concurrently by
//! the engine's writer, flush, compaction and reader threads and keep no mutable state
//! besides the process-wide counters in this module.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod actor;
pub mod cell;
pub mod clock;
pub mod context;
pub mod dvv;
pub mod format;
pub mod lww;
pub mod policy;
pub mod row_tombstone;
pub mod ttl;
pub mod vv;
pub mod write;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use actor::{Actor, ActorEpoch, ActorOpen};
pub use cell::{check_causal_cell, decode_causal_cell, encode_causal_cell};
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::Context;
pub use dvv::{Dot, Dvv, DvvEntryParts, Sibling};
pub use lww::LwwCell;
pub use policy::{CausalMerge, LwwMerge};
pub use row_tombstone::{is_row_tombstone, RowTombstone};
pub use ttl::expires_at_secs;
pub use vv::VersionVector;
pub use write::{
    prepare_causal_write, prepare_causal_write_above, prepare_lww_write, DEFAULT_MAX_SIBLINGS,
    MAX_CELL_BYTES,
};

/// Errors of the versioning layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersioningError {
    /// A context sent back by a client is malformed, corrupt or forged beyond what we
    /// accept. Maps to the client error `Invalid`.
    #[error("invalid context: {reason}")]
    InvalidContext {
        /// What was wrong.
        reason: &'static str,
    },
    /// A stored cell could not be decoded.
    #[error("corrupt {kind} cell: {reason}")]
    CorruptCell {
        /// `"causal"` or `"lww"`.
        kind: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The write would leave more siblings in the cell than the table allows.
    #[error("too many siblings: the write would leave {count} (limit {limit})")]
    TooManySiblings {
        /// Siblings the cell would hold after the write.
        count: usize,
        /// The table's sibling limit.
        limit: usize,
    },
    /// The write would make the stored cell larger than a response can carry, so its
    /// siblings could no longer be read and resolved.
    #[error("cell too large: the write would make it {bytes} bytes (limit {limit})")]
    CellTooLarge {
        /// Encoded size the cell would have.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The actor file exists but cannot be trusted.
    #[error("actor file {path}: {reason}")]
    CorruptActorFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// I/O on the actor file failed.
    #[error("actor file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Writes rejected with [`VersioningError::TooManySiblings`] since the process started.
static SIBLING_LIMIT_REJECTIONS: AtomicU64 = AtomicU64::new(0);
/// Undecodable cells met by the merge policies since the process started.
static CORRUPT_CELLS_SEEN: AtomicU64 = AtomicU64::new(0);

/// The metric "writes rejected for too many siblings" (process-wide, monotonic). The node's
/// metrics endpoint reports it.
pub fn sibling_limit_rejections() -> u64 {
    SIBLING_LIMIT_REJECTIONS.load(Ordering::Relaxed)
}

/// The metric "undecodable cells seen by merge, compaction or read" (process-wide,
/// monotonic).
pub fn corrupt_cells_seen() -> u64 {
    CORRUPT_CELLS_SEEN.load(Ordering::Relaxed)
}

pub(crate) fn count_sibling_limit_rejection() {
    SIBLING_LIMIT_REJECTIONS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_corrupt_cell() {
    CORRUPT_CELLS_SEEN.fetch_add(1, Ordering::Relaxed);
}
