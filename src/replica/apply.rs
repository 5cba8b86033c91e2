//! Applying cells minted elsewhere: merge only, never a new version.
//!
//! Each [`RawCell`] is checked before it reaches the engine — its key must be a
//! well-formed key of this node's partitioner whose token is its partition key's token
//! (a cell misrouted from a node with another partitioner, or damaged, is refused), and
//! its value must decode as a cell of the table's conflict mode (at a row's own key, an
//! empty column, as a row tombstone of that mode) — then written with a
//! plain put: the engine folds it into what it holds with the table's merge policy (DVV
//! sync for causal tables, the LWW winner for lww tables). Both are commutative,
//! associative and idempotent, so applying the same cells in any order, any number of
//! times, gives the same state. No dot is minted and no clock is read.
//!
//! The cells of one call go into one engine write batch per [`super::mint::BATCH_BUDGET`]
//! (atomic per batch), under their stripe locks (see the module doc of [`super`]).

use sibyl_protocol::ConflictMode;
use sibyl_storage::WriteBatch;

use super::codec::RawCell;
use super::keys::split_engine_key;
use super::mint::BATCH_BUDGET;
use super::{Replica, ReplicaError};
use crate::versioning::{check_causal_cell, LwwCell, RowTombstone};

/// A cell refused by [`Replica::apply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCell {
    /// The key is not a well-formed engine key of this node's partitioner, or its token
    /// is not the token of its partition key.
    #[error("cell {index}: malformed engine key ({reason})")]
    Key {
        /// The cell's position in the call.
        index: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The value does not decode as a cell of the table's conflict mode.
    #[error("cell {index}: stored value is not a valid {mode} cell: {reason}")]
    Value {
        /// The cell's position in the call.
        index: usize,
        /// `"causal"`, `"lww"` or `"row tombstone"`.
        mode: &'static str,
        /// The decoder's reason.
        reason: String,
    },
    /// The table is unknown to the caller's schema.
    #[error("cell {index}: unknown table {table:?}")]
    UnknownTable {
        /// The cell's position in the call.
        index: usize,
        /// The table.
        table: String,
    },
}

impl Replica {
    /// Checks one cell against the partitioner and `mode` (see the module doc).
    pub fn check_cell(
        &self,
        index: usize,
        cell: &RawCell,
        mode: ConflictMode,
    ) -> Result<(), InvalidCell> {
        let key_error = |reason| InvalidCell::Key { index, reason };
        let parts = split_engine_key(self.partitioner, &cell.key)
            .ok_or_else(|| key_error("not a key of this partitioner"))?;
        if parts.partition_key.is_empty() {
            return Err(key_error("empty partition key"));
        }
        if self.partitioner.token(parts.partition_key) != parts.token {
            return Err(key_error("token is not the partition key's token"));
        }
        let value_error = |mode, reason: String| InvalidCell::Value {
            index,
            mode,
            reason,
        };
        if parts.column.is_empty() {
            // The row's key: only its row tombstone lives there.
            return match (mode, RowTombstone::decode(&cell.value)) {
                (ConflictMode::Causal, Ok(RowTombstone::Causal { .. }))
                | (ConflictMode::Lww, Ok(RowTombstone::Lww { .. })) => Ok(()),
                (_, Ok(_)) => Err(value_error(
                    "row tombstone",
                    format!("a row tombstone of the other conflict mode in a {mode:?} table"),
                )),
                (_, Err(e)) => Err(value_error("row tombstone", e.to_string())),
            };
        }
        match mode {
            ConflictMode::Causal => {
                check_causal_cell(&cell.value).map_err(|e| value_error("causal", e.to_string()))
            }
            ConflictMode::Lww => LwwCell::decode(&cell.value)
                .map(drop)
                .map_err(|e| value_error("lww", e.to_string())),
        }
    }

    /// Folds `cells` (minted elsewhere) into this replica by merge. `mode_of` gives each
    /// table's conflict mode (`None` = unknown table); it is called under the cells'
    /// stripe locks, so it must not take them. Every cell is checked first; one bad cell
    /// refuses the whole call and writes nothing.
    pub fn apply(
        &self,
        cells: &[RawCell],
        mode_of: impl Fn(&str) -> Option<ConflictMode>,
    ) -> Result<(), ReplicaError> {
        // Mints read-modify-write under these locks and replace the memtable entry: an
        // applied cell must not land between a mint's read and its write. A table drop
        // holds every stripe, so the tables are checked under them: a table dropped and
        // re-created with another conflict mode never receives cells checked against the
        // old one.
        let _guards = self.lock_stripes(cells.iter().map(|c| c.key.as_slice()));
        for (index, c) in cells.iter().enumerate() {
            let mode = mode_of(&c.table).ok_or_else(|| InvalidCell::UnknownTable {
                index,
                table: c.table.clone(),
            })?;
            self.check_cell(index, c, mode)?;
        }
        let mut batch = WriteBatch::new();
        let mut bytes = 0usize;
        let mut first = 0usize;
        for (i, c) in cells.iter().enumerate() {
            let len = c.key.len() + c.value.len();
            if bytes + len > BATCH_BUDGET && !batch.is_empty() {
                self.write_tracked(&batch, &cells[first..i])?;
                batch = WriteBatch::new();
                bytes = 0;
                first = i;
            }
            batch.put(&c.table, &c.key, &c.value);
            bytes += len;
        }
        if !batch.is_empty() {
            self.write_tracked(&batch, &cells[first..])?;
        }
        Ok(())
    }

    /// Writes `batch` (holding `cells`), recording them in the anti-entropy trees.
    fn write_tracked(&self, batch: &WriteBatch, cells: &[RawCell]) -> Result<(), ReplicaError> {
        let update = self.record_writes(cells.iter().map(|c| {
            (
                c.table.as_str(),
                c.key.as_slice(),
                c.value.as_slice(),
                false,
                None,
            )
        }))?;
        let result = self.engine.write(batch);
        update.settle(result.is_ok());
        Ok(result?)
    }
}
