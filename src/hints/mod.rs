//! Hinted handoff (Dynamo's sloppy quorum): when a home replica of a write is down or
//! does not answer, the coordinator hands the write to the next healthy node clockwise
//! outside the preference list, which keeps it durably as a **hint** naming the owner and
//! replays it when gossip says the owner is up again. This module owns the hints: their
//! store, their peer family and their delivery. The coordinator decides when to hint.
//!
//! # Layout
//! - [`store`]: [`HintStore`], the durable store of one node's hints: its own storage
//!   engine in `<data dir>/hints/` (opened with the node's sync mode, the same durability
//!   as the commit log), bounded per owner by a window in time and a size
//!   ([`HintLimits`]); what a bound drops is counted and persisted ([`DroppedHints`]) so
//!   anti-entropy can repair it.
//! - [`record`]: the engine key (owner, hint id) and the checksummed record of a hint.
//! - [`dropped`]: the dropped-hints record and its file.
//! - [`messages`]: the hints family's peer messages (`StoreHint`; spec:
//!   `doc/peer-messages.md`, "Hints family").
//! - [`peer`]: [`HintsHandler`], which stores hints other coordinators send.
//! - [`delivery`]: [`HintDelivery`], the task that replays hints to their owners with the
//!   replica family's `Apply`, paced by a token bucket, and removes what was applied.
//!
//! # Invariants
//! - A hint is removed only after its owner answered `Applied` for its cells (or its
//!   table no longer exists here, or the owner refused it as invalid: then it is counted
//!   as dropped). Applying merges, so a hint delivered twice is harmless.
//! - Removal writes engine tombstones; the hints table's merge policy (newest wins)
//!   drops them in bottommost compactions, and [`HintStore::purge`] (called by delivery
//!   when an owner drains) flushes and compacts, so a delivered hint leaves no key
//!   behind (its bytes stay in the active commit log segment until it rolls; they are
//!   never replayed, being below the table's flushed sequence number).
//! - Hint ids increase within a process and are unique among stored hints across
//!   restarts: an id is `max(now µs, last id + 1)`, and the last id is found again on
//!   open from the stored hints.
//!
//! # Threading
//! [`HintStore`] is `Send + Sync`; its calls are synchronous and may block on disk (an
//! fsync under `batch` sync). A live node calls it from the blocking pool; a simulation
//! calls it inline ([`crate::replica::ReplicaExecution`]). [`HintDelivery`] is one tokio
//! task using `tokio::time` only, so it runs under a paused clock.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod delivery;
pub mod dropped;
pub mod messages;
pub mod peer;
pub mod record;
pub mod store;

#[cfg(test)]
mod store_tests;

use std::path::PathBuf;
use std::time::Duration;

pub use delivery::{DeliveryCounters, DeliveryOptions, DeliveryStats, HintDelivery, TableExists};
pub use dropped::{DroppedHints, DroppedSpan};
pub use messages::{HintsErrorCode, HintsMessageError, HintsRequest, HintsResponse};
pub use peer::HintsHandler;
pub use record::RecordError;
pub use store::HintStore;

/// The hints directory under a node's data directory (the main engine only reads its
/// own `commitlog/`, `sstables/`, `MANIFEST` and `LOCK` there, so it tolerates it).
pub const HINTS_DIR: &str = "hints";

/// The hints directory of a data directory: `<data_dir>/hints`.
pub fn hints_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join(HINTS_DIR)
}

/// A hint's id: unique among one owner's stored hints, increasing in store order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HintId(pub u64);

/// Bounds on what one owner's hints may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintLimits {
    /// Once the owner's oldest pending hint is older than this, new hints for it are
    /// dropped: it has been unreachable too long, anti-entropy must repair it (Cassandra's
    /// `max_hint_window`). Default 3 hours.
    pub window: Duration,
    /// Most bytes of records pending for one owner; a hint that would pass it is
    /// dropped. Default 256 MiB.
    pub max_bytes_per_owner: u64,
    /// A hint older than this is never delivered: it is discarded (counted as a window
    /// drop, its range recorded for repair) when delivery meets it. Tombstones are purged
    /// only once older than this (see `crate::repair::watermark`), so a late hint can
    /// never bring back a value whose delete was purged. Default 24 hours.
    pub ttl: Duration,
}

/// The default [`HintLimits::window`].
pub const DEFAULT_HINT_WINDOW: Duration = Duration::from_secs(3 * 3600);
/// The default [`HintLimits::ttl`].
pub const DEFAULT_HINT_TTL: Duration = Duration::from_secs(24 * 3600);

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            window: DEFAULT_HINT_WINDOW,
            max_bytes_per_owner: 256 << 20,
            ttl: DEFAULT_HINT_TTL,
        }
    }
}

/// Why a hint was not kept (or was discarded later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The owner's oldest pending hint is older than the window.
    Window,
    /// The owner's pending bytes would pass the size bound.
    Size,
    /// The stored record was corrupt (found when reading it back).
    Corrupt,
    /// The owner refused the hint's cells as invalid (delivery).
    Rejected,
}

impl DropReason {
    /// Its byte on the wire (hints family).
    pub fn code(self) -> u8 {
        match self {
            DropReason::Window => 1,
            DropReason::Size => 2,
            DropReason::Corrupt => 3,
            DropReason::Rejected => 4,
        }
    }

    /// The reason of a wire byte.
    pub fn from_code(code: u8) -> Option<DropReason> {
        match code {
            1 => Some(DropReason::Window),
            2 => Some(DropReason::Size),
            3 => Some(DropReason::Corrupt),
            4 => Some(DropReason::Rejected),
            _ => None,
        }
    }
}

/// What [`HintStore::store`] did with a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored durably (per the sync mode) under this id.
    Kept(HintId),
    /// Not stored; counted in [`HintStore::dropped`].
    Dropped(DropReason),
}

/// What is pending for one owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingStats {
    /// Hints.
    pub count: u64,
    /// Bytes of their records (key included).
    pub bytes: u64,
    /// Written time of the owner's first pending hint (in id order: the one waiting
    /// longest), µs since the epoch; 0 when nothing is pending.
    pub oldest_micros: i64,
}

/// Counters of a [`HintStore`] (since it was opened, unless said otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HintStats {
    /// Owners with pending hints.
    pub owners: usize,
    /// Hints pending, every owner.
    pub pending_hints: u64,
    /// Bytes pending, every owner.
    pub pending_bytes: u64,
    /// Hints kept.
    pub kept: u64,
    /// Hints removed (delivered or discarded).
    pub removed: u64,
    /// Hints dropped at the window bound.
    pub dropped_window: u64,
    /// Hints dropped at the size bound.
    pub dropped_size: u64,
    /// Stored records found corrupt and discarded.
    pub corrupt: u64,
    /// Entries in the hints table's SSTables (values and tombstones).
    pub sstable_entries: u64,
    /// Tombstones in the hints table's SSTables.
    pub sstable_tombstones: u64,
    /// Entries in its memtables.
    pub memtable_entries: u64,
    /// The dropped-hints file was unreadable on open (set aside as `dropped.corrupt`):
    /// what it recorded is lost, repair every range.
    pub dropped_file_lost: bool,
}

/// Errors of the hint store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HintError {
    /// The hints engine failed.
    #[error("hints storage: {0}")]
    Storage(#[from] sibyl_storage::Error),
    /// A small file of the hints directory could not be read or written.
    #[error("hints file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The hint is larger than one stored record may be.
    #[error("hint of {bytes} bytes exceeds the {limit} byte record limit; split it")]
    TooLarge {
        /// Its encoded size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A stored record is corrupt.
    #[error("hint {id:?} of owner {owner}: {source}")]
    Corrupt {
        /// The owner.
        owner: crate::ring::NodeId,
        /// The hint.
        id: HintId,
        /// What is wrong.
        #[source]
        source: RecordError,
    },
}
