//! Request handling: [`Request`] in, [`Response`] out, over the storage engine. This layer
//! never touches a socket (the [`crate::server`] owns connections), so it is unit-tested
//! directly and can run under simulation.
//!
//! The local replica operations (minting, raw reads, applying cells from peers, range
//! scans) live in [`crate::replica`]; the service keeps client validation, schemas and
//! consistency, and calls the replica for every read and write.
//!
//! # Layout
//! - [`keys`]: re-export of [`crate::replica::keys`] (the engine key of a cell).
//! - [`schema`]: table options stored in the engine's per-table metadata.
//! - [`schema_sync`]: per-table stamps (last writer wins, tombstones for drops), the
//!   schema export peers exchange and the schema version gossip compares.
//! - [`cluster`]: the service's side of membership (the node's
//!   [`crate::cluster::ClusterHandle`], given at open): topology answers, load, schema
//!   import/export for gossip.
//! - [`read`]: GET with its selectors, slices and paging tokens.
//! - [`write`]: INSERT, DELETE and BATCH for causal and lww tables.
//! - [`admin`]: operator commands (flush, compact, table stats, removenode, decommission).
//! - [`users`]: user management requests over the node's users table.
//!
//! # Invariants
//! - The schema cache mirrors the engine's tables: both change only under the DDL mutex,
//!   which also guards the schema stamps (every live table has a live stamp). Local DDL
//!   and schema pushed by peers take the same mutex; gossip is told of a local change
//!   only after the mutex is released.
//! - A causal write is read-modify-write under the replica's stripe locks of its cells
//!   (taken in ascending stripe order, so two writes never deadlock); a dot is never
//!   minted twice. A table drop holds every stripe ([`Replica::lock_all`]).
//! - The coordinator's actor is the node's persisted actor ([`ActorEpoch`]); a new or wiped
//!   data directory gets a new one, so dots minted before a loss are never re-minted.
//!
//! # Threading
//! [`Service`] is `Send + Sync` and shared behind an `Arc`. Its calls are synchronous and
//! may block on disk: [`Service::execution`] tells the caller which requests must run on a
//! blocking thread (DDL always; writes when the commit log syncs before acknowledging).
//! No lock is held across anything but engine calls.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod cluster;
pub mod read;
pub mod schema;
pub mod schema_sync;
pub mod users;
pub mod write;

/// The engine key encoding (moved to [`crate::replica::keys`]).
pub use crate::replica::keys;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use sibyl_protocol::{
    Consistency, ErrorKind, NodeInfo, NodeState, Request, Response, ResponseMeta, ServerError,
    TableOptions, Topology,
};
use sibyl_storage::{Engine, EngineOptions, MergePolicy, SyncMode};

use crate::cluster::ClusterHandle;
use crate::repair::Watermarks;
use crate::replica::{DotClock, DotClockError, Replica, ReplicaError};
use crate::ring::Partitioner;
use crate::versioning::{
    Actor, ActorEpoch, ActorOpen, CausalMerge, Clock, LwwMerge, VersioningError,
};
use schema::{SchemaDecodeError, TableSchema};
use schema_sync::{next_stamp, SchemaSyncError, Stamps};

/// Largest value of one cell accepted (bytes). Riak and Cassandra both advise far smaller
/// values; this bound keeps one request's memory predictable.
pub const DEFAULT_MAX_VALUE_LEN: usize = 1024 * 1024;
/// Largest BATCH run inline on an async worker (a few microseconds per mutation).
pub(crate) const INLINE_BATCH_MAX: usize = 16;
/// Replicas alive in a single-node deployment (the coordinator itself).
const SINGLE_NODE_ALIVE: u32 = 1;

/// How the service is opened.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The data directory (engine files and the actor file).
    pub data_dir: PathBuf,
    /// Commit log sync mode.
    pub sync: SyncMode,
    /// Memtable flush threshold in bytes.
    pub memtable_size: usize,
    /// Most siblings a causal cell may hold after a write.
    pub max_siblings: usize,
    /// Largest cell value accepted (bytes).
    pub max_value_len: usize,
    /// This node's client address, reported in the topology when no cluster is attached.
    pub node_address: String,
    /// Open even when the commit log is corrupt mid-log, cutting it there.
    pub salvage_commitlog: bool,
    /// The time source for write timestamps and TTL.
    pub clock: Arc<dyn Clock>,
    /// Writes are refused (`DISK_FULL`) while the data directory's file system has fewer
    /// free bytes than this (the engine's [`EngineOptions::min_free_bytes`]).
    pub min_free_disk: u64,
    /// The cluster's partitioner: engine keys start with its token of the row.
    pub partitioner: Partitioner,
    /// Keep an anti-entropy hash tree for every table with more than one replica
    /// ([`crate::repair`]); off saves a read per lww write and disables repair (and
    /// replicated tables then never purge a tombstone).
    pub anti_entropy: bool,
    /// A replicated table's tombstone is purged only once older than this by its write
    /// timestamp (and synced everywhere, [`crate::repair::watermark`]); at least the hint
    /// TTL.
    pub tombstone_min_age: std::time::Duration,
}

/// The default [`ServiceOptions::tombstone_min_age`]: the default hint TTL and an hour
/// for clocks that disagree.
pub const DEFAULT_TOMBSTONE_MIN_AGE: std::time::Duration =
    std::time::Duration::from_secs(crate::hints::DEFAULT_HINT_TTL.as_secs() + 3600);

/// The default memtable flush threshold (the node's `--memtable-mb` default).
pub const DEFAULT_MEMTABLE_SIZE: usize = 64 << 20;

impl ServiceOptions {
    /// Options for a service in `data_dir` on `clock`, every other field at the node's
    /// default but the free-space reserve (none here): periodic sync, 64 MiB memtables,
    /// 100 siblings, 1 MiB values, no salvage,
    /// murmur3, the default client address. Callers override fields with struct update
    /// syntax.
    pub fn new(data_dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> ServiceOptions {
        ServiceOptions {
            data_dir: data_dir.into(),
            sync: SyncMode::default(),
            memtable_size: DEFAULT_MEMTABLE_SIZE,
            max_siblings: crate::versioning::DEFAULT_MAX_SIBLINGS,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            node_address: crate::config::DEFAULT_LISTEN.to_owned(),
            salvage_commitlog: false,
            min_free_disk: 0,
            clock,
            partitioner: Partitioner::Murmur3,
            anti_entropy: true,
            tombstone_min_age: DEFAULT_TOMBSTONE_MIN_AGE,
        }
    }
}

/// Failure to open the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Another process holds the data directory.
    #[error(
        "data directory {path} is in use by another process (its LOCK file is held): \
         stop the other sibyl node or choose another --data-dir"
    )]
    DataDirLocked {
        /// The directory.
        path: PathBuf,
    },
    /// The storage engine failed to open.
    #[error("storage engine in {path}: {source}")]
    Storage {
        /// The directory.
        path: PathBuf,
        /// The engine's error.
        #[source]
        source: sibyl_storage::Error,
    },
    /// A table's stored schema is unreadable.
    #[error("table {table:?}: {source}")]
    Schema {
        /// The table.
        table: String,
        /// What was wrong.
        #[source]
        source: SchemaDecodeError,
    },
    /// The actor file could not be read or written.
    #[error("actor id: {source}")]
    Actor {
        /// The versioning layer's error.
        #[source]
        source: VersioningError,
    },
    /// A table's keys were laid out with another partitioner's tokens.
    #[error(
        "table {table:?} was created with {token_len}-byte tokens, not the {partitioner} \
         partitioner's: this data directory belongs to a node with another --partitioner"
    )]
    KeyLayout {
        /// The table.
        table: String,
        /// The partitioner configured.
        partitioner: Partitioner,
        /// The token length the table was created with.
        token_len: usize,
    },
    /// The dot clock's reservation file could not be read or written.
    #[error("dot clock: {source}")]
    DotClock {
        /// The replica's error.
        #[source]
        source: DotClockError,
    },
    /// The schema stamps file could not be read.
    #[error(transparent)]
    SchemaStamps(#[from] SchemaSyncError),
    /// The users file could not be read.
    #[error(transparent)]
    Users(#[from] crate::auth::UserStoreError),
}

/// Where a request should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Microseconds of CPU and memory work: run it on the calling task.
    Inline,
    /// May wait for disk (fsync, manifest rewrite): run it on a blocking thread.
    Blocking,
}

/// The request handler of one node.
pub struct Service {
    /// The engine, shared with the replica (admin commands and load reports use it).
    engine: Arc<Engine>,
    /// The local replica: minting, raw reads; every read and write goes through it.
    replica: Replica,
    tables: RwLock<HashMap<String, Arc<TableSchema>>>,
    /// The DDL mutex; it guards the schema stamps.
    ddl: Mutex<Stamps>,
    /// The node's membership handle (`None` for a service opened on its own).
    cluster: Option<Arc<ClusterHandle>>,
    actor: Actor,
    clock: Arc<dyn Clock>,
    opts: ServiceOptions,
    batch_sync: bool,
    /// The encoded body of every successful write's answer (it never changes).
    written_body: bytes::Bytes,
    /// The tombstone watermarks of replicated tables (`None` with anti-entropy off).
    watermarks: Option<Arc<Watermarks>>,
    /// The node's request metrics (TABLE_STATS reports each table's figures from them).
    request_metrics: std::sync::OnceLock<Arc<crate::metrics::RequestMetrics>>,
    /// The users system table (spread with the schema, see [`cluster`]).
    users: Arc<crate::auth::UserStore>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("data_dir", &self.opts.data_dir)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

/// The merge policy of a table from its stored metadata. Undecodable metadata gets the
/// causal policy, which keeps (never drops) cells it cannot read; [`Service::open`] then
/// refuses to start, naming the table.
fn merge_policy(
    clock: &Arc<dyn Clock>,
    name: &str,
    metadata: &[u8],
    watermarks: Option<&Watermarks>,
) -> Arc<dyn MergePolicy> {
    let clock = clock.clone();
    match TableSchema::decode_metadata("", metadata) {
        // A tombstone purged on one replica before the others hold it lets the deleted
        // value come back through read repair, hints or anti-entropy: a replicated table
        // purges one only when its repair watermark allows (anti-entropy on), else never.
        Ok(s) if s.options.replication_factor > 1 => {
            let gate =
                watermarks.map(|w| w.table(name) as Arc<dyn crate::versioning::policy::PurgeGate>);
            match (s.options.conflict_mode, gate) {
                (sibyl_protocol::ConflictMode::Lww, Some(g)) => Arc::new(LwwMerge::gated(clock, g)),
                (sibyl_protocol::ConflictMode::Lww, None) => Arc::new(LwwMerge::replicated(clock)),
                (sibyl_protocol::ConflictMode::Causal, Some(g)) => {
                    Arc::new(CausalMerge::gated(clock, g))
                }
                (sibyl_protocol::ConflictMode::Causal, None) => {
                    Arc::new(CausalMerge::replicated(clock))
                }
            }
        }
        Ok(s) if s.options.conflict_mode == sibyl_protocol::ConflictMode::Lww => {
            Arc::new(LwwMerge::new(clock))
        }
        // Undecodable metadata included: the open then refuses the table, naming it.
        _ => Arc::new(CausalMerge::new(clock)),
    }
}

/// Tracks `schema`'s table in the replica's anti-entropy trees when it has more than one
/// replica (its tree starts building); true when it did.
fn track_if_replicated(
    replica: &Replica,
    clock: &Arc<dyn Clock>,
    schema: &TableSchema,
    watermarks: &Watermarks,
) -> bool {
    if schema.options.replication_factor <= 1 {
        return false;
    }
    let merge = merge_policy(
        clock,
        &schema.name,
        &schema.encode_metadata(),
        Some(watermarks),
    );
    replica.track_tree(
        &schema.name,
        schema.options.conflict_mode,
        merge,
        Some(watermarks.table(&schema.name)),
    );
    true
}

impl Service {
    /// Opens the engine in `opts.data_dir` (refusing a directory another process holds),
    /// loads the schemas and the actor. Blocking: recovery replays the commit log.
    pub fn open(opts: ServiceOptions) -> Result<Service, ServiceError> {
        Service::open_in_cluster(opts, None)
    }

    /// Like [`Service::open`], for a node in a cluster: topology answers come from
    /// `cluster`'s published view and local DDL is announced through it. The node creates
    /// the handle before opening the service; gossip fills it once it runs.
    pub fn open_in_cluster(
        opts: ServiceOptions,
        cluster: Option<Arc<ClusterHandle>>,
    ) -> Result<Service, ServiceError> {
        let clock = opts.clock.clone();
        let resolver_clock = clock.clone();
        let watermarks = opts.anti_entropy.then(|| {
            Arc::new(Watermarks::new(
                opts.partitioner,
                crate::repair::DEFAULT_LEAF_BITS,
                clock.clone(),
                opts.tombstone_min_age,
            ))
        });
        let resolver_marks = watermarks.clone();
        let engine_opts = EngineOptions {
            sync: opts.sync,
            memtable_size: opts.memtable_size,
            merge_resolver: Arc::new(move |name: &str, metadata: &[u8]| {
                merge_policy(&resolver_clock, name, metadata, resolver_marks.as_deref())
            }),
            salvage_corrupt_log: opts.salvage_commitlog,
            min_free_bytes: opts.min_free_disk,
            ..EngineOptions::default()
        };
        let engine = Engine::open(&opts.data_dir, engine_opts).map_err(|e| match e {
            sibyl_storage::Error::Locked { path } => ServiceError::DataDirLocked { path },
            source => ServiceError::Storage {
                path: opts.data_dir.clone(),
                source,
            },
        })?;
        let mut tables = HashMap::new();
        for name in engine.tables() {
            let meta = engine
                .table_metadata(&name)
                .map_err(|source| ServiceError::Storage {
                    path: opts.data_dir.clone(),
                    source,
                })?;
            // Keys start with the token of the partitioner the table was created under, and
            // its prefix bloom was sized to that token: a data directory laid out by another
            // partitioner would read as garbage.
            let bloom =
                engine
                    .table_prefix_bloom_len(&name)
                    .map_err(|source| ServiceError::Storage {
                        path: opts.data_dir.clone(),
                        source,
                    })?;
            let expected = keys::token_len(opts.partitioner);
            if let Some(found) = bloom.filter(|&n| n != expected) {
                return Err(ServiceError::KeyLayout {
                    table: name,
                    partitioner: opts.partitioner,
                    token_len: found,
                });
            }
            let schema = TableSchema::decode_metadata(&name, &meta).map_err(|source| {
                ServiceError::Schema {
                    table: name.clone(),
                    source,
                }
            })?;
            tables.insert(name, Arc::new(schema));
        }
        // Riak's KV679: if recovery may have dropped acknowledged writes, the versions
        // this node minted before may be gone here but alive elsewhere; minting new dots
        // under the old actor could reuse them. A new epoch makes every new dot unique.
        let recovery = engine.recovery().clone();
        let data_lost = recovery.data_may_be_lost(opts.sync);
        let actor = match ActorEpoch::open(&opts.data_dir) {
            Ok((mut a, ActorOpen::Loaded)) if data_lost => {
                let old = a.actor();
                let new = a
                    .bump_epoch()
                    .map_err(|source| ServiceError::Actor { source })?;
                tracing::warn!(
                    %old,
                    %new,
                    truncated_tail = ?recovery.truncated_tail,
                    salvaged = ?recovery.salvaged,
                    "commit log recovery may have lost acknowledged writes; new actor epoch"
                );
                new
            }
            Ok((a, ActorOpen::Loaded)) => a.actor(),
            Ok((a, ActorOpen::Created)) => {
                tracing::info!(actor = %a.actor(), "new actor id (new or wiped data directory)");
                a.actor()
            }
            Err(VersioningError::CorruptActorFile { path, reason }) => {
                tracing::error!(path = %path.display(), reason, "actor file unreadable; taking a fresh actor id");
                ActorEpoch::create_fresh(&opts.data_dir)
                    .map_err(|source| ServiceError::Actor { source })?
                    .actor()
            }
            Err(source) => return Err(ServiceError::Actor { source }),
        };
        let live: Vec<&str> = tables.keys().map(String::as_str).collect();
        let (stamps, changed) =
            schema_sync::reconcile(schema_sync::load_stamps(&opts.data_dir)?, &live);
        if changed {
            if let Err(e) = schema_sync::save_stamps(&opts.data_dir, &stamps) {
                tracing::warn!(error = %e, "cannot save the reconciled schema stamps");
            }
        }
        let users = Arc::new(crate::auth::UserStore::open(&opts.data_dir)?);
        let batch_sync = matches!(opts.sync, SyncMode::Batch);
        let written_body = Response::Written {
            meta: ResponseMeta {
                replicas: vec![node_id(actor)],
                read_repair: false,
                stand_ins: Vec::new(),
            },
        }
        .encode_body()
        .unwrap_or_default();
        let engine = Arc::new(engine);
        let (actor, dots) = match DotClock::open(&opts.data_dir, clock.clone()) {
            Ok(d) => (actor, d),
            // Dots minted before cannot be known to stay below new ones: a new actor epoch
            // has no dots at all.
            Err(DotClockError::Corrupt { path, reason }) => {
                let (mut a, _) = ActorEpoch::open(&opts.data_dir)
                    .map_err(|source| ServiceError::Actor { source })?;
                let new = a
                    .bump_epoch()
                    .map_err(|source| ServiceError::Actor { source })?;
                tracing::error!(path = %path.display(), reason, %new, "dot clock file unreadable; new actor epoch");
                let dots = DotClock::reset(&opts.data_dir, clock.clone())
                    .map_err(|source| ServiceError::DotClock { source })?;
                (new, dots)
            }
            Err(source) => return Err(ServiceError::DotClock { source }),
        };
        let replica = Replica::new(engine.clone(), actor, clock.clone(), opts.partitioner, dots);
        if let Some(marks) = &watermarks {
            for schema in tables.values() {
                track_if_replicated(&replica, &clock, schema, marks);
            }
        }
        Ok(Service {
            engine,
            replica,
            tables: RwLock::new(tables),
            ddl: Mutex::new(stamps),
            cluster,
            actor,
            clock,
            opts,
            batch_sync,
            written_body,
            watermarks,
            request_metrics: std::sync::OnceLock::new(),
            users,
        })
    }

    /// The tombstone watermarks of replicated tables (`None` with anti-entropy off).
    pub fn watermarks(&self) -> Option<&Arc<Watermarks>> {
        self.watermarks.as_ref()
    }

    /// Gives the service the node's request metrics, whose per-table figures (reads,
    /// writes, latency, siblings) TABLE_STATS reports.
    pub fn set_request_metrics(&self, metrics: Arc<crate::metrics::RequestMetrics>) {
        let _ = self.request_metrics.set(metrics);
    }

    /// The storage engine (the metrics collector reads its table and commit-log
    /// statistics).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The actor this node mints dots with.
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// Whether `table` is in this node's schema.
    pub fn has_table(&self, table: &str) -> bool {
        self.read_tables().contains_key(table)
    }

    /// The options the service was opened with.
    pub fn options(&self) -> &ServiceOptions {
        &self.opts
    }

    /// Where `request` should run (see [`Execution`]).
    pub fn execution(&self, request: &Request) -> Execution {
        match request {
            Request::CreateTable { .. } | Request::DropTable { .. } => Execution::Blocking,
            // A user change writes the users file.
            Request::CreateUser { .. }
            | Request::AlterUser { .. }
            | Request::DropUser { .. }
            | Request::Grant { .. }
            | Request::Revoke { .. } => Execution::Blocking,
            // Operator commands wait for disk (flush, compaction) or for gossip.
            Request::Flush { .. }
            | Request::Compact { .. }
            | Request::RemoveNode { .. }
            | Request::Decommission
            | Request::Cleanup { .. } => Execution::Blocking,
            Request::Insert { .. } | Request::Delete { .. } | Request::Batch { .. }
                if self.batch_sync =>
            {
                Execution::Blocking
            }
            // Many mutations are many engine writes: keep them off the async workers.
            Request::Batch { mutations, .. } if mutations.len() > INLINE_BATCH_MAX => {
                Execution::Blocking
            }
            // A row delete of a causal table scans the whole row, however wide, to learn
            // what its tombstone covers.
            Request::Delete { delete, .. }
                if matches!(delete.target, sibyl_protocol::DeleteTarget::Row { .. }) =>
            {
                Execution::Blocking
            }
            Request::Batch { mutations, .. }
                if mutations.iter().any(|m| {
                    matches!(m, sibyl_protocol::Mutation::Delete(d)
                        if matches!(d.target, sibyl_protocol::DeleteTarget::Row { .. }))
                }) =>
            {
                Execution::Blocking
            }
            _ => Execution::Inline,
        }
    }

    /// The node's users table (the connections' authenticator reads it).
    pub fn users(&self) -> &Arc<crate::auth::UserStore> {
        &self.users
    }

    /// Answers one request. Errors come back as [`Response::Error`].
    pub fn handle(&self, request: Request) -> Response {
        match self.dispatch(request) {
            Ok(r) => r,
            Err(e) => Response::Error(e),
        }
    }

    /// What the storage engine can do now (poisoned, short of disk space): for HEALTH,
    /// `sibyl-admin status` and a metrics exporter.
    pub fn health(&self) -> sibyl_storage::EngineHealth {
        self.engine.health()
    }

    /// Stops the engine's background threads and syncs the commit log.
    pub fn close(&self) -> Result<(), sibyl_storage::Error> {
        self.engine.close()
    }

    fn dispatch(&self, request: Request) -> Result<Response, ServerError> {
        match request {
            // A node on its own has no other replica to compare with.
            Request::Repair { table } => Ok(Response::AdminRepair(sibyl_protocol::RepairStatus {
                table,
                state: sibyl_protocol::RepairState::Done,
                ..sibyl_protocol::RepairStatus::default()
            })),
            Request::RepairStatus { .. } => Ok(Response::AdminRepair(
                sibyl_protocol::RepairStatus::default(),
            )),
            // A node on its own keeps no hints (its coordinator answers when it has a store).
            Request::Hints => Ok(Response::AdminHints(Vec::new())),
            // The metrics registry and the cluster name are the node's (its coordinator
            // answers).
            Request::Metrics | Request::DescribeCluster => Err(invalid(format!(
                "{} is answered by a node's coordinator, not by a service on its own",
                request.opcode().name()
            ))),
            Request::Health => Ok(Response::AdminHealth(node_health(&self.engine.health()))),
            // A node on its own streams nothing (its coordinator answers in a cluster).
            Request::Streams { .. } => Ok(Response::AdminStreams(
                sibyl_protocol::StreamsReport::default(),
            )),
            Request::Handshake { .. } => Err(invalid("HANDSHAKE is only valid as the first frame")),
            Request::Ping => Ok(Response::Pong),
            Request::AuthStart { .. } | Request::AuthFinish { .. } => Err(invalid(
                "authentication is answered by the connection, not by the service",
            )),
            Request::CreateUser {
                name,
                superuser,
                if_not_exists,
                verifier,
            } => self.create_user(name, superuser, if_not_exists, verifier),
            Request::AlterUser { name, verifier } => self.alter_user(name, verifier),
            Request::DropUser { name, if_exists } => self.drop_user(name, if_exists),
            Request::ListUsers => Ok(Response::Users(self.users.list())),
            Request::Grant { user, grant } => self.change_grant(user, grant, true),
            Request::Revoke { user, grant } => self.change_grant(user, grant, false),
            Request::Topology => Ok(Response::Topology(self.topology())),
            Request::CreateTable {
                name,
                options,
                if_not_exists,
            } => self.create_table(name, options, if_not_exists),
            Request::DropTable { name, if_exists } => self.drop_table(name, if_exists),
            Request::ListTables => {
                let mut names: Vec<String> = self.read_tables().keys().cloned().collect();
                names.sort();
                Ok(Response::Tables(names))
            }
            Request::DescribeTable { name } => {
                let s = self.schema(&name)?;
                Ok(Response::Table {
                    name: s.name.clone(),
                    options: s.options.clone(),
                })
            }
            Request::Insert {
                insert,
                consistency,
            } => {
                self.insert(&insert, consistency)?;
                Ok(self.written())
            }
            Request::Get {
                table,
                key,
                selector,
                consistency,
            } => self.get(&table, &key, &selector, consistency),
            Request::Delete {
                delete,
                consistency,
            } => {
                self.delete(&delete, consistency)?;
                Ok(self.written())
            }
            Request::Batch {
                mutations,
                consistency,
            } => {
                self.batch(&mutations, consistency)?;
                Ok(self.written())
            }
            admin @ (Request::Flush { .. }
            | Request::Compact { .. }
            | Request::TableStats { .. }
            | Request::RemoveNode { .. }
            | Request::Decommission
            | Request::Cleanup { .. }
            | Request::Rebalance
            | Request::Move { .. }) => self.admin(admin),
        }
    }

    fn topology(&self) -> Topology {
        if let Some(t) = self.cluster_topology() {
            return t;
        }
        // No cluster attached (a service opened on its own, as in unit tests).
        Topology {
            partitioner: self.opts.partitioner.name().to_owned(),
            nodes: vec![NodeInfo {
                id: node_id(self.actor),
                address: self.opts.node_address.clone(),
                datacenter: "dc1".into(),
                rack: "rack1".into(),
                state: NodeState::Normal,
                up: true,
                // A single node owns the whole ring; one token places it.
                tokens: vec![0],
                load_bytes: self.load_bytes(),
            }],
        }
    }

    fn create_table(
        &self,
        name: String,
        options: TableOptions,
        if_not_exists: bool,
    ) -> Result<Response, ServerError> {
        schema::validate(&name, &options).map_err(invalid)?;
        let mut stamps = lock(&self.ddl);
        if self.read_tables().contains_key(&name) {
            if if_not_exists {
                return Ok(Response::SchemaChanged {
                    table: name,
                    applied: false,
                });
            }
            return Err(ServerError::new(
                ErrorKind::TableExists {
                    table: name.clone(),
                },
                format!("table {name:?} already exists"),
            ));
        }
        let stamp = next_stamp(stamps.get(&name).copied(), self.clock.now_micros(), false);
        self.create_engine_table(TableSchema {
            name: name.clone(),
            options,
        })?;
        stamps.insert(name.clone(), stamp);
        self.persist_stamps(&stamps);
        drop(stamps);
        self.announce_schema_change();
        tracing::info!(table = %name, "table created");
        Ok(Response::SchemaChanged {
            table: name,
            applied: true,
        })
    }

    /// Creates the engine table of `schema` and caches the schema. Caller holds the DDL
    /// mutex.
    fn create_engine_table(&self, schema: TableSchema) -> Result<(), ServerError> {
        let name = schema.name.clone();
        let metadata = schema.encode_metadata();
        let compaction = match schema.options.compaction {
            sibyl_protocol::Compaction::SizeTiered => {
                sibyl_storage::compaction::CompactionStrategy::size_tiered()
            }
            sibyl_protocol::Compaction::Leveled => {
                sibyl_storage::compaction::CompactionStrategy::leveled()
            }
        };
        let engine_opts = sibyl_storage::TableOptions {
            compaction,
            merge: merge_policy(&self.clock, &name, &metadata, self.watermarks.as_deref()),
            metadata,
            // Every cell key starts with its row's token: memtables keep a bloom filter of
            // tokens, so a read of a row they do not hold skips their search.
            prefix_bloom_len: Some(keys::token_len(self.opts.partitioner)),
        };
        self.engine
            .create_table(&name, engine_opts)
            .map_err(storage_error)?;
        let tracked = self
            .watermarks
            .as_deref()
            .is_some_and(|w| track_if_replicated(&self.replica, &self.clock, &schema, w));
        if tracked {
            // A new table is empty: its tree is ready after one quick pass.
            if let Err(e) = self.replica.rebuild_trees() {
                tracing::warn!(table = %name, error = %e, "cannot build the new table's hash tree; repair waits for the next rebuild");
            }
        }
        self.tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(schema));
        Ok(())
    }

    /// Forgets the schema of `name` and drops its engine table. Caller holds the DDL
    /// mutex.
    fn drop_engine_table(&self, name: &str) -> Result<(), ServerError> {
        self.replica.untrack_tree(name);
        if let Some(w) = &self.watermarks {
            w.remove(name);
        }
        // Writers hold the stripe locks of their cells from their schema check to their
        // engine write (see `apply_group`). Holding every stripe here means a write either
        // finished before the drop or finds its schema gone once it has its locks, so it
        // can never land in a table re-created under the same name.
        let _all = self.replica.lock_all();
        self.tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.engine.drop_table(name).map_err(storage_error)
    }

    fn drop_table(&self, name: String, if_exists: bool) -> Result<Response, ServerError> {
        let mut stamps = lock(&self.ddl);
        if !self.read_tables().contains_key(&name) {
            if if_exists {
                return Ok(Response::SchemaChanged {
                    table: name,
                    applied: false,
                });
            }
            return Err(unknown_table(&name));
        }
        let stamp = next_stamp(stamps.get(&name).copied(), self.clock.now_micros(), true);
        self.drop_engine_table(&name)?;
        stamps.insert(name.clone(), stamp);
        self.persist_stamps(&stamps);
        drop(stamps);
        // The table's grants go with it (they spread as the users they change).
        match self.users.forget_table(&name, self.clock.now_micros()) {
            Ok(users) if !users.is_empty() => {
                tracing::info!(table = %name, users = ?users, "grants on the dropped table revoked");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(table = %name, error = %e, "cannot revoke the grants of a dropped table");
            }
        }
        self.announce_schema_change();
        tracing::info!(table = %name, "table dropped");
        Ok(Response::SchemaChanged {
            table: name,
            applied: true,
        })
    }

    fn read_tables(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TableSchema>>> {
        self.tables.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every table's schema, by name.
    pub(crate) fn table_schemas(&self) -> Vec<Arc<TableSchema>> {
        let mut v: Vec<Arc<TableSchema>> = self.read_tables().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every table's name and options, sorted by name (what ring-change plans need).
    pub(crate) fn table_options(&self) -> Vec<(String, TableOptions)> {
        self.table_schemas()
            .iter()
            .map(|s| (s.name.clone(), s.options.clone()))
            .collect()
    }

    /// The schema of `table`, or `UnknownTable`.
    pub(crate) fn schema(&self, table: &str) -> Result<Arc<TableSchema>, ServerError> {
        self.read_tables()
            .get(table)
            .cloned()
            .ok_or_else(|| unknown_table(table))
    }

    /// Refuses a request whose consistency level needs more replicas than are alive.
    /// A single node is one replica whatever the table's replication factor.
    fn check_consistency(
        &self,
        schema: &TableSchema,
        requested: Option<Consistency>,
        default: Consistency,
    ) -> Result<(), ServerError> {
        let c = requested.unwrap_or(default);
        let required =
            crate::coordinator::placement::required(c.level, schema.options.replication_factor)?;
        if required > SINGLE_NODE_ALIVE {
            return Err(ServerError::new(
                ErrorKind::Unavailable {
                    required,
                    alive: SINGLE_NODE_ALIVE,
                },
                format!(
                    "consistency {:?} needs {required} replicas of table {:?}; {SINGLE_NODE_ALIVE} alive",
                    c.level, schema.name
                ),
            ));
        }
        Ok(())
    }

    /// The encoded body of [`Service::written`] (shared, never re-encoded).
    pub fn written_body(&self) -> bytes::Bytes {
        self.written_body.clone()
    }

    /// The answer to a write that succeeded.
    pub fn written(&self) -> Response {
        Response::Written { meta: self.meta() }
    }

    fn meta(&self) -> ResponseMeta {
        ResponseMeta {
            replicas: vec![node_id(self.actor)],
            read_repair: false,
            stand_ins: Vec::new(),
        }
    }
}

/// The node id clients see, in the topology's `node.id` and in `response-meta.replicas`:
/// the actor's node part as 16 lowercase hex digits (as `ring::NodeId` displays it).
fn node_id(actor: Actor) -> String {
    format!("{:016x}", actor.node)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An `Invalid` error.
pub(crate) fn invalid(message: impl Into<String>) -> ServerError {
    ServerError::new(ErrorKind::Invalid, message)
}

fn unknown_table(table: &str) -> ServerError {
    ServerError::new(
        ErrorKind::UnknownTable {
            table: table.to_owned(),
        },
        format!("unknown table {table:?}"),
    )
}

/// The engine's health as HEALTH reports it.
fn node_health(h: &sibyl_storage::EngineHealth) -> sibyl_protocol::NodeHealth {
    let shortage = |s: &Option<sibyl_storage::SpaceShortage>| {
        s.as_ref().map(|s| sibyl_protocol::DiskShortage {
            needed: s.needed,
            free: s.free,
            reserve: s.reserve,
            since_ms: s
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
    };
    sibyl_protocol::NodeHealth {
        poisoned: h.poisoned.clone(),
        writes_refused: shortage(&h.writes_refused),
        flush_blocked: shortage(&h.flush_blocked),
        compaction_blocked: shortage(&h.compaction_blocked),
    }
}

/// Maps an engine error to the client's error.
pub(crate) fn storage_error(e: sibyl_storage::Error) -> ServerError {
    match e {
        sibyl_storage::Error::UnknownTable { name } => unknown_table(&name),
        sibyl_storage::Error::TableExists { name } => ServerError::new(
            ErrorKind::TableExists {
                table: name.clone(),
            },
            format!("table {name:?} already exists"),
        ),
        sibyl_storage::Error::InvalidArgument(m) => invalid(m),
        e @ sibyl_storage::Error::DiskFull { free, reserve, .. } => {
            ServerError::new(ErrorKind::DiskFull { free, reserve }, e.to_string())
        }
        other => {
            tracing::error!(error = %other, "storage error");
            ServerError::new(ErrorKind::Server, format!("storage: {other}"))
        }
    }
}

impl From<ReplicaError> for ServerError {
    fn from(e: ReplicaError) -> ServerError {
        match e {
            ReplicaError::Storage(e) => storage_error(e),
            ReplicaError::Versioning(e) => versioning_error(e),
            ReplicaError::InvalidCell(e) => invalid(e.to_string()),
            ReplicaError::DotClock(e) => {
                tracing::error!(error = %e, "dot clock");
                ServerError::new(ErrorKind::Server, e.to_string())
            }
        }
    }
}

/// Maps a versioning error to the client's error.
pub(crate) fn versioning_error(e: VersioningError) -> ServerError {
    match e {
        VersioningError::InvalidContext { reason } => invalid(format!("invalid context: {reason}")),
        VersioningError::TooManySiblings { count, limit } => ServerError::new(
            ErrorKind::TooManySiblings {
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            },
            format!(
                "too many siblings: the write would leave {count} (limit {limit}); \
                 read the cell and write with its context to resolve them"
            ),
        ),
        e @ VersioningError::CellTooLarge { .. } => invalid(format!(
            "{e}; read the cell and write with its context to resolve its siblings"
        )),
        other => {
            tracing::error!(error = %other, "versioning error");
            ServerError::new(ErrorKind::Server, other.to_string())
        }
    }
}

#[cfg(test)]
mod partitioner_tests;
/// The replica family's handler reads the replica and the schema of the service.
impl crate::replica::ReplicaHost for Service {
    fn replica(&self) -> &Replica {
        &self.replica
    }

    fn conflict_mode(&self, table: &str) -> Option<sibyl_protocol::ConflictMode> {
        self.read_tables()
            .get(table)
            .map(|s| s.options.conflict_mode)
    }

    /// Applies block when the commit log syncs before acknowledging, or when they are
    /// many cells; reads run inline as a single node's GET does (a row read is bounded
    /// by the page limits), unless they name many keys.
    fn may_block(&self, request: &crate::replica::ReplicaRequest) -> bool {
        use crate::replica::ReplicaRequest as R;
        match request {
            R::Apply { cells } => self.batch_sync || cells.len() > INLINE_BATCH_MAX,
            R::Read { keys, .. } | R::Digest { keys, .. } => keys.len() > INLINE_BATCH_MAX,
            R::ReadRow(_) | R::DigestRow(_) => false,
            R::Coordinate { .. } => true,
        }
    }
}

impl Service {
    /// Whether minting a write here may wait for disk (the commit log syncs before
    /// acknowledging): the coordinator then mints on the blocking pool.
    pub fn writes_block(&self) -> bool {
        self.batch_sync
    }
}

#[cfg(test)]
mod row_delete_tests;
#[cfg(test)]
mod tests;
