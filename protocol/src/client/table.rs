//! [`Table`]: the handle users call (`client.table("users").get(key).await`), and the
//! request builders it returns. Every builder can be `.await`ed directly (it implements
//! `IntoFuture`) or refined first: `.consistency(..)`, `.timeout(..)`, and for writes
//! `.context_from(&row)`, which attaches to each written or deleted column the context
//! that `row` returned for it.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::ops::{Bound, RangeBounds};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::client::error::ClientError;
use crate::client::row::{Page, Row};
use crate::client::{unexpected, Client};
use crate::message::request::{DeleteTarget, Mutation, Request, RowDelete, RowInsert};
use crate::message::response::Response;
use crate::message::types::{CellContext, ColumnWrite, Consistency, ResponseMeta, Selector};

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'static>>;

/// A handle on one table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Table {
    client: Client,
    name: String,
}

/// Per-call settings shared by every builder.
#[derive(Debug, Clone, Default)]
struct CallOptions {
    consistency: Option<Consistency>,
    timeout: Option<Duration>,
}

impl CallOptions {
    async fn send(&self, client: &Client, request: Request) -> Result<Response, ClientError> {
        let timeout = self.timeout.unwrap_or(client.options().request_timeout);
        client.request_with_timeout(request, timeout).await
    }
}

/// Contexts of the cells a read returned, by column name.
#[derive(Debug, Clone, Default)]
struct Contexts {
    by_name: HashMap<Bytes, Bytes>,
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

impl Table {
    pub(crate) fn new(client: Client, name: String) -> Self {
        Table { client, name }
    }

    /// The table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the whole row.
    pub fn get(&self, key: impl Into<Bytes>) -> GetRequest {
        GetRequest {
            table: self.clone(),
            key: key.into(),
            selector: Selector::All,
            call: CallOptions::default(),
        }
    }

    /// Reads the named columns of a row.
    pub fn get_columns<N: AsRef<[u8]>>(&self, key: impl Into<Bytes>, names: &[N]) -> GetRequest {
        let names = names
            .iter()
            .map(|n| Bytes::copy_from_slice(n.as_ref()))
            .collect();
        GetRequest {
            table: self.clone(),
            key: key.into(),
            selector: Selector::Columns(names),
            call: CallOptions::default(),
        }
    }

    /// Reads at most `limit` columns of a row whose names fall in `range` (byte order;
    /// `..`, `a..b`, `a..=b`, `a..` all work), one page at a time: pass the returned
    /// page to [`SliceRequest::after`] for the next.
    pub fn slice<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        key: impl Into<Bytes>,
        range: R,
        limit: u32,
    ) -> SliceRequest {
        // The wire slice is [from, to); the smallest name after `b` is `b` + 0x00.
        let after = |b: &K| {
            let mut v = b.as_ref().to_vec();
            v.push(0);
            Bytes::from(v)
        };
        let from = match range.start_bound() {
            Bound::Included(b) => Some(Bytes::copy_from_slice(b.as_ref())),
            Bound::Excluded(b) => Some(after(b)),
            Bound::Unbounded => None,
        };
        let to = match range.end_bound() {
            Bound::Included(b) => Some(after(b)),
            Bound::Excluded(b) => Some(Bytes::copy_from_slice(b.as_ref())),
            Bound::Unbounded => None,
        };
        SliceRequest {
            table: self.clone(),
            key: key.into(),
            from,
            to,
            limit,
            paging: None,
            call: CallOptions::default(),
        }
    }

    /// Writes columns of a row. Add more with [`PutRequest::column`]; attach read
    /// contexts with [`PutRequest::context_from`].
    pub fn put<N, V, I>(&self, key: impl Into<Bytes>, columns: I) -> PutRequest
    where
        N: Into<Bytes>,
        V: Into<Bytes>,
        I: IntoIterator<Item = (N, V)>,
    {
        PutRequest {
            table: self.clone(),
            key: key.into(),
            columns: columns
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
            contexts: Contexts::default(),
            ttl_secs: None,
            timestamp_micros: None,
            call: CallOptions::default(),
        }
    }

    /// Deletes one column.
    pub fn delete(&self, key: impl Into<Bytes>, column: impl Into<Bytes>) -> DeleteRequest {
        self.delete_columns(key, [column])
    }

    /// Deletes several columns.
    pub fn delete_columns<N: Into<Bytes>>(
        &self,
        key: impl Into<Bytes>,
        columns: impl IntoIterator<Item = N>,
    ) -> DeleteRequest {
        DeleteRequest {
            table: self.clone(),
            key: key.into(),
            columns: Some(columns.into_iter().map(Into::into).collect()),
            contexts: Contexts::default(),
            timestamp_micros: None,
            call: CallOptions::default(),
        }
    }

    /// Deletes the whole row (with `context_from(&row)`, superseding exactly what was read).
    pub fn delete_row(&self, key: impl Into<Bytes>) -> DeleteRequest {
        DeleteRequest {
            table: self.clone(),
            key: key.into(),
            columns: None,
            contexts: Contexts::default(),
            timestamp_micros: None,
            call: CallOptions::default(),
        }
    }
}

/// A point read (whole row or named columns); awaits to a [`Row`].
#[derive(Debug, Clone)]
pub struct GetRequest {
    table: Table,
    key: Bytes,
    selector: Selector,
    call: CallOptions,
}

impl GetRequest {
    /// Consistency of this read (default: the table's).
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.call.consistency = Some(c);
        self
    }

    /// Timeout of this read (default: the client's).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.call.timeout = Some(t);
        self
    }

    /// Sends the read.
    pub async fn send(self) -> Result<Row, ClientError> {
        let request = Request::Get {
            table: self.table.name.clone(),
            key: self.key.clone(),
            selector: self.selector,
            consistency: self.call.consistency,
        };
        match self.call.send(&self.table.client, request).await? {
            Response::Row { cells, meta, .. } => Ok(Row {
                key: self.key,
                cells,
                meta,
            }),
            other => Err(unexpected("GET", other)),
        }
    }
}

impl IntoFuture for GetRequest {
    type Output = Result<Row, ClientError>;
    type IntoFuture = BoxFuture<Row>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A page of a column slice; awaits to a [`Page`].
#[derive(Debug, Clone)]
pub struct SliceRequest {
    table: Table,
    key: Bytes,
    from: Option<Bytes>,
    to: Option<Bytes>,
    limit: u32,
    paging: Option<Bytes>,
    call: CallOptions,
}

impl SliceRequest {
    /// Continues after `page` (uses its paging token).
    pub fn after(mut self, page: &Page) -> Self {
        self.paging = page.next_page.clone();
        self
    }

    /// Continues from a raw paging token.
    pub fn paging(mut self, token: Option<Bytes>) -> Self {
        self.paging = token;
        self
    }

    /// Consistency of this read.
    pub fn consistency(mut self, c: Consistency) -> Self {
        self.call.consistency = Some(c);
        self
    }

    /// Timeout of this read.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.call.timeout = Some(t);
        self
    }

    /// Sends the read.
    pub async fn send(self) -> Result<Page, ClientError> {
        let request = Request::Get {
            table: self.table.name.clone(),
            key: self.key.clone(),
            selector: Selector::Slice {
                from: self.from,
                to: self.to,
                limit: self.limit,
                paging: self.paging,
            },
            consistency: self.call.consistency,
        };
        match self.call.send(&self.table.client, request).await? {
            Response::Row {
                cells,
                meta,
                next_page,
            } => Ok(Page {
                row: Row {
                    key: self.key,
                    cells,
                    meta,
                },
                next_page,
            }),
            other => Err(unexpected("GET", other)),
        }
    }
}

impl IntoFuture for SliceRequest {
    type Output = Result<Page, ClientError>;
    type IntoFuture = BoxFuture<Page>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// A write of columns to one row; awaits to the response metadata.
#[derive(Debug, Clone)]
pub struct PutRequest {
    table: Table,
    key: Bytes,
    columns: Vec<(Bytes, Bytes)>,
    contexts: Contexts,
    ttl_secs: Option<u32>,
    timestamp_micros: Option<i64>,
    call: CallOptions,
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
    table: Table,
    key: Bytes,
    /// `None` = the whole row.
    columns: Option<Vec<Bytes>>,
    contexts: Contexts,
    timestamp_micros: Option<i64>,
    call: CallOptions,
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
    client: Client,
    mutations: Vec<Mutation>,
    call: CallOptions,
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
