//! Minting: new versions created at this node.
//!
//! - Causal cells: each cell is read (its merged state), updated with
//!   [`prepare_causal_write_above`] (a dot above the node's dot clock, see
//!   [`super::dot_clock`]) under the cell's stripe lock and written back superseding
//!   what the engine holds; a cell carries the context of the read it supersedes (none =
//!   a blind write, which becomes a sibling). A delete without a context supersedes what
//!   this node holds for the cell (Riak's delete without a vclock reads it first); deleting
//!   a cell this node does not hold, with no context, mints nothing.
//! - Lww cells: encoded with the row's timestamp; no read, the engine's merge keeps the
//!   highest timestamp. Contexts are ignored.
//! - Rows minted together ([`Replica::mint_group`]) share engine write batches: one
//!   commit-log append for the group, up to [`BATCH_BUDGET`] of cells per batch. Each row
//!   succeeds or fails on its own (contexts, sibling limit); only an engine failure fails
//!   every row with cells in the failed batch. The causal cells of the group are prepared
//!   under the stripe locks of every cell of the group, taken at once in stripe order, and
//!   a later row of the group sees the cells an earlier one prepared.
//! - A row delete ([`MintRow::row_delete`]) writes the row tombstone at the row's key,
//!   merged with the one stored: lww = the row's timestamp; causal = the contexts given,
//!   joined with every version of every cell of the row this node holds (the row is
//!   scanned, under the row's stripe lock) and the stored row tombstone
//!   ([`crate::replica::row_tombstone`]). No cell is rewritten.
//! - Every cell written is handed to the caller's sink as `(row index, engine key,
//!   stored bytes)`: exactly what a coordinator ships to the other replicas, whose
//!   [`Replica::apply`] folds it in.

use std::borrow::Borrow;
use std::collections::HashMap;

use sibyl_protocol::ConflictMode;
use sibyl_storage::{Entry, WriteBatch};

use super::keys::RowPrefix;
use super::{Replica, ReplicaError};
use crate::versioning::{
    decode_causal_cell, prepare_causal_write_above, prepare_lww_write, Context, Sibling,
};

/// Bytes of cells per engine write batch before the batch is written and a new one
/// started (a commit log record stays far below its 256 MiB cap).
pub const BATCH_BUDGET: usize = 16 << 20;
/// Per-cell encoding overhead counted against [`BATCH_BUDGET`].
const BATCH_OVERHEAD: usize = 16;

/// One cell to mint: its new value (`None` = delete) and the decoded context of the read
/// it supersedes (causal tables; `None` = blind).
#[derive(Debug, Clone)]
pub struct MintCell<'a> {
    /// The value; `None` is a delete.
    pub value: Option<&'a [u8]>,
    /// The context the client sent (causal tables only).
    pub context: Option<Context>,
}

/// One row's cells to mint at this node.
#[derive(Debug, Clone)]
pub struct MintRow<'a> {
    /// The engine table.
    pub table: &'a str,
    /// The row (its prefix is the key of its row tombstone).
    pub row: RowPrefix,
    /// The table's conflict mode.
    pub mode: ConflictMode,
    /// The table's sibling limit (causal).
    pub max_siblings: usize,
    /// Engine keys, one per cell (see [`super::keys`]).
    pub keys: Vec<Vec<u8>>,
    /// The cells, in the order of `keys`.
    pub cells: Vec<MintCell<'a>>,
    /// The write timestamp (client's or the coordinator clock's), microseconds.
    pub timestamp_micros: i64,
    /// When the row's values expire (TTL), seconds since the epoch; deletes never expire.
    pub expires_at_secs: Option<u64>,
    /// The client's write id, given to every version the row mints (causal tables): a
    /// cell already holding a version of it is left as it is (the write is a retry).
    pub write_id: Option<u128>,
    /// A whole-row delete, with the contexts the client sent for it (causal tables; see
    /// [`crate::versioning::row_tombstone`]); `None` for no row delete. Minted before the
    /// row's cells: causal cells minted with it land above it and are kept; lww cells at
    /// its timestamp are covered (a delete wins a timestamp tie, as in Cassandra).
    pub row_delete: Option<Vec<Context>>,
}

impl MintRow<'_> {
    /// True when minting reads the row tombstone: a row delete merges into it. Cell
    /// writes never read it: their dots come from the node's dot clock, above every dot a
    /// row tombstone can have seen of this node (see [`super::dot_clock`]).
    fn reads_row_tombstone(&self) -> bool {
        self.row_delete.is_some()
    }
}

/// Where minted cells go: `(row index, table, engine key, stored bytes)`.
pub type MintSink<'s> = &'s mut dyn FnMut(usize, &str, &[u8], &[u8]);

/// A cell ready for the engine: (engine key, stored cell, the merged state it was
/// prepared from when it was read: `Some(None)` = nothing stored; `None` = not read).
type PreparedCell<'k> = (&'k [u8], Vec<u8>, Option<Option<Vec<u8>>>);

/// A cell written by a mint, for the trees: (table, key, value, replaces, read state).
type Written<'a> = (&'a str, &'a [u8], Vec<u8>, bool, Option<Option<Vec<u8>>>);

/// Cells prepared earlier in the same group, by (table, engine key).
type Overlay<'p> = HashMap<(&'p str, &'p [u8]), Vec<u8>>;

impl Replica {
    /// Mints every row under the stripe locks of all their cells and writes them in as
    /// few engine batches as [`BATCH_BUDGET`] allows; one result per row, in order. A row
    /// given as `Err` keeps its error. `recheck(row)` runs under the locks before the row is
    /// prepared (the service checks there that the table was not dropped meanwhile); a
    /// row it refuses writes nothing. `sink`, if given, receives every cell written.
    pub fn mint_group<'m, R, E>(
        &self,
        rows: &[Result<R, E>],
        recheck: impl Fn(&R) -> Result<(), E>,
        mut sink: Option<MintSink<'_>>,
    ) -> Vec<Result<(), E>>
    where
        R: Borrow<MintRow<'m>>,
        E: From<ReplicaError> + Clone,
    {
        // Every cell's stripe, LWW ones too: besides serialising causal read-modify-writes,
        // the locks keep a concurrent drop of the table out until the write is done.
        let guards = self.lock_stripes(rows.iter().flatten().flat_map(|r| {
            let r = r.borrow();
            let row_key = r.reads_row_tombstone().then(|| r.row.as_bytes());
            r.keys.iter().map(Vec::as_slice).chain(row_key)
        }));
        let now_secs = self.clock.now_secs();
        let several = rows.len() > 1;
        let mut overlay = Overlay::new();
        let mut batch = WriteBatch::new();
        let mut batch_bytes = 0usize;
        let mut in_batch: Vec<usize> = Vec::with_capacity(rows.len());
        // The batch's cells for the anti-entropy trees: (table, key, value, replaces, the
        // state it was prepared from if read).
        let mut written: Vec<Written<'_>> = Vec::new();
        let mut results: Vec<Result<(), E>> = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let prepared = row
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|r| recheck(r).map(|()| r.borrow()))
                .and_then(|r| {
                    self.prepare(r, &overlay, now_secs)
                        .map(|cells| (r, cells))
                        .map_err(E::from)
                });
            let (r, cells) = match prepared {
                Ok(p) => p,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            results.push(Ok(()));
            let causal = r.mode == ConflictMode::Causal;
            for (k, v, read) in cells {
                // Keep engine batches bounded: a large group is written in several
                // batches, each atomic.
                let bytes = k.len() + v.len() + BATCH_OVERHEAD;
                if batch_bytes + bytes > BATCH_BUDGET && !batch.is_empty() {
                    self.write_batch(&batch, &written, &in_batch, &mut results);
                    written.clear();
                    batch = WriteBatch::new();
                    batch_bytes = 0;
                    in_batch.clear();
                }
                if in_batch.last() != Some(&i) {
                    in_batch.push(i);
                }
                batch_bytes += bytes;
                let row_tombstone = k == r.row.as_bytes();
                let superseding = causal && !row_tombstone;
                if superseding {
                    // Prepared from the cell's merged state under its stripe lock: it
                    // descends everything stored, so the memtable needs no DVV merge.
                    batch.put_superseding(r.table, k, &v);
                } else {
                    batch.put(r.table, k, &v);
                }
                if let Some(s) = sink.as_mut() {
                    s(i, r.table, k, &v);
                }
                if several && (causal || row_tombstone) {
                    overlay.insert((r.table, k), v.clone());
                }
                written.push((r.table, k, v, superseding, read));
            }
        }
        if !batch.is_empty() {
            self.write_batch(&batch, &written, &in_batch, &mut results);
        }
        drop(guards);
        results
    }

    /// Writes one engine batch; on failure every row with cells in it fails.
    fn write_batch<E: From<ReplicaError> + Clone>(
        &self,
        batch: &WriteBatch,
        written: &[Written<'_>],
        rows_in_batch: &[usize],
        results: &mut [Result<(), E>],
    ) {
        let result = self
            .record_writes(written.iter().map(|(t, k, v, s, read)| {
                (
                    *t,
                    *k,
                    v.as_slice(),
                    *s,
                    read.as_ref().map(Option::as_deref),
                )
            }))
            .and_then(|update| {
                let r = self.engine.write(batch);
                update.settle(r.is_ok());
                Ok(r?)
            });
        if let Err(e) = result {
            let e = E::from(e);
            for &i in rows_in_batch {
                if let Some(r) = results.get_mut(i) {
                    *r = Err(e.clone());
                }
            }
        }
    }

    /// The new stored cells of one row, as (engine key, cell).
    fn prepare<'p>(
        &self,
        row: &'p MintRow<'_>,
        overlay: &Overlay<'_>,
        now_secs: u64,
    ) -> Result<Vec<PreparedCell<'p>>, ReplicaError> {
        let mut out = Vec::with_capacity(row.cells.len() + 1);
        let ts = row.timestamp_micros;
        if let Some(contexts) = &row.row_delete {
            let stored = self.stored_row_tombstone(row.table, row.row.as_bytes(), overlay)?;
            let t = self.prepare_row_delete(row, contexts, stored.as_ref(), overlay)?;
            out.push((row.row.as_bytes(), t.encode(), None));
        }
        if row.mode == ConflictMode::Lww {
            for (k, c) in row.keys.iter().zip(&row.cells) {
                let expiry = c.value.and(row.expires_at_secs);
                let cell = prepare_lww_write(c.value.map(<[u8]>::to_vec), ts, expiry);
                out.push((k.as_slice(), cell, None));
            }
            return Ok(out);
        }
        for (k, c) in row.keys.iter().zip(&row.cells) {
            let earlier = if overlay.is_empty() {
                None
            } else {
                overlay.get(&(row.table, k.as_slice())).cloned()
            };
            let existing = match earlier {
                Some(v) => Some(v),
                // The raw merged entry: prepare_causal_write drops expired siblings itself,
                // so the engine's read filter would only decode it twice.
                None => match self.engine.get_entry(row.table, k)? {
                    Some(Entry::Value(v)) => Some(v),
                    _ => None,
                },
            };
            let local_ctx;
            let ctx = match (c.value, &c.context, &existing) {
                // Deleting a cell that does not exist, with nothing seen: no-op.
                (None, None, None) => continue,
                // A delete without a context supersedes what this node holds.
                (None, None, Some(stored)) => {
                    local_ctx = Context::of(&decode_causal_cell(stored)?);
                    Some(&local_ctx)
                }
                // A blind write over a cell this node holds only tombstones (or expired
                // versions) of: the client read it as absent and can hold no context, so
                // the write supersedes them instead of pairing with a tombstone sibling
                // (wire spec 5.3). A cell with a live version keeps it as a sibling.
                (Some(_), None, Some(stored)) => {
                    let dvv = decode_causal_cell(stored)?.without_expired(now_secs);
                    if dvv.is_all_tombstones() {
                        local_ctx = Context::of(&dvv);
                        Some(&local_ctx)
                    } else {
                        None
                    }
                }
                (_, ctx, _) => ctx.as_ref(),
            };
            let mut sibling = match c.value {
                Some(v) => Sibling::value(v.to_vec(), ts),
                None => Sibling::tombstone(ts),
            }
            .with_write_id(row.write_id);
            if let (Some(t), Some(_)) = (row.expires_at_secs, c.value) {
                sibling = sibling.with_expiry(t);
            }
            // The dot must exceed what the context names of this node (the stored
            // cell's own counter is below the dot clock: every dot came from it).
            let seen = ctx.map_or(0, |c| c.vv().get(&self.actor));
            let cell = prepare_causal_write_above(
                existing.as_deref(),
                ctx,
                sibling,
                self.actor,
                self.next_dot_floor(seen)?,
                row.max_siblings,
                now_secs,
            )?;
            out.push((k.as_slice(), cell, Some(existing)));
        }
        Ok(out)
    }
}
