//! INSERT, DELETE and BATCH.
//!
//! The service validates, plans and checks consistency; minting (the read-modify-write of
//! causal cells under stripe locks, engine batches) is the replica's
//! ([`crate::replica::mint`]).
//!
//! - Causal tables: each cell is read, updated with
//!   [`crate::versioning::prepare_causal_write`] under the cell's stripe lock and written
//!   back; a column write carries the context of the read it supersedes (none = a blind
//!   write: a sibling of the live versions the node holds; over a cell the node holds only
//!   tombstones of, it supersedes them). A delete writes a causal
//!   tombstone with the context given; a delete without a context supersedes what this
//!   node holds for the cell (Riak's delete without a vclock reads it first), so a plain
//!   "delete this row" removes it, while a concurrent write it never saw survives.
//! - Lww tables: each cell is encoded with the client's timestamp (or the node clock's);
//!   the engine's merge keeps the highest timestamp. Contexts are ignored.
//! - All cells of one insert or delete go into one engine write batch, so a row mutation
//!   is applied whole or not at all — up to [`crate::replica::mint::BATCH_BUDGET`] (16 MiB) of cells; past that
//!   (a wide row delete) the cells are written in several batches, each atomic.
//! - A row delete writes one row tombstone ([`crate::versioning::row_tombstone`]): in lww
//!   tables every cell of the row at or below the delete's timestamp is deleted, whenever
//!   it arrives (Cassandra's partition deletion); in causal tables every version the
//!   delete saw (the contexts given, plus every cell this node holds in the row) is
//!   deleted, in any column, while a write it did not see survives.
//! - TTL: the insert's TTL, else the table's default; 0 means "never expires". The expiry
//!   is rounded up to a whole second ([`crate::versioning::ttl`]).
//! - Writes answered together (a run of pipelined INSERTs from one connection, see
//!   [`Service::insert_group`]) share one engine write batch: one commit-log append for
//!   the run. Each insert still succeeds or fails on its own (validation, contexts, sibling
//!   limit); only an engine failure fails the whole run. Causal cells of the run are
//!   prepared under the stripe locks of every cell of the run, taken at once in stripe
//!   order, and a later insert of the run sees the cells an earlier one prepared.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use sibyl_protocol::{
    CellContext, ConflictMode, Consistency, DeleteTarget, Mutation, RowDelete, RowInsert,
    ServerError,
};

use super::keys::RowPrefix;
use super::read::{check_column, check_key};
use super::schema::TableSchema;
use super::{invalid, versioning_error, Service};
use crate::replica::{MintCell, MintRow};
use crate::versioning::Context;

/// One cell to write: its column, its new value (`None` = delete) and the raw context.
struct CellWrite<'a> {
    column: &'a [u8],
    value: Option<&'a [u8]>,
    context: &'a [u8],
}

/// A validated row mutation, ready to be minted under its locks.
struct RowPlan<'a> {
    schema: Arc<TableSchema>,
    row: MintRow<'a>,
}

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
        self.check_consistency(&schema, consistency, schema.options.write_consistency)?;
        self.plan_insert_unchecked(insert)
    }

    /// Validates and plans an INSERT, the consistency left to the caller.
    fn plan_insert_unchecked<'a>(&self, insert: &'a RowInsert) -> Result<RowPlan<'a>, ServerError> {
        let schema = self.schema(&insert.table)?;
        check_key(&insert.key)?;
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
        let cells = insert.columns.iter().map(|c| CellWrite {
            column: &c.name,
            value: Some(&c.value),
            context: &c.context,
        });
        let mut plan = self.plan(
            &insert.table,
            schema,
            &insert.key,
            insert.timestamp_micros,
            ttl,
            cells,
        )?;
        plan.row.write_id = insert.write_id.map(|w| w.0);
        Ok(plan)
    }

    /// DELETE of columns or of a whole row.
    pub(crate) fn delete(
        &self,
        delete: &RowDelete,
        consistency: Option<Consistency>,
    ) -> Result<(), ServerError> {
        let schema = self.schema(&delete.table)?;
        self.check_consistency(&schema, consistency, schema.options.write_consistency)?;
        let plan = self.plan_delete(delete)?;
        self.apply_group(vec![Ok(plan)]).pop().unwrap_or(Ok(()))
    }

    /// Validates and mints one INSERT or DELETE at this node for a coordinator (no
    /// consistency check: the coordinator counts replicas); returns the cells written,
    /// which the coordinator ships to the other replicas.
    pub(crate) fn mint_mutation(
        &self,
        mutation: &Mutation,
    ) -> Result<Vec<crate::replica::RawCell>, ServerError> {
        let plan = match mutation {
            Mutation::Insert(i) => self.plan_insert_unchecked(i)?,
            Mutation::Delete(d) => self.plan_delete(d)?,
        };
        let mut cells = Vec::new();
        let mut sink = |_row: usize, table: &str, key: &[u8], value: &[u8]| {
            cells.push(crate::replica::RawCell {
                table: table.to_owned(),
                key: key.to_vec(),
                value: value.to_vec(),
            })
        };
        let result = self
            .apply_group_into(vec![Ok(plan)], Some(&mut sink))
            .pop()
            .unwrap_or(Ok(()));
        result.map(|()| cells)
    }

    /// Validates and plans a DELETE, the consistency left to the caller.
    fn plan_delete<'a>(&self, delete: &'a RowDelete) -> Result<RowPlan<'a>, ServerError> {
        let schema = self.schema(&delete.table)?;
        check_key(&delete.key)?;
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
        if let DeleteTarget::Row { contexts } = &delete.target {
            // One row tombstone; the contexts only add to what it saw (causal tables).
            let causal = schema.options.conflict_mode == ConflictMode::Causal;
            let seen = contexts
                .iter()
                .filter(|c| causal && !c.context.is_empty())
                .map(|c| Context::decode(&c.context).map_err(versioning_error))
                .collect::<Result<Vec<Context>, ServerError>>()?;
            let mut plan = self.plan(
                &delete.table,
                schema,
                &delete.key,
                delete.timestamp_micros,
                None,
                std::iter::empty(),
            )?;
            plan.row.row_delete = Some(seen);
            return Ok(plan);
        }
        let cells = named.iter().map(|c| CellWrite {
            column: &c.name,
            value: None,
            context: &c.context,
        });
        let mut plan = self.plan(
            &delete.table,
            schema,
            &delete.key,
            delete.timestamp_micros,
            None,
            cells,
        )?;
        plan.row.write_id = delete.write_id.map(|w| w.0);
        Ok(plan)
    }

    /// BATCH: each run of consecutive INSERTs applied as one engine write (as pipelined
    /// INSERTs are; one insert's failure fails only that insert), each DELETE on its own,
    /// in order; the first failure is returned after all were tried.
    pub(crate) fn batch(
        &self,
        mutations: &[Mutation],
        consistency: Option<Consistency>,
    ) -> Result<(), ServerError> {
        let mut first_error = None;
        let mut rest = mutations;
        while let Some((m, after)) = rest.split_first() {
            match m {
                // A run of INSERTs is one engine write, as pipelined INSERTs are.
                Mutation::Insert(_) => {
                    let run: Vec<(&RowInsert, Option<Consistency>)> = rest
                        .iter()
                        .map_while(|m| match m {
                            Mutation::Insert(i) => Some((i, consistency)),
                            Mutation::Delete(_) => None,
                        })
                        .collect();
                    rest = rest.get(run.len()..).unwrap_or_default();
                    for r in self.insert_group(&run) {
                        if let Err(e) = r {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Mutation::Delete(d) => {
                    if let Err(e) = self.delete(d, consistency) {
                        first_error.get_or_insert(e);
                    }
                    rest = after;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Keys, timestamp, expiry and decoded contexts of one row mutation. Contexts are
    /// decoded here, before any lock: a forged one fails fast.
    fn plan<'a>(
        &self,
        table: &'a str,
        schema: Arc<TableSchema>,
        key: &[u8],
        timestamp_micros: Option<i64>,
        ttl_secs: Option<u32>,
        cells: impl ExactSizeIterator<Item = CellWrite<'a>>,
    ) -> Result<RowPlan<'a>, ServerError> {
        let prefix = RowPrefix::new(self.opts.partitioner, key);
        let causal = schema.options.conflict_mode == ConflictMode::Causal;
        let mut keys = Vec::with_capacity(cells.len());
        let mut mint_cells = Vec::with_capacity(cells.len());
        for c in cells {
            let context = if causal && !c.context.is_empty() {
                Some(Context::decode(c.context).map_err(versioning_error)?)
            } else {
                None
            };
            keys.push(prefix.cell_key(c.column));
            mint_cells.push(MintCell {
                value: c.value,
                context,
            });
        }
        let cells = mint_cells;
        // Rounded up to a whole second: a value never lives less than its TTL.
        let expires_at_secs =
            ttl_secs.map(|t| crate::versioning::expires_at_secs(self.clock.now_micros(), t));
        let row = MintRow {
            table,
            row: prefix,
            mode: schema.options.conflict_mode,
            max_siblings: self.opts.max_siblings,
            keys,
            cells,
            timestamp_micros: timestamp_micros.unwrap_or_else(|| self.clock.now_micros()),
            expires_at_secs,
            write_id: None,
            row_delete: None,
        };
        Ok(RowPlan { schema, row })
    }

    /// Mints every plan under the stripe locks of all their cells, in one engine batch
    /// where it fits (see [`crate::replica::mint`]). A plan that fails keeps its error and
    /// writes nothing.
    fn apply_group(
        &self,
        plans: Vec<Result<RowPlan<'_>, ServerError>>,
    ) -> Vec<Result<(), ServerError>> {
        self.apply_group_into(plans, None)
    }

    /// [`Service::apply_group`], handing every cell written to `sink`.
    fn apply_group_into(
        &self,
        plans: Vec<Result<RowPlan<'_>, ServerError>>,
        sink: Option<crate::replica::mint::MintSink<'_>>,
    ) -> Vec<Result<(), ServerError>> {
        // Under the locks: a plan whose table was dropped (or dropped and re-created)
        // since it was planned fails instead of writing into the wrong table.
        let recheck = |p: &RowPlan<'_>| -> Result<(), ServerError> {
            let current = self.schema(&p.schema.name)?;
            if Arc::ptr_eq(&current, &p.schema) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "table {:?} was re-created while the write ran; retry it",
                    p.schema.name
                )))
            }
        };
        self.replica.mint_group(&plans, recheck, sink)
    }
}

impl<'a> std::borrow::Borrow<MintRow<'a>> for RowPlan<'a> {
    fn borrow(&self) -> &MintRow<'a> {
        &self.row
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
            write_id: None,
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
