//! The local replica: what one node does with the cells it stores, below any client
//! validation, schema or consistency logic. The [`crate::service`] calls it for the
//! single-node request path; the coordinator of the cluster issues calls it for the local
//! replica and ships what it mints to the others, whose replicas apply it.
//!
//! # Operations
//! - [`Replica::mint_group`] ([`mint`]): mint new versions at this node. A causal cell is
//!   read, updated with a new dot of this node's [`Actor`] (above its [`dot_clock`]) and
//!   written back, under the stripe lock of the cell; a row delete writes the row's
//!   tombstone under the stripe lock of the row's key; an lww cell is
//!   encoded with its timestamp. Each minted cell is handed to a sink, so a coordinator can
//!   ship exactly the bytes stored here.
//! - [`Replica::apply`] ([`apply`]): fold in cells minted elsewhere, by the engine's merge
//!   only (DVV sync, the LWW winner, the row tombstone join). Applying is idempotent,
//!   commutative and associative: applying a cell twice, or two cells in either order,
//!   gives the same state (tests/replica_props.rs). Hinted handoff, read repair,
//!   anti-entropy and streaming all rely on it.
//! - [`ingest`]: a streamed range's pages written straight into SSTables
//!   ([`ingest::RangeIngest`]), checked as `apply` checks them.
//! - [`read`]: stored cells raw (the merged entry), and digests of their canonical form.
//! - [`range`]: the ordered scan of a token range `(start, end]`, wrap-around handled.
//! - [`keys`]: the engine key layout (token of the cluster's partitioner first).
//! - [`row_tombstone`]: whole-row deletes: minting one, reading it, filtering what it
//!   covers.
//! - [`codec`]: the byte encoding of [`RawCell`]s, for peer messages.
//! - [`messages`]: the replica family's peer messages (apply, read, digest).
//! - [`peer`]: [`ReplicaHandler`], which answers them from this node's replica.
//!
//! # Invariants
//! - An actor's dot counters increase across every cell it writes ([`dot_clock`]: floored
//!   by the clock in microseconds, persisted ahead across restarts): a dot counter is not a per-cell event count
//!   but a position in the actor's history, which is what a causal row tombstone needs.
//! - A dot is never minted twice: minting reads the cell's merged state and writes the
//!   superseding result under the cell's stripe lock; [`Replica::apply`] takes the same
//!   locks, so a cell applied from a peer cannot slip between a mint's read and its write
//!   (the mint's write replaces the memtable entry, see `WriteBatch::put_superseding`).
//! - Stripes are always taken in ascending order, each once: no two operations deadlock.
//!
//! # Threading
//! [`Replica`] is `Send + Sync`; calls are synchronous and may block on disk (the engine
//! syncs its commit log per its sync mode). No lock is held across anything but engine
//! calls.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod apply;
pub mod codec;
pub mod dot_clock;
pub mod ingest;
pub mod keys;
pub mod messages;
pub mod mint;
pub mod peer;
pub mod range;
pub mod read;
pub mod row_read;
pub mod row_tombstone;

use std::sync::{Arc, Mutex, MutexGuard};

use sibyl_storage::Engine;

use crate::repair::{Trees, DEFAULT_LEAF_BITS};
use crate::ring::Partitioner;
use crate::versioning::{Actor, Clock, VersioningError};

pub use apply::InvalidCell;
pub use codec::{CodecError, RawCell};
pub use dot_clock::{DotClock, DotClockError};
pub use messages::{ReplicaErrorCode, ReplicaRequest, ReplicaResponse};
pub use mint::{MintCell, MintRow};
pub use peer::{ForwardTarget, ReplicaExecution, ReplicaHandler, ReplicaHost};
pub use range::{RangeScan, TokenRange};

/// Stripes of the write lock: enough that unrelated keys rarely share one.
const LOCK_STRIPES: usize = 4096;

/// Errors of the replica operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] sibyl_storage::Error),
    /// The versioning layer refused the write (context, sibling limit, cell size) or met
    /// an undecodable stored cell.
    #[error(transparent)]
    Versioning(#[from] VersioningError),
    /// A cell given to [`Replica::apply`] is malformed.
    #[error(transparent)]
    InvalidCell(#[from] InvalidCell),
    /// The dot clock's reservation could not be written.
    #[error(transparent)]
    DotClock(#[from] DotClockError),
}

/// The local replica of one node. See the module documentation.
pub struct Replica {
    engine: Arc<Engine>,
    stripes: Box<[Mutex<()>]>,
    actor: Actor,
    clock: Arc<dyn Clock>,
    partitioner: Partitioner,
    /// Where dot counters come from ([`dot_clock`]).
    dots: DotClock,
    /// The anti-entropy trees of the tracked tables ([`crate::repair`]).
    trees: Trees,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("actor", &self.actor)
            .field("partitioner", &self.partitioner)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// A replica over an open engine, minting with `actor` above `dots`, reading time
    /// from `clock`, laying keys out by `partitioner`.
    pub fn new(
        engine: Arc<Engine>,
        actor: Actor,
        clock: Arc<dyn Clock>,
        partitioner: Partitioner,
        dots: DotClock,
    ) -> Replica {
        Replica {
            engine,
            stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            actor,
            clock,
            partitioner,
            dots,
            trees: Trees::new(DEFAULT_LEAF_BITS),
        }
    }

    /// The anti-entropy trees of the tables this replica tracks.
    pub fn trees(&self) -> &Trees {
        &self.trees
    }

    /// The floor of the next dot this node mints (see [`dot_clock`]), above `seen`, the
    /// highest counter of this node's actor the new dot must exceed.
    pub(crate) fn next_dot_floor(&self, seen: u64) -> Result<u64, ReplicaError> {
        Ok(self.dots.next_above(seen)?)
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The actor new versions are minted with.
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// The partitioner engine keys are laid out by.
    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    /// The time source (TTL, timestamps).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The ordered scan of `range` in `table` (see [`range`]).
    pub fn scan_range(&self, table: &str, range: TokenRange) -> Result<RangeScan, ReplicaError> {
        Ok(RangeScan::new(
            &self.engine,
            table,
            self.partitioner,
            range,
        )?)
    }

    /// Holds every stripe: no mint or apply runs until the guards are dropped (a table
    /// drop takes them so no write lands in a table re-created under the same name).
    pub fn lock_all(&self) -> Vec<MutexGuard<'_, ()>> {
        self.stripes.iter().map(lock).collect()
    }

    /// The stripe lock index of an engine key.
    fn stripe_of(&self, engine_key: &[u8]) -> usize {
        crc32fast::hash(engine_key) as usize % self.stripes.len()
    }

    /// Locks the stripes of `keys` in ascending order (deadlock-free), each once.
    fn lock_stripes<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Vec<MutexGuard<'_, ()>> {
        let mut idx: Vec<usize> = keys.map(|k| self.stripe_of(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .filter_map(|i| self.stripes.get(i))
            .map(lock)
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
