//! The async Rust client.
//!
//! - [`Client`]: connects to one or more nodes, keeps a small pool of multiplexed
//!   connections per node ([`pool`]), sends each request to the next node round-robin and
//!   moves on to another node when a failure makes that safe (see
//!   [`ClientError`]'s retry rule), reconnecting lazily.
//! - [`connection`]: one connection, many requests in flight matched by stream id.
//! - [`Table`] ([`table`]): `client.table("users").get(key).await`, `.put(key, cols)`,
//!   with contexts carried from reads into writes by [`Row`].
//! - [`admin`]: operator commands (flush, compact, table stats, removenode,
//!   decommission).
//!
//! Threading: `Client` is `Clone + Send + Sync` (an `Arc` inside); use it from any task.
//! It needs a tokio runtime; each connection owns a reader and a writer task that stop
//! when the connection is dropped.

pub mod admin;
pub mod connection;
pub mod error;
pub mod pool;
pub mod row;
pub mod table;
pub mod write;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use error::ClientError;
pub use row::{Page, Row};
pub use table::{GetRequest, SliceRequest, Table};
pub use write::{BatchRequest, DeleteRequest, PutRequest};

use crate::frame::DEFAULT_MAX_FRAME_LEN;
use crate::message::request::Request;
use crate::message::response::Response;
use crate::message::types::{TableOptions, Topology};
use pool::NodePool;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time a request may wait for its response (per attempt).
    pub request_timeout: Duration,
    /// Time to open a connection and complete the handshake.
    pub connect_timeout: Duration,
    /// Connections per node.
    pub pool_size: usize,
    /// Largest frame this client accepts (and sends, if the server allows as much).
    pub max_frame_len: usize,
    /// How long a node that refused a connection is skipped while others are available.
    pub reconnect_backoff: Duration,
    /// Name sent in the handshake, for the server's logs.
    pub client_name: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_size: 2,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            reconnect_backoff: Duration::from_millis(500),
            client_name: concat!("sibyl-protocol/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

#[derive(Debug)]
struct ClientInner {
    nodes: Vec<NodePool>,
    options: ClientOptions,
    next: AtomicUsize,
}

/// A connection to a Sibyl cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl Client {
    /// Connects with default options to the nodes at `addrs` (`host:port`); succeeds once
    /// one node completes a handshake.
    pub async fn connect<A: AsRef<str>>(addrs: &[A]) -> Result<Client, ClientError> {
        Client::connect_with(addrs, ClientOptions::default()).await
    }

    /// Connects with `options`; succeeds once one node completes a handshake.
    pub async fn connect_with<A: AsRef<str>>(
        addrs: &[A],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let mut resolved: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            let a = a.as_ref();
            let found = tokio::net::lookup_host(a)
                .await
                .map_err(|e| ClientError::Resolve {
                    addr: a.to_owned(),
                    reason: e.to_string(),
                })?;
            for addr in found {
                if !resolved.contains(&addr) {
                    resolved.push(addr);
                }
            }
        }
        if resolved.is_empty() {
            return Err(ClientError::NoNodes);
        }
        let nodes = resolved
            .into_iter()
            .map(|a| NodePool::new(a, options.pool_size))
            .collect();
        let client = Client {
            inner: Arc::new(ClientInner {
                nodes,
                options,
                next: AtomicUsize::new(0),
            }),
        };
        let mut last = ClientError::NoNodes;
        for node in &client.inner.nodes {
            match node.connection(&client.inner.options).await {
                Ok(_) => return Ok(client),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The node addresses this client talks to.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.inner.nodes.iter().map(NodePool::addr).collect()
    }

    /// Open connections across all nodes.
    pub fn open_connections(&self) -> usize {
        self.inner
            .nodes
            .iter()
            .map(NodePool::open_connections)
            .sum()
    }

    /// A handle on a table.
    pub fn table(&self, name: impl Into<String>) -> Table {
        Table::new(self.clone(), name.into())
    }

    /// A batch of inserts and deletes over any tables and keys.
    pub fn batch(&self) -> BatchRequest {
        BatchRequest::new(self.clone())
    }

    /// Sends a raw request with the default timeout. A server error becomes
    /// `Err(ClientError::Server(..))`.
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        self.request_with_timeout(request, self.inner.options.request_timeout)
            .await
    }

    /// Sends a raw request, trying nodes in turn while a failure leaves that safe.
    pub async fn request_with_timeout(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let nodes = &self.inner.nodes;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        // Up nodes first, in round-robin order; nodes marked down after them.
        let mut order: Vec<&NodePool> = (0..nodes.len())
            .filter_map(|i| nodes.get((start + i) % nodes.len()))
            .collect();
        order.sort_by_key(|n| n.is_marked_down());
        let mut last = ClientError::NoNodes;
        for node in order {
            let result = match node.connection(&self.inner.options).await {
                Ok(conn) => conn.call(&request, timeout).await,
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(Response::Error(e)) => ClientError::Server(e),
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if !err.may_retry_elsewhere(request.opcode()) {
                return Err(err);
            }
            tracing::debug!(node = %node.addr(), error = %err, "trying another node");
            last = err;
        }
        Err(last)
    }

    /// Checks that a node answers.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.request(Request::Ping).await? {
            Response::Pong => Ok(()),
            other => Err(unexpected("PING", other)),
        }
    }

    /// The cluster topology as a node sees it.
    pub async fn topology(&self) -> Result<Topology, ClientError> {
        match self.request(Request::Topology).await? {
            Response::Topology(t) => Ok(t),
            other => Err(unexpected("TOPOLOGY", other)),
        }
    }

    /// Creates a table; fails with `TableExists` if it exists.
    pub async fn create_table(&self, name: &str, options: TableOptions) -> Result<(), ClientError> {
        self.schema(Request::CreateTable {
            name: name.to_owned(),
            options,
            if_not_exists: false,
        })
        .await
        .map(|_| ())
    }

    /// Creates a table unless it exists; returns whether it was created.
    pub async fn create_table_if_not_exists(
        &self,
        name: &str,
        options: TableOptions,
    ) -> Result<bool, ClientError> {
        self.schema(Request::CreateTable {
            name: name.to_owned(),
            options,
            if_not_exists: true,
        })
        .await
    }

    /// Drops a table; fails with `UnknownTable` if it does not exist.
    pub async fn drop_table(&self, name: &str) -> Result<(), ClientError> {
        self.schema(Request::DropTable {
            name: name.to_owned(),
            if_exists: false,
        })
        .await
        .map(|_| ())
    }

    /// Drops a table if it exists; returns whether it was dropped.
    pub async fn drop_table_if_exists(&self, name: &str) -> Result<bool, ClientError> {
        self.schema(Request::DropTable {
            name: name.to_owned(),
            if_exists: true,
        })
        .await
    }

    async fn schema(&self, request: Request) -> Result<bool, ClientError> {
        let opcode = request.opcode();
        match self.request(request).await? {
            Response::SchemaChanged { applied, .. } => Ok(applied),
            other => Err(unexpected(opcode.name(), other)),
        }
    }

    /// Names of every table.
    pub async fn list_tables(&self) -> Result<Vec<String>, ClientError> {
        match self.request(Request::ListTables).await? {
            Response::Tables(t) => Ok(t),
            other => Err(unexpected("LIST_TABLES", other)),
        }
    }

    /// Options of one table.
    pub async fn describe_table(&self, name: &str) -> Result<TableOptions, ClientError> {
        match self
            .request(Request::DescribeTable {
                name: name.to_owned(),
            })
            .await?
        {
            Response::Table { options, .. } => Ok(options),
            other => Err(unexpected("DESCRIBE_TABLE", other)),
        }
    }
}

pub(crate) fn unexpected(opcode: &'static str, got: Response) -> ClientError {
    ClientError::UnexpectedResponse {
        opcode,
        got: format!("{got:?}"),
    }
}
