//! Reading one row's stored cells raw, a slice of its columns at a time: what a
//! coordinator asks of each replica of a key for a whole-row or slice GET, and the digest
//! of the same slice.
//!
//! A [`RowSlice`] names a row by its partition key and a column range: `lower` (from a
//! column, inclusive, or after a paging column, exclusive) up to `to` (exclusive), and a
//! `limit` of stored cells. The replica answers [`RowCells`]: the row's tombstone (always,
//! wherever the slice starts, since it covers every column), then up to `limit` stored
//! cells in column order as the engine merged them (deletes and expired versions
//! included: the coordinator reconciles them), and `more` when it stopped before the end
//! of the range (at `limit` cells or [`MAX_ROW_BYTES`] of values).
//!
//! [`row_digest`] folds the canonical digests ([`super::read::cell_digest`]) of the
//! tombstone and of each cell, then `more`: two replicas that would answer the same
//! slice with the same merged cells give the same digest.

use std::ops::Bound;

use md5::{Digest, Md5};
use sibyl_protocol::ConflictMode;

use super::keys::RowPrefix;
use super::read::{cell_digest, CellDigest};
use super::{Replica, ReplicaError};

/// A slice stops once its values pass this many bytes (a peer answer stays far below the
/// peer frame limit).
pub const MAX_ROW_BYTES: usize = 8 << 20;
/// Most stored cells one slice returns.
pub const MAX_ROW_CELLS: u32 = 100_000;

/// A slice of one row's columns (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSlice {
    /// The table.
    pub table: String,
    /// The row's partition key.
    pub partition_key: Vec<u8>,
    /// Where the slice starts (a column name bound).
    pub lower: Bound<Vec<u8>>,
    /// Where it ends, exclusive; `None` = the end of the row.
    pub to: Option<Vec<u8>>,
    /// Most stored cells to return (at most [`MAX_ROW_CELLS`]).
    pub limit: u32,
}

/// One replica's answer to a [`RowSlice`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowCells {
    /// The stored row tombstone, if any.
    pub tombstone: Option<Vec<u8>>,
    /// `(column, stored bytes)` in column order.
    pub cells: Vec<(Vec<u8>, Vec<u8>)>,
    /// The replica stopped before the end of the range.
    pub more: bool,
}

impl Replica {
    /// The stored cells of `slice` (see the module documentation).
    pub fn read_row(&self, slice: &RowSlice) -> Result<RowCells, ReplicaError> {
        let prefix = RowPrefix::new(self.partitioner, &slice.partition_key);
        let tombstone = self.read_raw(&slice.table, prefix.as_bytes())?;
        let lower = match &slice.lower {
            Bound::Included(c) => Bound::Included(prefix.cell_key(c)),
            Bound::Excluded(c) => Bound::Excluded(prefix.cell_key(c)),
            // Strictly after the prefix: the tombstone was read above.
            Bound::Unbounded => Bound::Excluded(prefix.as_bytes().to_vec()),
        };
        let upper = match &slice.to {
            Some(t) => Some(prefix.cell_key(t)),
            None => prefix.upper_bound(),
        };
        let mut iter = self.engine.scan(
            &slice.table,
            lower.as_ref().map(Vec::as_slice),
            match &upper {
                Some(u) => Bound::Excluded(u.as_slice()),
                None => Bound::Unbounded,
            },
            sibyl_storage::Direction::Forward,
        )?;
        let limit = slice.limit.clamp(1, MAX_ROW_CELLS) as usize;
        let mut out = RowCells {
            tombstone,
            ..RowCells::default()
        };
        let mut bytes = 0usize;
        while let Some((k, v)) = iter.next_merged()? {
            let Some(column) = prefix.column_of(k) else {
                continue;
            };
            if out.cells.len() >= limit || bytes >= MAX_ROW_BYTES {
                out.more = true;
                break;
            }
            bytes += column.len() + v.len();
            out.cells.push((column.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// The digest of a replica's answer to a slice of the row `prefix` at `now_secs` (see
/// the module documentation).
pub fn row_digest(
    mode: ConflictMode,
    prefix: &RowPrefix,
    cells: &RowCells,
    now_secs: u64,
) -> CellDigest {
    let mut h = Md5::new();
    if let Some(t) = &cells.tombstone {
        h.update(cell_digest(mode, prefix.as_bytes(), t, now_secs));
    }
    for (column, stored) in &cells.cells {
        h.update(cell_digest(
            mode,
            &prefix.cell_key(column),
            stored,
            now_secs,
        ));
    }
    h.update([u8::from(cells.more)]);
    h.finalize().into()
}
