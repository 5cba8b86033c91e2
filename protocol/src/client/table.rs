//! [`Table`]: the handle users call (`client.table("users").get(key).await`), and the
//! request builders it returns. Every builder can be `.await`ed directly (it implements
//! `IntoFuture`) or refined first: `.consistency(..)`, `.timeout(..)`, and for writes
//! `.context_from(&row)`, which attaches to each written or deleted column the context
//! that `row` returned for it. Reads are here; the write builders are in `write`.

use std::future::{Future, IntoFuture};
use std::ops::{Bound, RangeBounds};
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

use crate::client::error::ClientError;
use crate::client::row::{Page, Row};
use crate::client::write::{Contexts, DeleteRequest, PutRequest};
use crate::client::{unexpected, Client};
use crate::message::request::Request;
use crate::message::response::Response;
use crate::message::types::{Consistency, Selector};

/// The future every builder turns into.
pub(crate) type BoxFuture<T> =
    Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send + 'static>>;

/// A handle on one table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Table {
    pub(crate) client: Client,
    pub(crate) name: String,
}

/// Per-call settings shared by every builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallOptions {
    pub(crate) consistency: Option<Consistency>,
    pub(crate) timeout: Option<Duration>,
}

impl CallOptions {
    pub(crate) async fn send(
        &self,
        client: &Client,
        request: Request,
    ) -> Result<Response, ClientError> {
        let timeout = self.timeout.unwrap_or(client.options().request_timeout);
        client.request_with_timeout(request, timeout).await
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
            write_id: self.client.next_write_id(),
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
            write_id: self.client.next_write_id(),
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
            write_id: self.client.next_write_id(),
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
