//! The async Rust client.
//!
//! - [`Client`]: connects to one or more nodes, keeps a small pool of multiplexed
//!   connections per node ([`pool`]), and routes each request:
//!   - token-aware (the default, [`ClientOptions::token_aware`]): on connect and then
//!     every [`ClientOptions::topology_poll_interval`], and soon after a connection
//!     failure, it fetches the TOPOLOGY and builds a [`ClientRing`] ([`ring`]). A keyed
//!     request (INSERT, GET, DELETE; BATCH by its first mutation's key, see
//!     [`routing_key`]) goes to the node owning the key's token, then to the next
//!     distinct nodes clockwise, nodes down (in the topology or by the pool's own mark)
//!     last. A node the topology names that was not given to [`Client::connect`] gets a
//!     pool too. With no usable ring (empty topology, unknown partitioner, not fetched
//!     yet) keyed requests fall back to the round-robin;
//!   - unkeyed requests (DDL, TOPOLOGY, LIST_TABLES, operator commands) go round-robin
//!     over the nodes given, then the nodes learned from the topology, nodes marked down
//!     last.
//!
//!   After a failure the client moves on to the next node only when that is safe (see
//!   [`ClientError`]'s retry rule), reconnecting lazily. Every write the builders make
//!   carries a write id ([`Client::next_write_id`]), which makes it safe to resend after
//!   a timeout or a lost connection (spec section 5.2).
//! - [`connection`]: one connection, many requests in flight matched by stream id.
//! - [`Table`] ([`table`]): `client.table("users").get(key).await`, `.put(key, cols)`,
//!   with contexts carried from reads into writes by [`Row`].
//! - [`users`]: user management (the password becomes its SCRAM verifier here).
//! - [`admin`]: operator commands (flush, compact, table stats, removenode,
//!   decommission).
//!
//! Threading: `Client` is `Clone + Send + Sync` (an `Arc` inside); use it from any task.
//! It needs a tokio runtime; each connection owns a reader and a writer task that stop
//! when the connection is dropped, and a token-aware client owns one topology task that
//! stops when the last clone of the client is dropped. The routing state is swapped
//! whole under a mutex never held across an `.await`.

pub mod admin;
pub mod connection;
pub mod error;
pub mod pool;
pub mod ring;
pub mod row;
pub mod table;
pub mod users;
pub mod write;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use error::ClientError;
pub use ring::{ClientRing, RingError, RingMember};
pub use row::{Page, Row};
pub use table::{GetRequest, SliceRequest, Table};
pub use write::{BatchRequest, DeleteRequest, PutRequest};

use crate::frame::DEFAULT_MAX_FRAME_LEN;
use crate::message::request::{Mutation, Request};
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
    /// Also the shortest gap between two topology fetches prompted by failures.
    pub reconnect_backoff: Duration,
    /// Name sent in the handshake, for the server's logs.
    pub client_name: String,
    /// Route keyed requests to the owner of the key's token (default true). When false the
    /// client never fetches the topology and sends every request round-robin over the
    /// nodes given.
    pub token_aware: bool,
    /// How often a token-aware client fetches the topology again (default 10 s);
    /// `Duration::ZERO` turns the periodic fetch off (it still happens on connect and
    /// after connection failures).
    pub topology_poll_interval: Duration,
    /// The user and password every connection logs in with (SCRAM-SHA-256, right after
    /// the handshake); `None` = no login (a node that requires one answers
    /// `UNAUTHENTICATED`).
    pub credentials: Option<Credentials>,
}

/// A user name and password. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
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
            token_aware: true,
            topology_poll_interval: Duration::from_secs(10),
            credentials: None,
        }
    }
}

/// The key a request is routed by: INSERT, GET and DELETE by their row key, BATCH by its
/// first mutation's key; `None` for unkeyed requests (and an empty BATCH).
pub fn routing_key(request: &Request) -> Option<&Bytes> {
    match request {
        Request::Insert { insert, .. } => Some(&insert.key),
        Request::Get { key, .. } => Some(key),
        Request::Delete { delete, .. } => Some(&delete.key),
        Request::Batch { mutations, .. } => mutations.first().map(|m| match m {
            Mutation::Insert(i) => &i.key,
            Mutation::Delete(d) => &d.key,
        }),
        _ => None,
    }
}

/// The ring in force and the pool of each of its members.
#[derive(Debug)]
struct Routing {
    ring: Arc<ClientRing>,
    /// Same index as `ring.members()`; `None` when the member's address did not resolve
    /// (or is unspecified, like `0.0.0.0`).
    pools: Vec<Option<Arc<NodePool>>>,
}

#[derive(Debug, Default)]
struct Topo {
    /// Pools of nodes the topology named that were not given to `connect`.
    learned: Vec<Arc<NodePool>>,
    /// `None` until a topology gave a non-empty ring.
    routing: Option<Arc<Routing>>,
    /// When the topology was last fetched (successfully or not).
    fetched_at: Option<Instant>,
}

/// Unique write ids: 64 random bits drawn once per client (std's randomly keyed hasher)
/// above a 64-bit counter.
#[derive(Debug)]
struct WriteIds {
    base: u64,
    next: std::sync::atomic::AtomicU64,
}

impl WriteIds {
    fn new() -> WriteIds {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        WriteIds {
            base: h.finish(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn next(&self) -> crate::WriteId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        crate::WriteId((u128::from(self.base) << 64) | u128::from(n))
    }
}

#[derive(Debug)]
struct ClientInner {
    /// Pools of the nodes given to `connect`, in that order.
    listed: Vec<Arc<NodePool>>,
    topo: Mutex<Topo>,
    options: ClientOptions,
    next: AtomicUsize,
    /// Where this client's write ids come from.
    write_ids: WriteIds,
    /// Wakes the topology task early (after a connection failure).
    refresh: Arc<Notify>,
    /// The topology task, aborted when the client goes.
    poller: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.poller).take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Connects with `options`; succeeds once one node completes a handshake. A
    /// token-aware client then fetches the topology (a failure there is not fatal: the
    /// client routes round-robin until a later fetch succeeds) and starts its topology
    /// task.
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
        let listed = resolved
            .into_iter()
            .map(|a| Arc::new(NodePool::new(a, options.pool_size)))
            .collect();
        let client = Client {
            inner: Arc::new(ClientInner {
                listed,
                topo: Mutex::new(Topo::default()),
                options,
                next: AtomicUsize::new(0),
                write_ids: WriteIds::new(),
                refresh: Arc::new(Notify::new()),
                poller: Mutex::new(None),
            }),
        };
        let mut last = ClientError::NoNodes;
        let mut connected = false;
        for node in &client.inner.listed {
            match node.connection(&client.inner.options).await {
                Ok(_) => {
                    connected = true;
                    break;
                }
                // Another node would refuse the same credentials.
                Err(e @ ClientError::AuthenticationFailed { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        if !connected {
            return Err(last);
        }
        if client.inner.options.token_aware {
            if let Err(e) = client.refresh_topology().await {
                tracing::debug!(error = %e, "no topology yet; routing round-robin");
            }
            let task = tokio::spawn(topology_task(
                Arc::downgrade(&client.inner),
                Arc::clone(&client.inner.refresh),
                client.inner.options.topology_poll_interval,
                client.inner.options.reconnect_backoff,
            ));
            *lock(&client.inner.poller) = Some(task);
        }
        Ok(client)
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The node addresses this client talks to: those given to `connect`, then those
    /// learned from the topology.
    pub fn nodes(&self) -> Vec<SocketAddr> {
        self.all_pools().iter().map(|p| p.addr()).collect()
    }

    /// Open connections across all nodes.
    pub fn open_connections(&self) -> usize {
        self.all_pools().iter().map(|p| p.open_connections()).sum()
    }

    /// A handle on a table.
    pub fn table(&self, name: impl Into<String>) -> Table {
        Table::new(self.clone(), name.into())
    }

    /// A batch of inserts and deletes over any tables and keys.
    pub fn batch(&self) -> BatchRequest {
        BatchRequest::new(self.clone())
    }

    /// The ring the client routes by, if a topology gave one.
    pub fn ring(&self) -> Option<Arc<ClientRing>> {
        lock(&self.inner.topo)
            .routing
            .as_ref()
            .map(|r| Arc::clone(&r.ring))
    }

    /// The nodes a keyed request for `key` is tried on, in order (what
    /// [`Client::request`] does with an INSERT, GET or DELETE of `key` right now).
    pub fn route(&self, key: &[u8]) -> Vec<SocketAddr> {
        self.keyed_order(key)
            .unwrap_or_else(|| self.round_robin())
            .iter()
            .map(|p| p.addr())
            .collect()
    }

    /// Fetches the topology now and routes by it from here on; returns it. A topology
    /// whose partitioner this client cannot hash for (or with no node owning tokens)
    /// leaves the client routing round-robin.
    pub async fn refresh_topology(&self) -> Result<Topology, ClientError> {
        let timeout = self.inner.options.request_timeout;
        lock(&self.inner.topo).fetched_at = Some(Instant::now());
        let topology = match self
            .send(&Request::Topology, timeout, self.round_robin(), false)
            .await?
        {
            Response::Topology(t) => t,
            other => return Err(unexpected("TOPOLOGY", other)),
        };
        self.apply_topology(&topology).await;
        Ok(topology)
    }

    async fn apply_topology(&self, topology: &Topology) {
        let ring = match ClientRing::from_topology(topology) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot route by this topology; routing round-robin");
                let mut topo = lock(&self.inner.topo);
                topo.routing = None;
                topo.learned.clear();
                return;
            }
        };
        let mut addrs = Vec::with_capacity(ring.members().len());
        for m in ring.members() {
            addrs.push(resolve_member(&m.address).await);
        }
        let mut topo = lock(&self.inner.topo);
        let mut learned: Vec<Arc<NodePool>> = Vec::new();
        let mut pools = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let pool = addr.map(|addr| {
                let known = self
                    .inner
                    .listed
                    .iter()
                    .chain(learned.iter())
                    .chain(topo.learned.iter())
                    .find(|p| p.addr() == addr)
                    .cloned();
                let pool = known
                    .unwrap_or_else(|| Arc::new(NodePool::new(addr, self.inner.options.pool_size)));
                let listed = self.inner.listed.iter().any(|p| Arc::ptr_eq(p, &pool));
                if !listed && !learned.iter().any(|p| Arc::ptr_eq(p, &pool)) {
                    learned.push(Arc::clone(&pool));
                }
                pool
            });
            pools.push(pool);
        }
        topo.learned = learned;
        topo.routing = (!ring.is_empty()).then(|| {
            Arc::new(Routing {
                ring: Arc::new(ring),
                pools,
            })
        });
    }

    fn all_pools(&self) -> Vec<Arc<NodePool>> {
        let topo = lock(&self.inner.topo);
        self.inner
            .listed
            .iter()
            .chain(topo.learned.iter())
            .cloned()
            .collect()
    }

    /// Nodes given to `connect` rotated by the round-robin counter, then the learned ones
    /// likewise; nodes marked down after the rest (stable).
    fn round_robin(&self) -> Vec<Arc<NodePool>> {
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let learned = lock(&self.inner.topo).learned.clone();
        let mut order = rotated(&self.inner.listed, start);
        order.extend(rotated(&learned, start));
        order.sort_by_key(|n| n.is_marked_down());
        order
    }

    /// The token-aware order for `key`, or `None` when there is no ring to route by.
    fn keyed_order(&self, key: &[u8]) -> Option<Vec<Arc<NodePool>>> {
        if !self.inner.options.token_aware {
            return None;
        }
        let routing = lock(&self.inner.topo).routing.clone()?;
        let token = routing.ring.token_of(key);
        let pool_of = |i: usize| routing.pools.get(i).and_then(Option::as_ref);
        let mut order: Vec<Arc<NodePool>> = Vec::new();
        let members = routing
            .ring
            .route_with(token, |i| pool_of(i).is_none_or(|p| p.is_marked_down()));
        for i in members {
            if let Some(pool) = pool_of(i) {
                if !order.iter().any(|p| Arc::ptr_eq(p, pool)) {
                    order.push(Arc::clone(pool));
                }
            }
        }
        // Every other node after the ring's, as the round-robin would try them.
        for pool in self.round_robin() {
            if !order.iter().any(|p| Arc::ptr_eq(p, &pool)) {
                order.push(pool);
            }
        }
        Some(order)
    }

    /// Sends a raw request with the default timeout. A server error becomes
    /// `Err(ClientError::Server(..))`.
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        self.request_with_timeout(request, self.inner.options.request_timeout)
            .await
    }

    /// Sends a raw request, to the owner of its key first when token-aware (round-robin
    /// otherwise), trying further nodes in turn while a failure leaves that safe.
    pub async fn request_with_timeout(
        &self,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let order = routing_key(&request)
            .and_then(|k| self.keyed_order(k))
            .unwrap_or_else(|| self.round_robin());
        self.send(&request, timeout, order, true).await
    }

    /// Tries `order` in turn; `note_failures` wakes the topology task after a connection
    /// failure (off for the topology fetch itself).
    async fn send(
        &self,
        request: &Request,
        timeout: Duration,
        order: Vec<Arc<NodePool>>,
        note_failures: bool,
    ) -> Result<Response, ClientError> {
        let mut last = ClientError::NoNodes;
        for node in order {
            let result = match node.connection(&self.inner.options).await {
                Ok(conn) => conn.call(request, timeout).await,
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(Response::Error(e)) => ClientError::Server(e),
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if note_failures && self.inner.options.token_aware && err.suggests_topology_change() {
                self.inner.refresh.notify_one();
            }
            if !err.may_retry_elsewhere(request.is_resendable()) {
                return Err(err);
            }
            tracing::debug!(node = %node.addr(), error = %err, "trying another node");
            last = err;
        }
        Err(last)
    }

    /// A new write id, unique to this write (the write builders take one each; a
    /// request built by hand may carry one to become safe to retry).
    pub fn next_write_id(&self) -> crate::WriteId {
        self.inner.write_ids.next()
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

fn rotated(pools: &[Arc<NodePool>], start: usize) -> Vec<Arc<NodePool>> {
    let n = pools.len();
    (0..n)
        .filter_map(|i| pools.get((start + i) % n).cloned())
        .collect()
}

/// A topology address as a socket address: parsed as is, else resolved (first address);
/// `None` when it does not resolve or names no host (`0.0.0.0`, `[::]`).
async fn resolve_member(address: &str) -> Option<SocketAddr> {
    let addr = match address.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match tokio::net::lookup_host(address).await {
            Ok(mut found) => found.next()?,
            Err(e) => {
                tracing::debug!(address, error = %e, "topology address does not resolve");
                return None;
            }
        },
    };
    (!addr.ip().is_unspecified()).then_some(addr)
}

/// The topology task of a token-aware client: fetches the topology every `interval`
/// (never when zero) and when `wake` is notified after a connection failure, at most once
/// per `min_gap` for the latter. It holds the client only while fetching (so dropping
/// the last clone drops the client, which aborts the task).
async fn topology_task(
    client: Weak<ClientInner>,
    wake: Arc<Notify>,
    interval: Duration,
    min_gap: Duration,
) {
    loop {
        let periodic = async {
            if interval.is_zero() {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(interval).await;
            }
        };
        let woken = tokio::select! {
            () = periodic => false,
            () = wake.notified() => true,
        };
        if woken {
            let since = match client.upgrade() {
                Some(inner) => lock(&inner.topo).fetched_at.map(|t| t.elapsed()),
                None => return,
            };
            if let Some(wait) = since.and_then(|s| min_gap.checked_sub(s)) {
                // Rate limit: at most one failure-prompted fetch per `min_gap`.
                tokio::time::sleep(wait).await;
            }
        }
        let Some(inner) = client.upgrade() else {
            return;
        };
        let c = Client { inner };
        if let Err(e) = c.refresh_topology().await {
            tracing::debug!(error = %e, "topology refresh failed");
        }
    }
}

pub(crate) fn unexpected(opcode: &'static str, got: Response) -> ClientError {
    ClientError::UnexpectedResponse {
        opcode,
        got: format!("{got:?}"),
    }
}
