//! INSERT, DELETE and BATCH.
//!
//! - Causal tables: each cell is read, updated with [`prepare_causal_write`] under the
//!   cell's stripe lock and written back; a column write carries the context of the read it
//!   supersedes (none = a blind write, which becomes a sibling). A delete writes a causal
//!   tombstone with the context given; a delete without a context supersedes what this
//!   node holds for the cell (Riak's delete without a vclock reads it first), so a plain
//!   "delete this row" removes it, while a concurrent write it never saw survives.
//! - Lww tables: each cell is encoded with the client's timestamp (or the node clock's);
//!   the engine's merge keeps the highest timestamp. Contexts are ignored.
//! - All cells of one insert or delete go into one engine write batch: a row mutation is
//!   applied whole or not at all.
//! - A row delete tombstones every cell the row holds when the delete runs (plus any column
//!   named by a context). Cells written later are not covered, even in lww tables with an
//!   older client timestamp: Sibyl has no partition tombstone (Cassandra has); it keeps the
//!   store one-key-per-cell, at the cost of that corner of lww semantics.
//! - TTL: the insert's TTL, else the table's default; 0 means "never expires".

use std::collections::HashSet;
use std::ops::Bound;

use bytes::Bytes;
use sibyl_protocol::{
    CellContext, ConflictMode, Consistency, DeleteTarget, Mutation, RowDelete, RowInsert,
    ServerError,
};
use sibyl_storage::{Direction, Entry, WriteBatch};

use super::keys::RowPrefix;
use super::read::{check_column, check_key};
use super::schema::TableSchema;
use super::{invalid, storage_error, versioning_error, Service};
use crate::versioning::{
    decode_causal_cell, prepare_causal_write, prepare_lww_write, Context, Sibling,
};

/// One cell to write: its column, its new value (`None` = delete) and the raw context.
struct CellWrite<'a> {
    column: &'a [u8],
    value: Option<&'a [u8]>,
    context: &'a [u8],
}

impl Service {
    /// INSERT of one row.
    pub(crate) fn insert(
        &self,
        insert: &RowInsert,
        consistency: Option<Consistency>,
    ) -> Result<(), ServerError> {
        let schema = self.schema(&insert.table)?;
        check_key(&insert.key)?;
        self.check_consistency(&schema, consistency, schema.options.write_consistency)?;
        if insert.columns.is_empty() {
            return Err(invalid("an insert must write at least one column"));
        }
        for c in &insert.columns {
            check_column(&c.name)?;
            if c.value.len() > self.opts.max_value_len {
                return Err(invalid(format!(
                    "value of column {:?} is {} bytes, over the limit of {}",
                    String::from_utf8_lossy(&c.name),
                    c.value.len(),
                    self.opts.max_value_len
                )));
            }
        }
        check_distinct(insert.columns.iter().map(|c| &c.name))?;
        let ttl = match insert.ttl_secs.or(schema.options.default_ttl_secs) {
            Some(0) | None => None,
            Some(t) => Some(t),
        };
        let cells: Vec<CellWrite<'_>> = insert
            .columns
            .iter()
            .map(|c| CellWrite {
                column: &c.name,
                value: Some(&c.value),
                context: &c.context,
            })
            .collect();
        self.apply(&schema, &insert.key, insert.timestamp_micros, ttl, &cells)
    }

    /// DELETE of columns or of a whole row.
    pub(crate) fn delete(
        &self,
        delete: &RowDelete,
        consistency: Option<Consistency>,
    ) -> Result<(), ServerError> {
        let schema = self.schema(&delete.table)?;
        check_key(&delete.key)?;
        self.check_consistency(&schema, consistency, schema.options.write_consistency)?;
        let named: &[CellContext] = match &delete.target {
            DeleteTarget::Columns(cells) => {
                if cells.is_empty() {
                    return Err(invalid("a column delete must name at least one column"));
                }
                cells
            }
            DeleteTarget::Row { contexts } => contexts,
        };
        for c in named {
            check_column(&c.name)?;
        }
        check_distinct(named.iter().map(|c| &c.name))?;
        let mut cells: Vec<CellWrite<'_>> = named
            .iter()
            .map(|c| CellWrite {
                column: &c.name,
                value: None,
                context: &c.context,
            })
            .collect();
        let existing;
        if matches!(delete.target, DeleteTarget::Row { .. }) {
            existing = self.row_columns(&schema, &delete.key)?;
            let seen: HashSet<&[u8]> = named.iter().map(|c| &c.name[..]).collect();
            cells.extend(
                existing
                    .iter()
                    .filter(|c| !seen.contains(c.as_slice()))
                    .map(|c| CellWrite {
                        column: c,
                        value: None,
                        context: &[],
                    }),
            );
            if cells.is_empty() {
                return Ok(());
            }
        }
        self.apply(&schema, &delete.key, delete.timestamp_micros, None, &cells)
    }

    /// BATCH: each mutation applied on its own; the first failure is returned after all
    /// were tried.
    pub(crate) fn batch(
        &self,
        mutations: &[Mutation],
        consistency: Option<Consistency>,
    ) -> Result<(), ServerError> {
        let mut first_error = None;
        for m in mutations {
            let r = match m {
                Mutation::Insert(i) => self.insert(i, consistency),
                Mutation::Delete(d) => self.delete(d, consistency),
            };
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Column names of every live cell of a row.
    fn row_columns(&self, schema: &TableSchema, key: &[u8]) -> Result<Vec<Vec<u8>>, ServerError> {
        let prefix = RowPrefix::new(key);
        let upper = prefix.upper_bound();
        let mut iter = self
            .engine
            .scan(
                &schema.name,
                Bound::Included(prefix.as_bytes()),
                match &upper {
                    Some(u) => Bound::Excluded(u.as_slice()),
                    None => Bound::Unbounded,
                },
                Direction::Forward,
            )
            .map_err(storage_error)?;
        let mut out = Vec::new();
        while let Some((k, _)) = iter.next_entry().map_err(storage_error)? {
            if let Some(c) = prefix.column_of(k) {
                out.push(c.to_vec());
            }
        }
        Ok(out)
    }

    /// Writes the cells of one row in one engine batch.
    fn apply(
        &self,
        schema: &TableSchema,
        key: &[u8],
        timestamp_micros: Option<i64>,
        ttl_secs: Option<u32>,
        cells: &[CellWrite<'_>],
    ) -> Result<(), ServerError> {
        let prefix = RowPrefix::new(key);
        let now_micros = self.clock.now_micros();
        let now_secs = self.clock.now_secs();
        let ts = timestamp_micros.unwrap_or(now_micros);
        let expires = ttl_secs.map(|t| now_secs.saturating_add(u64::from(t)));
        let keys: Vec<Vec<u8>> = cells.iter().map(|c| prefix.cell_key(c.column)).collect();
        let mut batch = WriteBatch::new();
        match schema.options.conflict_mode {
            ConflictMode::Lww => {
                for (k, c) in keys.iter().zip(cells) {
                    let cell = prepare_lww_write(c.value.map(<[u8]>::to_vec), ts, expires);
                    batch.put(&schema.name, k, &cell);
                }
                self.engine.write(&batch).map_err(storage_error)
            }
            ConflictMode::Causal => {
                // Decode contexts before taking any lock: a forged one fails fast.
                let contexts = cells
                    .iter()
                    .map(|c| {
                        if c.context.is_empty() {
                            Ok(None)
                        } else {
                            Context::decode(c.context).map(Some)
                        }
                    })
                    .collect::<Result<Vec<Option<Context>>, _>>()
                    .map_err(versioning_error)?;
                let _guards = self.lock_stripes(&keys);
                for ((k, c), ctx) in keys.iter().zip(cells).zip(&contexts) {
                    // The raw merged entry: prepare_causal_write drops expired siblings
                    // itself, so the engine's read filter would only decode it twice.
                    let existing = match self.engine.get_entry(&schema.name, k) {
                        Ok(Some(Entry::Value(v))) => Some(v),
                        Ok(_) => None,
                        Err(e) => return Err(storage_error(e)),
                    };
                    let local_ctx;
                    let ctx = match (c.value, ctx, &existing) {
                        // Deleting a cell that does not exist, with nothing seen: no-op.
                        (None, None, None) => continue,
                        // A delete without a context supersedes what this node holds.
                        (None, None, Some(stored)) => {
                            let dvv = decode_causal_cell(stored).map_err(versioning_error)?;
                            local_ctx = Context::of(&dvv);
                            Some(&local_ctx)
                        }
                        (_, ctx, _) => ctx.as_ref(),
                    };
                    let mut sibling = match c.value {
                        Some(v) => Sibling::value(v.to_vec(), ts),
                        None => Sibling::tombstone(ts),
                    };
                    if let (Some(t), Some(_)) = (expires, c.value) {
                        sibling = sibling.with_expiry(t);
                    }
                    let cell = prepare_causal_write(
                        existing.as_deref(),
                        ctx,
                        sibling,
                        self.actor,
                        self.opts.max_siblings,
                        now_secs,
                    )
                    .map_err(versioning_error)?;
                    batch.put(&schema.name, k, &cell);
                }
                if batch.is_empty() {
                    return Ok(());
                }
                self.engine.write(&batch).map_err(storage_error)
            }
        }
    }
}

/// Refuses a mutation that names a column twice: two updates of one causal cell in one
/// batch would mint the same dot for two values.
fn check_distinct<'a>(names: impl Iterator<Item = &'a Bytes>) -> Result<(), ServerError> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(&n[..]) {
            return Err(invalid(format!(
                "column {:?} appears twice in one mutation",
                String::from_utf8_lossy(n)
            )));
        }
    }
    Ok(())
}
