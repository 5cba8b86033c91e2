//! The write builders a [`Table`] returns: [`PutRequest`], [`DeleteRequest`], and the
//! [`BatchRequest`] that groups them. `context_from(&row)` attaches to each written or
//! deleted column the context `row` returned for it, so a write supersedes exactly what
//! was read. Every builder can be `.await`ed directly.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use bytes::Bytes;

use crate::client::error::ClientError;
use crate::client::row::Row;
use crate::client::table::{BoxFuture, CallOptions, Table};
use crate::client::{unexpected, Client};
use crate::message::request::{DeleteTarget, Mutation, Request, RowDelete, RowInsert, WriteId};
use crate::message::response::Response;
use crate::message::types::{CellContext, ColumnWrite, Consistency, ResponseMeta};

/// Contexts of the cells a read returned, by column name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Contexts {
    pub(crate) by_name: HashMap<Bytes, Bytes>,
}

impl Contexts {
    fn add_row(&mut self, row: &Row) {
        for cell in &row.cells {
            self.by_name.insert(cell.name.clone(), cell.context.clone());
        }
    }

    fn get(&self, name: &Bytes) -> Bytes {
        self.by_name.get(name).cloned().unwrap_or_default()
    }

    fn all(&self) -> Vec<CellContext> {
        let mut v: Vec<CellContext> = self
            .by_name
            .iter()
            .map(|(n, c)| CellContext {
                name: n.clone(),
                context: c.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// A write of columns to one row; awaits to the response metadata.
#[derive(Debug, Clone)]
pub struct PutRequest {
    pub(crate) table: Table,
    pub(crate) key: Bytes,
    pub(crate) columns: Vec<(Bytes, Bytes)>,
    pub(crate) contexts: Contexts,
    pub(crate) ttl_secs: Option<u32>,
    pub(crate) timestamp_micros: Option<i64>,
    pub(crate) write_id: WriteId,
    pub(crate) call: CallOptions,
}

impl PutRequest {
    /// Adds a column.
    pub fn column(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.columns.push((name.into(), value.into()));
        self
    }

    /// Writes each column as superseding what `row` returned for it (columns `row` did
    /// not return are blind writes). May be called for several rows.
    pub fn context_from(mut self, row: &Row) -> Self {
        self.contexts.add_row(row);
        self
    }

    /// Sets an explicit context for one column.
    pub fn context(mut self, column: impl Into<Bytes>, context: Bytes) -> Self {
        self.contexts.by_name.insert(column.into(), context);
        self
    }

    /// Time to live of the written columns.
    pub fn ttl(mut self, secs: u32) -> Self {
        self.ttl_secs = Some(secs);
        self
    }

    /// Client-supplied write time (lww tables).
    pub fn timestamp_micros(mut self, ts: i64) -> Self {
        self.timestamp_micros = Some(ts);
        self
    }

    /// Consistency of this write.
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.call.consistency = Some(c);
        self
    }

    /// Timeout of this write.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.call.timeout = Some(t);
        self
    }

    /// The mutation this builder describes (for batches).
    pub fn to_mutation(&self) -> Mutation {
        Mutation::Insert(self.row_insert())
    }

    fn row_insert(&self) -> RowInsert {
        RowInsert {
            write_id: Some(self.write_id),
            table: self.table.name.clone(),
            key: self.key.clone(),
            ttl_secs: self.ttl_secs,
            timestamp_micros: self.timestamp_micros,
            columns: self
                .columns
                .iter()
                .map(|(n, v)| ColumnWrite {
                    name: n.clone(),
                    value: v.clone(),
                    context: self.contexts.get(n),
                })
                .collect(),
        }
    }

    /// Sends the write.
    pub async fn send(self) -> Result<ResponseMeta, ClientError> {
        let request = Request::Insert {
            insert: self.row_insert(),
            consistency: self.call.consistency,
        };
        match self.call.send(&self.table.client, request).await? {
            Response::Written { meta } => Ok(meta),
            other => Err(unexpected("INSERT", other)),
        }
    }
}

impl IntoFuture for PutRequest {
    type Output = Result<ResponseMeta, ClientError>;
    type IntoFuture = BoxFuture<ResponseMeta>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A delete of columns or of a whole row; awaits to the response metadata.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub(crate) table: Table,
    pub(crate) key: Bytes,
    /// `None` = the whole row.
    pub(crate) columns: Option<Vec<Bytes>>,
    pub(crate) contexts: Contexts,
    pub(crate) timestamp_micros: Option<i64>,
    pub(crate) write_id: WriteId,
    pub(crate) call: CallOptions,
}

impl DeleteRequest {
    /// Deletes exactly what `row` returned (each column's context; for a row delete, the
    /// contexts of every cell read).
    pub fn context_from(mut self, row: &Row) -> Self {
        self.contexts.add_row(row);
        self
    }

    /// Client-supplied delete time (lww tables).
    pub fn timestamp_micros(mut self, ts: i64) -> Self {
        self.timestamp_micros = Some(ts);
        self
    }

    /// Consistency of this delete.
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.call.consistency = Some(c);
        self
    }

    /// Timeout of this delete.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.call.timeout = Some(t);
        self
    }

    /// The mutation this builder describes (for batches).
    pub fn to_mutation(&self) -> Mutation {
        Mutation::Delete(self.row_delete())
    }

    fn row_delete(&self) -> RowDelete {
        let target = match &self.columns {
            Some(cols) => DeleteTarget::Columns(
                cols.iter()
                    .map(|n| CellContext {
                        name: n.clone(),
                        context: self.contexts.get(n),
                    })
                    .collect(),
            ),
            None => DeleteTarget::Row {
                contexts: self.contexts.all(),
            },
        };
        RowDelete {
            write_id: Some(self.write_id),
            table: self.table.name.clone(),
            key: self.key.clone(),
            timestamp_micros: self.timestamp_micros,
            target,
        }
    }

    /// Sends the delete.
    pub async fn send(self) -> Result<ResponseMeta, ClientError> {
        let request = Request::Delete {
            delete: self.row_delete(),
            consistency: self.call.consistency,
        };
        match self.call.send(&self.table.client, request).await? {
            Response::Written { meta } => Ok(meta),
            other => Err(unexpected("DELETE", other)),
        }
    }
}

impl IntoFuture for DeleteRequest {
    type Output = Result<ResponseMeta, ClientError>;
    type IntoFuture = BoxFuture<ResponseMeta>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// Several puts and deletes, any tables and keys, sent as one request. Not atomic across
/// keys. Awaits to the response metadata.
#[derive(Debug, Clone)]
pub struct BatchRequest {
    pub(crate) client: Client,
    pub(crate) mutations: Vec<Mutation>,
    pub(crate) call: CallOptions,
}

impl BatchRequest {
    pub(crate) fn new(client: Client) -> Self {
        BatchRequest {
            client,
            mutations: Vec::new(),
            call: CallOptions::default(),
        }
    }

    /// Adds a put built with [`Table::put`] (its consistency and timeout are ignored).
    pub fn put(mut self, put: PutRequest) -> Self {
        self.mutations.push(put.to_mutation());
        self
    }

    /// Adds a delete built with [`Table::delete`] and friends.
    pub fn delete(mut self, delete: DeleteRequest) -> Self {
        self.mutations.push(delete.to_mutation());
        self
    }

    /// Adds a raw mutation.
    pub fn mutation(mut self, m: Mutation) -> Self {
        self.mutations.push(m);
        self
    }

    /// Consistency of every mutation in the batch.
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.call.consistency = Some(c);
        self
    }

    /// Timeout of the batch.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.call.timeout = Some(t);
        self
    }

    /// Sends the batch.
    pub async fn send(self) -> Result<ResponseMeta, ClientError> {
        let request = Request::Batch {
            mutations: self.mutations,
            consistency: self.call.consistency,
        };
        match self.call.send(&self.client, request).await? {
            Response::Written { meta } => Ok(meta),
            other => Err(unexpected("BATCH", other)),
        }
    }
}

impl IntoFuture for BatchRequest {
    type Output = Result<ResponseMeta, ClientError>;
    type IntoFuture = BoxFuture<ResponseMeta>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}
