//! INSERT, DELETE and BATCH.
//!
//! - Causal tables: each cell is read, updated with [`prepare_causal_write`] under the
//!   cell's stripe lock and written back; a column write carries the context of the read it
//!   supersedes (none = a blind write: a sibling of the live versions the node holds; over
//!   a cell the node holds only tombstones of, it supersedes them). A delete writes a
//!   causal tombstone with the context given; a delete without a context supersedes what
//!   this node holds for the cell (Riak's delete without a vclock reads it first), so a
//!   plain "delete this row" removes it, while a concurrent write it never saw survives.
//! - Lww tables: each cell is encoded with the client's timestamp (or the node clock's);
//!   the engine's merge keeps the highest timestamp. Contexts are ignored.
//! - All cells of one insert or delete go into one engine write batch, so a row mutation
//!   is applied whole or not at all — up to `BATCH_BUDGET` (16 MiB) of cells; past that
//!   (a wide row delete) the cells are written in several batches, each atomic.
//! - A row delete tombstones every cell the row holds when the delete runs (plus any column
//!   named by a context). Cells written later are not covered, even in lww tables with an
//!   older client timestamp: Sibyl has no partition tombstone (Cassandra has); it keeps the
//!   store one-key-per-cell, at the cost of that corner of lww semantics.
//! - TTL: the insert's TTL, else the table's default; 0 means "never expires". The expiry
//!   is rounded up to a whole second ([`crate::versioning::ttl`]).
//! - Writes answered together (a run of pipelined INSERTs from one connection, see
//!   [`Service::insert_group`]) share one engine write batch: one commit-log append for
//!   the run. Each insert still succeeds or fails on its own (validation, contexts, sibling
//!   limit); only an engine failure fails the whole run. Causal cells of the run are
//!   prepared under the stripe locks of every cell of the run, taken at once in stripe
//!   order, and a later insert of the run sees the cells an earlier one prepared.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

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

/// Bytes of cells per engine write batch before the batch is written and a new one
/// started (a commit log record stays far below its 256 MiB cap).
const BATCH_BUDGET: usize = 16 << 20;
/// Per-cell encoding overhead counted against [`BATCH_BUDGET`].
const BATCH_OVERHEAD: usize = 16;

/// One cell to write: its column, its new value (`None` = delete) and the raw context.
struct CellWrite<'a> {
    column: &'a [u8],
    value: Option<&'a [u8]>,
    context: &'a [u8],
}

/// A validated row mutation, ready to be prepared under its locks.
struct RowPlan<'a> {
    schema: Arc<TableSchema>,
    /// Engine keys, one per cell.
    keys: Vec<Vec<u8>>,
    cells: Vec<CellWrite<'a>>,
    /// Decoded contexts, one per cell (causal tables only).
    contexts: Vec<Option<Context>>,
    timestamp_micros: i64,
    expires_at_secs: Option<u64>,
}

/// A cell ready for the engine: (engine key, stored cell).
type PreparedCell<'k> = (&'k [u8], Vec<u8>);

/// Cells prepared earlier in the same group, by (table, engine key).
type Overlay<'p> = HashMap<(&'p str, &'p [u8]), Vec<u8>>;

impl Service {
    /// INSERT of one row.
    pub(crate) fn insert(
        &self,
        insert: &RowInsert,
        consistency: Option<Consistency>,
    ) -> Result<(), ServerError> {
        let plan = self.plan_insert(insert, consistency)?;
        self.apply_group(vec![Ok(plan)]).pop().unwrap_or(Ok(()))
    }

    /// Runs several INSERTs with one engine write; one result per insert, in order.
    pub fn insert_group(
        &self,
        inserts: &[(&RowInsert, Option<Consistency>)],
    ) -> Vec<Result<(), ServerError>> {
        let plans = inserts
            .iter()
            .map(|(i, c)| self.plan_insert(i, *c))
            .collect();
        self.apply_group(plans)
    }

    fn plan_insert<'a>(
        &self,
        insert: &'a RowInsert,
        consistency: Option<Consistency>,
    ) -> Result<RowPlan<'a>, ServerError> {
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
        let cells = insert
            .columns
            .iter()
            .map(|c| CellWrite {
                column: &c.name,
                value: Some(&c.value),
                context: &c.context,
            })
            .collect();
        self.plan(schema, &insert.key, insert.timestamp_micros, ttl, cells)
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
        let plan = self.plan(schema, &delete.key, delete.timestamp_micros, None, cells)?;
        self.apply_group(vec![Ok(plan)]).pop().unwrap_or(Ok(()))
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

    /// Keys, timestamp, expiry and decoded contexts of one row mutation. Contexts are
    /// decoded here, before any lock: a forged one fails fast.
    fn plan<'a>(
        &self,
        schema: Arc<TableSchema>,
        key: &[u8],
        timestamp_micros: Option<i64>,
        ttl_secs: Option<u32>,
        cells: Vec<CellWrite<'a>>,
    ) -> Result<RowPlan<'a>, ServerError> {
        let prefix = RowPrefix::new(key);
        let keys = cells.iter().map(|c| prefix.cell_key(c.column)).collect();
        let contexts = match schema.options.conflict_mode {
            ConflictMode::Lww => Vec::new(),
            ConflictMode::Causal => cells
                .iter()
                .map(|c| {
                    if c.context.is_empty() {
                        Ok(None)
                    } else {
                        Context::decode(c.context).map(Some)
                    }
                })
                .collect::<Result<Vec<Option<Context>>, _>>()
                .map_err(versioning_error)?,
        };
        // Rounded up to a whole second: a value never lives less than its TTL.
        let expires_at_secs =
            ttl_secs.map(|t| crate::versioning::expires_at_secs(self.clock.now_micros(), t));
        Ok(RowPlan {
            schema,
            keys,
            cells,
            contexts,
            timestamp_micros: timestamp_micros.unwrap_or_else(|| self.clock.now_micros()),
            expires_at_secs,
        })
    }

    /// Prepares every plan under the stripe locks of all their causal cells and writes
    /// them in one engine batch. A plan that fails keeps its error and writes nothing.
    fn apply_group(
        &self,
        plans: Vec<Result<RowPlan<'_>, ServerError>>,
    ) -> Vec<Result<(), ServerError>> {
        // Every cell's stripe, LWW ones too: besides serialising causal read-modify-writes,
        // the locks keep a concurrent drop of the table out until the write is done.
        let lock_keys: Vec<&[u8]> = plans
            .iter()
            .flatten()
            .flat_map(|p| p.keys.iter().map(Vec::as_slice))
            .collect();
        let guards = self.lock_stripes(&lock_keys);
        // Under the locks: a plan whose table was dropped (or dropped and re-created)
        // since it was planned fails instead of writing into the wrong table.
        let plans: Vec<Result<RowPlan<'_>, ServerError>> = plans
            .into_iter()
            .map(|plan| {
                plan.and_then(|p| {
                    let current = self.schema(&p.schema.name)?;
                    if Arc::ptr_eq(&current, &p.schema) {
                        Ok(p)
                    } else {
                        Err(invalid(format!(
                            "table {:?} was re-created while the write ran; retry it",
                            p.schema.name
                        )))
                    }
                })
            })
            .collect();
        let now_secs = self.clock.now_secs();
        let mut overlay = Overlay::new();
        let mut batch = WriteBatch::new();
        let mut batch_bytes = 0usize;
        let mut in_batch = Vec::with_capacity(plans.len());
        let mut results = Vec::with_capacity(plans.len());
        for (i, plan) in plans.iter().enumerate() {
            let prepared = plan
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|p| self.prepare(p, &overlay, now_secs).map(|cells| (p, cells)));
            match prepared {
                Ok((p, cells)) => {
                    let several = plans.len() > 1;
                    let causal = p.schema.options.conflict_mode == ConflictMode::Causal;
                    results.push(Ok(()));
                    for (k, v) in cells {
                        // Keep engine batches bounded: a wide row delete (or a large group)
                        // is written in several batches. Each batch is atomic; a row delete
                        // is not atomic anyway (see the module doc).
                        let bytes = k.len() + v.len() + BATCH_OVERHEAD;
                        if batch_bytes + bytes > BATCH_BUDGET && !batch.is_empty() {
                            self.write_batch(&batch, &in_batch, &mut results);
                            batch = WriteBatch::new();
                            batch_bytes = 0;
                            in_batch.clear();
                        }
                        if in_batch.last() != Some(&i) {
                            in_batch.push(i);
                        }
                        batch_bytes += bytes;
                        if causal {
                            // Prepared from the cell's merged state under its stripe
                            // lock: it descends everything stored, so the memtable
                            // needs no DVV merge.
                            batch.put_superseding(&p.schema.name, k, &v);
                        } else {
                            batch.put(&p.schema.name, k, &v);
                        }
                        if several && causal {
                            overlay.insert((p.schema.name.as_str(), k), v);
                        }
                    }
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !batch.is_empty() {
            self.write_batch(&batch, &in_batch, &mut results);
        }
        drop(guards);
        results
    }

    /// Writes one engine batch; on failure every plan with cells in it fails.
    fn write_batch(
        &self,
        batch: &WriteBatch,
        plans_in_batch: &[usize],
        results: &mut [Result<(), ServerError>],
    ) {
        if let Err(e) = self.engine.write(batch) {
            let e = storage_error(e);
            for &i in plans_in_batch {
                if let Some(r) = results.get_mut(i) {
                    *r = Err(e.clone());
                }
            }
        }
    }

    /// The new stored cells of one plan, as (engine key, cell).
    fn prepare<'p>(
        &self,
        plan: &'p RowPlan<'_>,
        overlay: &Overlay<'_>,
        now_secs: u64,
    ) -> Result<Vec<PreparedCell<'p>>, ServerError> {
        let mut out = Vec::with_capacity(plan.cells.len());
        let ts = plan.timestamp_micros;
        if plan.schema.options.conflict_mode == ConflictMode::Lww {
            for (k, c) in plan.keys.iter().zip(&plan.cells) {
                let cell = prepare_lww_write(c.value.map(<[u8]>::to_vec), ts, plan.expires_at_secs);
                out.push((k.as_slice(), cell));
            }
            return Ok(out);
        }
        for ((k, c), ctx) in plan.keys.iter().zip(&plan.cells).zip(&plan.contexts) {
            let earlier = if overlay.is_empty() {
                None
            } else {
                overlay
                    .get(&(plan.schema.name.as_str(), k.as_slice()))
                    .cloned()
            };
            let existing = match earlier {
                Some(v) => Some(v),
                // The raw merged entry: prepare_causal_write drops expired siblings itself,
                // so the engine's read filter would only decode it twice.
                None => match self.engine.get_entry(&plan.schema.name, k) {
                    Ok(Some(Entry::Value(v))) => Some(v),
                    Ok(_) => None,
                    Err(e) => return Err(storage_error(e)),
                },
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
                // A blind write over a cell this node holds only tombstones (or expired
                // versions) of: the client read it as absent and can hold no context, so
                // the write supersedes them instead of pairing with a tombstone sibling
                // (wire spec 5.3). A cell with a live version keeps it as a sibling.
                (Some(_), None, Some(stored)) => {
                    let dvv = decode_causal_cell(stored)
                        .map_err(versioning_error)?
                        .without_expired(now_secs);
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
            };
            if let (Some(t), Some(_)) = (plan.expires_at_secs, c.value) {
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
            out.push((k.as_slice(), cell));
        }
        Ok(out)
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

#[cfg(test)]
mod race_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use sibyl_protocol::{ColumnWrite, ConflictMode, Request, Response, RowInsert};

    use super::super::tests::{options, table_options};
    use super::super::Service;
    use crate::versioning::ManualClock;

    fn ddl(svc: &Service, request: Request) {
        let r = svc.handle(request);
        assert!(
            matches!(r, Response::SchemaChanged { applied: true, .. }),
            "{r:?}"
        );
    }

    #[test]
    fn write_planned_before_a_drop_and_recreate_fails_instead_of_landing_in_the_new_table() {
        let dir = tempfile::tempdir().unwrap();
        let svc = Service::open(options(
            dir.path(),
            Arc::new(ManualClock::at_secs(1_700_000_000)),
        ))
        .unwrap();
        let create = |mode| Request::CreateTable {
            name: "t".into(),
            options: table_options(mode),
            if_not_exists: false,
        };
        ddl(&svc, create(ConflictMode::Causal));
        let insert = RowInsert {
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"c"),
                value: Bytes::from_static(b"causal"),
                context: Bytes::new(),
            }],
        };
        // Planned against the causal table...
        let plan = svc.plan_insert(&insert, None);
        assert!(plan.is_ok());
        // ...which is dropped and re-created as LWW before the write runs.
        ddl(
            &svc,
            Request::DropTable {
                name: "t".into(),
                if_exists: false,
            },
        );
        ddl(&svc, create(ConflictMode::Lww));
        let results = svc.apply_group(vec![plan]);
        assert!(matches!(results.as_slice(), [Err(_)]), "{results:?}");
        // Nothing of the causal write reached the new table.
        let r = svc.handle(Request::Get {
            table: "t".into(),
            key: Bytes::from_static(b"k"),
            selector: sibyl_protocol::Selector::All,
            consistency: None,
        });
        match r {
            Response::Row { cells, .. } => assert!(cells.is_empty(), "{cells:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
