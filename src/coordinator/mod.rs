//! The coordinator of replicated requests: what turns one client request into calls on
//! the key's replicas and their answers into one answer (Dynamo's coordinator; spec:
//! `protocol/doc/wire_format.md`, section 5.2).
//!
//! # Layout
//! - [`placement`]: a key's home replicas, its stand-ins for the down ones, and how many
//!   answers a consistency level needs.
//! - [`latency`]: per-peer recent latencies, the threshold of speculative retry.
//! - [`write`]: INSERT, DELETE and BATCH: mint at this replica, ship to the others, hint
//!   the down ones, answer at W.
//! - [`read`]: GET: data from one replica, digests from the others, full reads and
//!   reconciliation on a mismatch, read repair, speculative retry, paging.
//! - [`reconcile`]: merging the stored cells several replicas returned (pure functions).
//!
//! # Which node does what
//! - A request whose key needs no peer (the table's only replica is this node, or the
//!   node is on its own) goes straight to the [`Service`], as on a single node.
//! - A write is coordinated by a home replica of its key: another node forwards it to
//!   one (the replica family's `coordinate`), trying the alive home replicas in
//!   preference order. A forwarded write is never forwarded again.
//! - A read is coordinated by whichever node received it.
//! - Schema and operator requests go to the [`Service`] (schema spreads by gossip).
//!
//! # Threading
//! [`Coordinator`] is shared behind an `Arc`. Its answers are futures on the tokio
//! runtime; engine calls run on the blocking pool ([`ReplicaExecution::Blocking`], a live
//! node) or inline ([`ReplicaExecution::Inline`], a single-threaded simulation). Calls to
//! replicas are spawned tasks, so a call still outstanding when the client is answered
//! (a write acknowledged at W, a background read repair) finishes on its own.

pub mod latency;
pub mod placement;
pub mod read;
pub mod reconcile;
pub mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sibyl_protocol::{Consistency, ErrorKind, Opcode, Request, Response, RowInsert, ServerError};
use tokio::time::Instant;

use crate::cluster::ClusterHandle;
use crate::hints::HintStore;
use crate::net::{BoxFuture, Family, NetError, PeerNetwork};
use crate::replica::{ForwardTarget, ReplicaExecution, ReplicaRequest, ReplicaResponse};
use crate::ring::NodeId;
use crate::server::handler::{RequestHandler, Started};
use crate::service::Service;
use latency::Latencies;
use placement::{KeyPlacement, Target};

/// How long a write waits for W acknowledgements (Cassandra's default).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a read waits for R answers (Cassandra's default).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How the coordinator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorOptions {
    /// How long a write waits for its acknowledgements.
    pub write_timeout: Duration,
    /// How long a read waits for its answers.
    pub read_timeout: Duration,
    /// Where engine calls run.
    pub execution: ReplicaExecution,
    /// Bytes of entries per stream page of the ring changes it starts (MOVE,
    /// DECOMMISSION), as `--stream-page-kb` sets them for the node's own.
    pub stream_page_bytes: u32,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        CoordinatorOptions {
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            execution: ReplicaExecution::Blocking,
            stream_page_bytes: crate::stream::StreamOptions::default().page_bytes,
        }
    }
}

/// Counters of one coordinator (since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoordinatorStats {
    /// Writes coordinated here (forwarded ones included).
    pub writes: u64,
    /// Writes forwarded to a home replica.
    pub forwarded: u64,
    /// Hints sent to stand-ins or stored here for home replicas that were down or did
    /// not answer.
    pub hints: u64,
    /// Reads coordinated here that needed a peer.
    pub reads: u64,
    /// Reads whose replicas disagreed (a full read of each followed).
    pub digest_mismatches: u64,
    /// Replicas sent the reconciled cells by a read.
    pub read_repairs: u64,
    /// Extra replicas asked because one was slower than its recent latency.
    pub speculative_retries: u64,
    /// Shipments of writes still under way: calls to replicas and stand-ins (and the
    /// hints kept here when they fail) that outlive the answer to the client. Zero
    /// once every write coordinated here has reached its replicas or a hint store.
    pub shipments_in_flight: u64,
}

#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    forwarded: AtomicU64,
    hints: AtomicU64,
    reads: AtomicU64,
    digest_mismatches: AtomicU64,
    read_repairs: AtomicU64,
    speculative_retries: AtomicU64,
    shipments_in_flight: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counts one unit of `c` for as long as it lives (a task that may be dropped midway
/// still gives its unit back).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn start(c: &'a AtomicU64) -> InFlight<'a> {
        bump(c);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The node's coordinator (see the module documentation).
pub struct Coordinator {
    service: Arc<Service>,
    net: Arc<dyn PeerNetwork>,
    cluster: Arc<ClusterHandle>,
    hints: Arc<HintStore>,
    latencies: Latencies,
    options: CoordinatorOptions,
    counters: Counters,
    /// Answers REPAIR and REPAIR_STATUS once the node set it.
    repairer: std::sync::OnceLock<Arc<crate::repair::Repairer>>,
    /// The node's streams (STREAMS), once the node set them.
    streams: std::sync::OnceLock<Arc<crate::stream::StreamRegistry>>,
    /// The node's metrics registry (METRICS answers from it).
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
    /// The cluster's name (DESCRIBE_CLUSTER answers with it).
    cluster_name: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Why one call to a replica failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The network did not carry it or no answer came in time.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The answer could not be decoded.
    #[error("undecodable answer: {0}")]
    Decode(String),
    /// The replica refused the request.
    #[error("replica refused: {0}")]
    Refused(String),
    /// The node's address is not known yet.
    #[error("no peer address known for node {0}")]
    NoAddress(NodeId),
    /// The local engine call did not complete.
    #[error("local replica task failed: {0}")]
    Task(String),
}

impl Coordinator {
    /// A coordinator over `service`, calling peers on `net`, placing keys with
    /// `cluster`'s published view and keeping hints in `hints`.
    pub fn new(
        service: Arc<Service>,
        net: Arc<dyn PeerNetwork>,
        cluster: Arc<ClusterHandle>,
        hints: Arc<HintStore>,
        options: CoordinatorOptions,
    ) -> Coordinator {
        Coordinator {
            service,
            net,
            cluster,
            hints,
            latencies: Latencies::default(),
            options,
            counters: Counters::default(),
            repairer: std::sync::OnceLock::new(),
            streams: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            cluster_name: std::sync::OnceLock::new(),
        }
    }

    /// Sets what answers REPAIR and REPAIR_STATUS (once; later calls are ignored). Until
    /// then the local service answers them as a node without peers does.
    pub fn set_repairer(&self, repairer: Arc<crate::repair::Repairer>) {
        let _ = self.repairer.set(repairer);
    }

    /// Gives the coordinator the node's stream registry (STREAMS answers from it).
    pub fn set_streams(&self, streams: Arc<crate::stream::StreamRegistry>) {
        let _ = self.streams.set(streams);
    }

    /// Gives the coordinator the node's metrics registry (METRICS answers from it).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Gives the coordinator the cluster's name (DESCRIBE_CLUSTER answers with it).
    pub fn set_cluster_name(&self, name: &str) {
        let _ = self.cluster_name.set(name.to_owned());
    }

    /// The counters so far.
    pub fn stats(&self) -> CoordinatorStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CoordinatorStats {
            writes: l(&c.writes),
            forwarded: l(&c.forwarded),
            hints: l(&c.hints),
            reads: l(&c.reads),
            digest_mismatches: l(&c.digest_mismatches),
            read_repairs: l(&c.read_repairs),
            speculative_retries: l(&c.speculative_retries),
            shipments_in_flight: l(&c.shipments_in_flight),
        }
    }

    /// The service the coordinator answers from locally.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The placement of `key` in `table` when the request needs a peer: `None` when this
    /// node answers it alone (no cluster view yet, an unknown table, or a table whose
    /// only replica of the key is this node).
    fn placement(&self, table: &str, key: &[u8]) -> Option<KeyPlacement> {
        let view = self.cluster.view()?;
        let schema = self.service.schema(table).ok()?;
        let placement = KeyPlacement::of(&view, &schema.options, key);
        if placement.home.is_empty() || placement.only_local() {
            return None;
        }
        Some(placement)
    }

    /// Runs `f` on the local service per the execution mode.
    pub(crate) async fn local<T, F>(&self, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(&Service) -> T + Send + 'static,
    {
        let service = self.service.clone();
        self.blocking(move || f(&service)).await
    }

    /// Runs `f` on the local service: on this task when it cannot wait for disk
    /// (`blocks` false: memory work, as a single node's requests run), per the execution
    /// mode otherwise.
    pub(crate) async fn local_unless_inline<T, F>(&self, blocks: bool, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce(&Service) -> T + Send + 'static,
    {
        if blocks {
            self.local(f).await
        } else {
            Ok(f(&self.service))
        }
    }

    /// Runs `f`, which may wait for disk, per the execution mode.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, CallError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.options
            .execution
            .run(f)
            .await
            .map_err(|e| CallError::Task(e.to_string()))
    }

    /// Asks `target`'s replica `request` (this node's own replica directly), recording
    /// the latency of peers.
    pub(crate) async fn ask(
        &self,
        target: &Target,
        request: ReplicaRequest,
        deadline: Instant,
    ) -> Result<ReplicaResponse, CallError> {
        let response = if target.local {
            let blocks = crate::replica::ReplicaHost::may_block(&*self.service, &request);
            self.local_unless_inline(blocks, move |svc| {
                crate::replica::peer::answer(svc, request)
            })
            .await?
        } else {
            let addr = target.addr.ok_or(CallError::NoAddress(target.id))?;
            let started = Instant::now();
            let body = self
                .net
                .call_node(addr, target.id, Family::Replica, request.encode(), deadline)
                .await?;
            self.latencies.record(target.id, started.elapsed());
            ReplicaResponse::decode(&body).map_err(|e| CallError::Decode(e.to_string()))?
        };
        match response {
            ReplicaResponse::Error { code, message } => {
                Err(CallError::Refused(format!("{code:?}: {message}")))
            }
            other => Ok(other),
        }
    }

    /// Answers `request` as a client connection would be answered, without one: with
    /// peers when it needs them, from the local service otherwise (an embedding, or a
    /// simulated cluster driving its nodes directly).
    pub async fn answer(self: &Arc<Self>, request: Request) -> Response {
        match self.route(request) {
            Route::Peers(pending) => pending.await,
            Route::Local(request) => match self.local(move |svc| svc.handle(request)).await {
                Ok(response) => response,
                Err(e) => Response::Error(server_error(e.to_string())),
            },
        }
    }

    /// Whether `request` needs a peer, and the future answering it when it does.
    fn route(self: &Arc<Self>, request: Request) -> Route {
        let this = self.clone();
        match request {
            write @ (Request::Insert { .. } | Request::Delete { .. }) => {
                let placement = write::write_parts(&write)
                    .and_then(|(table, key, _)| self.placement(table, key));
                match placement {
                    Some(placement) => Route::Peers(Box::pin(this.write_request(write, placement))),
                    None => Route::Local(write),
                }
            }
            Request::Batch {
                mutations,
                consistency,
            } => {
                let placements: Vec<Option<KeyPlacement>> = mutations
                    .iter()
                    .map(|m| self.placement(m.table(), m.key()))
                    .collect();
                if placements.iter().any(Option::is_some) {
                    Route::Peers(Box::pin(this.batch(mutations, placements, consistency)))
                } else {
                    Route::Local(Request::Batch {
                        mutations,
                        consistency,
                    })
                }
            }
            Request::Get {
                table,
                key,
                selector,
                consistency,
            } => match self.placement(&table, &key) {
                Some(placement) => Route::Peers(Box::pin(async move {
                    match this
                        .read(&table, &key, &selector, consistency, placement)
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => Response::Error(e),
                    }
                })),
                None => Route::Local(Request::Get {
                    table,
                    key,
                    selector,
                    consistency,
                }),
            },
            Request::Repair { table } if self.repairer.get().is_some() => {
                let repairer = self.repairer.get().cloned();
                Route::Peers(Box::pin(async move {
                    let Some(repairer) = repairer else {
                        return Response::Error(server_error("no repairer"));
                    };
                    match repairer.start_repair(table) {
                        Ok(s) => Response::AdminRepair(s),
                        Err(e @ crate::repair::scheduler::StartError::NotReplicated(_)) => {
                            Response::Error(ServerError::new(
                                sibyl_protocol::ErrorKind::Invalid,
                                e.to_string(),
                            ))
                        }
                        Err(e) => Response::Error(ServerError::new(
                            sibyl_protocol::ErrorKind::Overloaded,
                            e.to_string(),
                        )),
                    }
                }))
            }
            Request::RepairStatus { id } if self.repairer.get().is_some() => {
                let repairer = self.repairer.get().cloned();
                Route::Peers(Box::pin(async move {
                    match repairer.and_then(|r| r.repair_status(id)) {
                        Some(s) => Response::AdminRepair(s),
                        None => Response::Error(ServerError::new(
                            sibyl_protocol::ErrorKind::Invalid,
                            format!("no repair {id} on this node (only the latest is kept)"),
                        )),
                    }
                }))
            }
            Request::Hints => {
                let hints = self.hints.clone();
                Route::Peers(Box::pin(async move {
                    Response::AdminHints(hint_report(&hints))
                }))
            }
            Request::Decommission if self.streams.get().is_some() => {
                let this = self.clone();
                Route::Peers(Box::pin(async move { this.decommission().await }))
            }
            Request::Rebalance if self.streams.get().is_some() => {
                let mover = self.mover();
                Route::Peers(Box::pin(async move {
                    match mover {
                        Some(m) => m.rebalance_plan().await.map_or_else(
                            |e| {
                                Response::Error(ServerError::new(
                                    sibyl_protocol::ErrorKind::Invalid,
                                    e,
                                ))
                            },
                            Response::AdminRebalance,
                        ),
                        None => Response::Error(server_error("no stream registry")),
                    }
                }))
            }
            Request::Move { tokens } if self.streams.get().is_some() => {
                let mover = self.mover();
                Route::Peers(Box::pin(async move {
                    match mover {
                        Some(m) => m.start(tokens).await.map_or_else(
                            |e| {
                                Response::Error(ServerError::new(
                                    sibyl_protocol::ErrorKind::Invalid,
                                    e,
                                ))
                            },
                            |message| Response::AdminDone { message },
                        ),
                        None => Response::Error(server_error("no stream registry")),
                    }
                }))
            }
            Request::Streams { set_throughput } if self.streams.get().is_some() => {
                let streams = self.streams.get().cloned();
                Route::Peers(Box::pin(async move {
                    match streams {
                        Some(s) => Response::AdminStreams(stream_report(&s, set_throughput)),
                        None => Response::Error(server_error("no stream registry")),
                    }
                }))
            }
            Request::DescribeCluster if self.cluster_name.get().is_some() => {
                let name = self.cluster_name.get().cloned().unwrap_or_default();
                let service = self.service.clone();
                // The schema version is read under the DDL mutex, which a table change
                // holds across disk I/O: off the async workers.
                Route::Peers(Box::pin(async move {
                    match tokio::task::spawn_blocking(move || service.describe_cluster(&name)).await
                    {
                        Ok(d) => Response::AdminCluster(d),
                        Err(e) => Response::Error(server_error(format!("describe cluster: {e}"))),
                    }
                }))
            }
            Request::Metrics if self.metrics.get().is_some() => {
                let metrics = self.metrics.get().cloned();
                Route::Peers(Box::pin(async move {
                    match metrics {
                        Some(m) => Response::AdminMetrics(m.encode()),
                        None => Response::Error(server_error("no metrics registry")),
                    }
                }))
            }
            other => Route::Local(other),
        }
    }
}

impl Coordinator {
    /// The node's [`crate::stream::Mover`] (`None` without a stream registry).
    fn mover(&self) -> Option<crate::stream::Mover> {
        let streams = self.streams.get().cloned()?;
        Some(crate::stream::Mover::new(
            self.service.clone(),
            self.net.clone(),
            self.cluster.clone(),
            streams,
            crate::stream::StreamOptions {
                execution: self.options.execution,
                ..crate::stream::StreamOptions::with_page_bytes(self.options.stream_page_bytes)
            },
        ))
    }

    /// DECOMMISSION: announces `leaving` and starts the hand-off of every range this node
    /// replicates ([`crate::stream::decommission`]); answers once `leaving` is published.
    async fn decommission(self: Arc<Self>) -> Response {
        let Some(streams) = self.streams.get().cloned() else {
            return Response::Error(server_error("no stream registry"));
        };
        let invalid =
            |m: String| Response::Error(ServerError::new(sibyl_protocol::ErrorKind::Invalid, m));
        let Some(view) = self.cluster.view() else {
            return invalid("the membership layer is stopped".into());
        };
        let me = view.local;
        match view.node(me).and_then(|n| n.status) {
            Some(crate::cluster::NodeStatus::Normal) => {}
            Some(crate::cluster::NodeStatus::Joining) | None => {
                return invalid(format!(
                    "node {me} is still joining; decommission it once it is normal"
                ))
            }
            Some(s) => {
                return invalid(format!(
                    "node {me} is already {}; nothing to decommission",
                    s.name()
                ))
            }
        }
        if streams.busy() {
            return invalid(format!("node {me} is already streaming a ring change"));
        }
        let tables = self.service.table_options();
        if let Err(refusal) = crate::stream::admission::check_decommission(&view, &tables) {
            return invalid(format!("node {me} cannot decommission: {refusal}"));
        }
        // Recorded first: from here a restart resumes the decommission, leaving.
        let dir = self.service.options().data_dir.clone();
        let begun = self
            .options
            .execution
            .run(move || crate::stream::Decommission::begin(&dir))
            .await;
        if let Err(e) = begun
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return Response::Error(server_error(format!(
                "cannot record the decommission in the data directory: {e}"
            )));
        }
        self.cluster.set_status(crate::cluster::NodeStatus::Leaving);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !self.cluster.view().is_some_and(|v| {
            v.node(me).and_then(|n| n.status) == Some(crate::cluster::NodeStatus::Leaving)
        }) {
            if tokio::time::Instant::now() >= deadline {
                return Response::Error(server_error(
                    "the gossip thread did not publish status leaving in time",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await; // polling interval
        }
        crate::stream::Decommission::new(
            self.service.clone(),
            self.net.clone(),
            self.cluster.clone(),
            streams.clone(),
            crate::stream::StreamOptions {
                execution: self.options.execution,
                ..crate::stream::StreamOptions::with_page_bytes(self.options.stream_page_bytes)
            },
        )
        .persisted()
        .spawn();
        Response::AdminDone {
            message: format!(
                "node {me} is leaving: it streams every range it replicates to the nodes that \
                 gain them, then announces left (`sibyl-admin streams` shows the streams); it \
                 keeps serving until it is stopped"
            ),
        }
    }
}

/// The STREAMS answer, after setting the cap when asked.
fn stream_report(
    streams: &crate::stream::StreamRegistry,
    set_throughput: Option<u64>,
) -> sibyl_protocol::StreamsReport {
    if let Some(rate) = set_throughput {
        streams.set_throughput(rate);
        tracing::info!(bytes_per_sec = rate, "stream throughput cap set");
    }
    sibyl_protocol::StreamsReport {
        throughput: streams.throughput(),
        streams: streams
            .snapshot()
            .into_iter()
            .map(|s| sibyl_protocol::StreamEntry {
                operation: s.operation.to_owned(),
                table: s.table,
                range_start: s.range.start.to_string(),
                range_end: s.range.end.to_string(),
                peer: if s.peer.0 == 0 {
                    String::new()
                } else {
                    s.peer.to_string()
                },
                state: s.state.name().to_owned(),
                bytes: s.bytes,
                cells: s.cells,
                run_bytes: s.bytes_this_run,
                rate: (s.bytes_this_run as u128 * 1_000_000)
                    .checked_div(u128::from(s.running_micros))
                    .map_or(0, |r| u64::try_from(r).unwrap_or(u64::MAX)),
                error: s.error.unwrap_or_default(),
                total: s.total,
            })
            .collect(),
    }
}

/// The HINTS answer: per owner with hints pending or dropped, by owner id.
fn hint_report(hints: &HintStore) -> Vec<sibyl_protocol::HintOwner> {
    let mut by_owner: std::collections::BTreeMap<NodeId, sibyl_protocol::HintOwner> =
        std::collections::BTreeMap::new();
    fn entry(
        m: &mut std::collections::BTreeMap<NodeId, sibyl_protocol::HintOwner>,
        id: NodeId,
    ) -> &mut sibyl_protocol::HintOwner {
        m.entry(id).or_insert_with(|| sibyl_protocol::HintOwner {
            owner: id.to_string(),
            ..sibyl_protocol::HintOwner::default()
        })
    }
    for (owner, p) in hints.owners() {
        let o = entry(&mut by_owner, owner);
        o.pending = p.count;
        o.pending_bytes = p.bytes;
        o.oldest_micros = p.oldest_micros;
    }
    for d in hints.dropped() {
        let o = entry(&mut by_owner, d.owner);
        o.dropped_window = d.window;
        o.dropped_size = d.size;
        o.dropped_corrupt = d.corrupt;
        o.dropped_rejected = d.rejected;
    }
    by_owner.into_values().collect()
}

/// Where a request is answered.
enum Route {
    /// With peers: the future of the answer.
    Peers(BoxFuture<'static, Response>),
    /// By the local service alone.
    Local(Request),
}

impl RequestHandler for Coordinator {
    type Pending = BoxFuture<'static, Response>;

    fn start(self: &Arc<Self>, request: Request) -> Started<Self::Pending> {
        let request = match self.route(request) {
            Route::Peers(pending) => return Started::Pending(pending),
            Route::Local(request) => request,
        };
        match RequestHandler::start(&self.service, request) {
            Started::Ready(r) => Started::Ready(r),
            Started::Insert {
                insert,
                consistency,
            } => Started::Insert {
                insert,
                consistency,
            },
            Started::Pending(p) => Started::Pending(Box::pin(p)),
        }
    }

    fn insert_group(
        &self,
        inserts: &[(&RowInsert, Option<Consistency>)],
    ) -> Vec<Result<(), ServerError>> {
        self.service.insert_group(inserts)
    }

    fn written_body(&self) -> Bytes {
        self.service.written_body()
    }
}

impl ForwardTarget for Coordinator {
    fn coordinate(self: Arc<Self>, opcode: u8, body: Bytes) -> BoxFuture<'static, ReplicaResponse> {
        Box::pin(async move {
            let response = match Opcode::from_u8(opcode)
                .and_then(|op| Request::decode_body(op, body).map(|r| (op, r)))
            {
                Err(e) => (
                    opcode,
                    Response::Error(ServerError::new(
                        ErrorKind::Protocol,
                        format!("forwarded request: {e}"),
                    )),
                ),
                Ok((op, request)) => (op.as_u8(), self.coordinate_forwarded(request).await),
            };
            let (opcode, response) = response;
            let error = matches!(response, Response::Error(_));
            match response.encode_body() {
                Ok(body) => ReplicaResponse::Answer {
                    error,
                    opcode,
                    body,
                },
                Err(e) => ReplicaResponse::Error {
                    code: crate::replica::ReplicaErrorCode::Storage,
                    message: format!("cannot encode the answer: {e}"),
                },
            }
        })
    }
}

/// A `SERVER` error.
fn server_error(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorKind::Server, message)
}
