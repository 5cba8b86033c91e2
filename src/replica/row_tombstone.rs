//! Row tombstones at the replica: reading the stored one, minting a row delete, and
//! filtering what it covers out of cells read. The meaning of a row tombstone (what it
//! covers in causal and lww tables, how two merge) is specified in
//! [`crate::versioning::row_tombstone`].
//!
//! A row delete of a causal table scans the row to learn what this node holds (the join
//! of every cell's version vector); an lww row delete writes only its timestamp.

use std::collections::HashMap;
use std::ops::Bound;

use sibyl_protocol::ConflictMode;

use super::mint::MintRow;
use super::{Replica, ReplicaError};
use crate::versioning::format::MAX_ACTORS;
use crate::versioning::row_tombstone::is_row_tombstone;
use crate::versioning::VersioningError;
use crate::versioning::{decode_causal_cell, Context, Dvv, LwwCell, RowTombstone, VersionVector};

/// A stored cell after its row tombstone was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Covered {
    /// The row tombstone covers none of it: use the stored bytes as they are.
    Untouched,
    /// A causal cell some of whose siblings the tombstone covers: what is left (it may
    /// hold no sibling at all).
    Causal(Dvv),
    /// An lww cell the tombstone deletes.
    Deleted,
}

/// What `tombstone` leaves of the stored cell `stored` (see [`Covered`]). A cell that
/// does not decode is left untouched (the caller's decoder reports it).
pub fn apply_row_tombstone(mode: ConflictMode, tombstone: &RowTombstone, stored: &[u8]) -> Covered {
    match mode {
        ConflictMode::Causal => match decode_causal_cell(stored) {
            Ok(dvv) => tombstone
                .remove_covered(&dvv)
                .map_or(Covered::Untouched, Covered::Causal),
            Err(_) => Covered::Untouched,
        },
        ConflictMode::Lww => match LwwCell::decode(stored) {
            Ok(c) if tombstone.covers_lww(&c) => Covered::Deleted,
            _ => Covered::Untouched,
        },
    }
}

/// The context a read hands out for a cell of a row with `tombstone`: the cell's join and
/// what the row tombstone saw, so a write with it mints above the tombstone wherever it
/// is coordinated.
pub fn context_with_tombstone(dvv: &Dvv, tombstone: Option<&RowTombstone>) -> Context {
    match tombstone.and_then(RowTombstone::seen) {
        Some(seen) => Context::of(dvv).with_seen(seen),
        None => Context::of(dvv),
    }
}

impl Replica {
    /// The row tombstone stored at `row_key` (the row prefix), if any. An undecodable one
    /// is an error: reading past it would resurrect what it deleted.
    pub fn row_tombstone(
        &self,
        table: &str,
        row_key: &[u8],
    ) -> Result<Option<RowTombstone>, ReplicaError> {
        match self.read_raw(table, row_key)? {
            Some(v) => Ok(Some(RowTombstone::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The row tombstone as a mint of the group sees it: one minted earlier in the group,
    /// else the stored one.
    pub(super) fn stored_row_tombstone(
        &self,
        table: &str,
        row_key: &[u8],
        overlay: &HashMap<(&str, &[u8]), Vec<u8>>,
    ) -> Result<Option<RowTombstone>, ReplicaError> {
        match overlay.get(&(table, row_key)) {
            Some(v) => Ok(Some(RowTombstone::decode(v)?)),
            None => self.row_tombstone(table, row_key),
        }
    }

    /// The row tombstone a row delete writes: the stored one merged with this delete (see
    /// the module doc of [`super::mint`]).
    pub(super) fn prepare_row_delete(
        &self,
        row: &MintRow<'_>,
        contexts: &[Context],
        stored: Option<&RowTombstone>,
        overlay: &HashMap<(&str, &[u8]), Vec<u8>>,
    ) -> Result<RowTombstone, ReplicaError> {
        let ts = row.timestamp_micros;
        let new = match row.mode {
            ConflictMode::Lww => RowTombstone::Lww {
                timestamp_micros: ts,
            },
            ConflictMode::Causal => {
                let mut seen = VersionVector::new();
                for c in contexts {
                    seen = seen.merge(c.vv());
                }
                let prefix = row.row.as_bytes();
                let upper = row.row.upper_bound();
                let mut scan = self.engine.scan(
                    row.table,
                    Bound::Excluded(prefix),
                    upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                    sibyl_storage::Direction::Forward,
                )?;
                while let Some((_, v)) = scan.next_entry()? {
                    // A damaged cell in the row tombstone's format is returned by the
                    // read (see the policy); it holds no version to cover.
                    if is_row_tombstone(v) {
                        continue;
                    }
                    seen = seen.merge(&decode_causal_cell(v)?.join());
                }
                // Cells of this row minted earlier in the same group, not yet written.
                for ((t, k), v) in overlay {
                    if *t == row.table && k.len() > prefix.len() && k.starts_with(prefix) {
                        seen = seen.merge(&decode_causal_cell(v)?.join());
                    }
                }
                // Every later dot of this node must land above what the tombstone saw of
                // it, even if a context named more than the node ever minted.
                self.next_dot_floor(seen.get(&self.actor()))?;
                RowTombstone::Causal {
                    seen,
                    timestamp_micros: ts,
                }
            }
        };
        let merged = match stored {
            Some(s) => s.merge(&new),
            None => new,
        };
        // Contexts claim what the client saw; together they cannot be allowed to grow the
        // tombstone past what its decoder accepts (the row would become unreadable).
        if merged.seen().is_some_and(|s| s.len() > MAX_ACTORS) {
            return Err(VersioningError::InvalidContext {
                reason: "the row delete would give the row tombstone more actors than it may hold",
            }
            .into());
        }
        Ok(merged)
    }
}
