//! The running node: wires the configuration, the service (engine + schemas + actor),
//! cluster membership (gossip over the peer port) and the client server together, and
//! takes them down in order.
//!
//! Start-up order: create the membership handle ([`ClusterHandle`]: the published-view
//! cell and command queue), open the service with it (the service takes the data
//! directory's lock, so a second node on the same directory fails with a clear message
//! before touching any port); read the ring state (partitioner, generation, tokens,
//! [`crate::identity`]) and save the new generation; bind the client port (and the
//! metrics port with `--metrics-listen`) and the peer network ([`TcpNetwork`]); start
//! gossip ([`ClusterRuntime`]), which fills the handle; then start accepting clients and,
//! once every part it reads exists, serving metrics ([`crate::metrics`]).
//!
//! Identity: the node id is the versioning actor's node id (stable across restarts and
//! actor epoch bumps); the generation is `max(previous + 1, now in seconds)`; tokens are
//! chosen once and kept in the data directory's `ring-state` file. A node without seeds
//! starts a cluster of its own and takes evenly spaced tokens at once; a node with seeds
//! listens to gossip first so balanced allocation sees the ring it joins. A node started
//! with `--replace NODE_ID` takes that dead node's tokens instead: it listens to gossip
//! until it is sure the node is down and was normal ([`REPLACE_LISTEN`]), refuses to start
//! otherwise, announces the tokens as pending in the dead node's place, streams its
//! ranges like any bootstrap, announces `normal` and then removes the dead node.
//!
//! Shutdown order: stop accepting clients (and metrics scrapes), announce the shutdown to
//! peers and stop gossip (its task may import schema into the engine), close the peer
//! network, let connections finish their requests in flight (bounded by a grace period),
//! then close the engine, which syncs the commit log.
//!
//! Threading: [`Node::start`] and [`Node::shutdown`] run on a tokio runtime; blocking work
//! (service open and close, file writes, joining the gossip thread) runs on the blocking
//! pool. Gossip and the peer network are tokio tasks owned by the node; a tokio task
//! announces the load periodically.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use sibyl_protocol::DEFAULT_MAX_FRAME_LEN;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::{
    ClusterHandle, ClusterRuntime, ClusterView, CommandInbox, GossipConfig, Gossiper, LocalNode,
    NodeStatus, SchemaSource, TokenPlan,
};
use crate::config::{ClusterConfig, Config};
use crate::coordinator::{Coordinator, CoordinatorOptions};
use crate::hints::{DeliveryOptions, HintDelivery, HintStore, HintsHandler};
use crate::identity::{keep_saved, next_generation, RingState, RingStateError, SavedPeers};
use crate::metrics::{Metrics, NodeCollector, NodeSources, RequestMetrics};
use crate::net::{Family, NetError, PeerNetwork, TcpNetwork, TcpOptions};
use crate::repair::{RepairHandler, RepairOptions, Repairer, SyncLedger};
use crate::replica::ReplicaHost;
use crate::replica::{ReplicaExecution, ReplicaHandler};
use crate::ring::{allocate_tokens, NodeId, NodeLocation, Partitioner, Ring, Token};
use crate::server::{self, ServerOptions};
use crate::service::{Service, ServiceError, ServiceOptions};
use crate::stream::{Bootstrap, StreamHandler, StreamOptions, StreamRegistry};
use crate::versioning::{Clock, SystemClock};

/// How long shutdown waits for client connections to finish their requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the node announces its load (bytes held) through gossip.
pub const LOAD_INTERVAL: Duration = Duration::from_secs(10);
/// How often the node checks whether the ring changed and saves it (the `peers` file).
pub const PEERS_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long start-up waits for gossip to publish a restarted node as `normal` before
/// serving clients (a few driver ticks; it only bounds a race, it is not a timeout).
const READY_WAIT: Duration = Duration::from_secs(2);
/// How long a restarted node then waits for gossip to hear from the peers it remembers
/// before serving clients (Cassandra also lets gossip settle before serving).
const SETTLE_WAIT: Duration = Duration::from_secs(5);

/// Why the node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The service (storage engine, schemas, actor) could not open.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The configured first superuser could not be created.
    #[error("cannot create the first superuser: {source}")]
    Superuser {
        /// The users table's error.
        #[source]
        source: crate::auth::UserStoreError,
    },
    /// A listening address could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// `"clients"` or `"peers"`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The ring state file could not be read or written.
    #[error(transparent)]
    RingState(#[from] RingStateError),
    /// The bootstrap file could not be read or removed.
    #[error(transparent)]
    Bootstrap(#[from] crate::stream::checkpoint::BootstrapFileError),
    /// The data directory was laid out with another partitioner.
    #[error(
        "data directory {data_dir} holds data placed by the {stored} partitioner, but \
         --partitioner is {configured}: a node cannot change partitioner (and a node with \
         another partitioner cannot join this cluster)"
    )]
    PartitionerMismatch {
        /// The directory.
        data_dir: PathBuf,
        /// The partitioner in the ring state file.
        stored: Partitioner,
        /// The configured one.
        configured: Partitioner,
    },
    /// Gossip could not start on the peer network.
    #[error("cannot start gossip: {source}")]
    Gossip {
        /// The network's error.
        #[source]
        source: NetError,
    },
    /// A component's handler could not be registered on the peer network.
    #[error("cannot serve peers: {source}")]
    PeerHandler {
        /// The network's error.
        #[source]
        source: NetError,
    },
    /// The hint store could not open.
    #[error("cannot open the hint store: {source}")]
    Hints {
        /// The store's error.
        #[source]
        source: crate::hints::HintError,
    },
    /// Closing the storage engine failed (the commit log may not be synced).
    #[error("closing the storage engine (the last writes may not be durable): {source}")]
    Close {
        /// The engine's error.
        #[source]
        source: sibyl_storage::Error,
    },
    /// The data directory is that of a node that left the ring (decommissioned).
    #[error(
        "data directory {data_dir} belongs to a node that left the ring ({detail}): it \
         does not rejoin with its old tokens and data; start it on an empty data directory \
         to join as a new node"
    )]
    Decommissioned {
        /// The directory.
        data_dir: PathBuf,
        /// Which node and when, or why the mark is unreadable.
        detail: String,
    },
    /// `--replace NODE_ID` cannot go ahead.
    #[error("cannot replace node {node}: {reason}")]
    Replace {
        /// The node to replace.
        node: NodeId,
        /// Why not.
        reason: String,
    },
    /// A start-up or shutdown task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How long a replacement listens to gossip about the node it replaces, once it has heard
/// of it, before trusting that it is down: a live node's heartbeat reaches every node
/// within a few gossip rounds (1 s each), and marks it up.
pub const REPLACE_LISTEN: Duration = Duration::from_secs(5);

/// How long a replacement waits to hear of the node it replaces at all.
pub const REPLACE_DEADLINE: Duration = Duration::from_secs(60);

/// A started node.
#[derive(Debug)]
pub struct Node {
    service: Arc<Service>,
    cluster: Arc<ClusterHandle>,
    gossip: ClusterRuntime,
    net: TcpNetwork,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    generation: u64,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    load: JoinHandle<()>,
    peers: JoinHandle<()>,
    coordinator: Arc<Coordinator>,
    hints: Arc<HintStore>,
    delivery: HintDelivery,
    repairer: Arc<Repairer>,
    /// The background repair task (`None` with anti-entropy off).
    repair: Option<JoinHandle<()>>,
    /// What the node's streams are doing.
    streams: Arc<StreamRegistry>,
    /// The bootstrap task of a joining node (`None` for an owner).
    bootstrap: Option<JoinHandle<()>>,
    /// The metrics endpoint's bound address (`None` when off).
    metrics_addr: Option<SocketAddr>,
    /// The metrics endpoint's task (`None` when off).
    metrics_server: Option<JoinHandle<()>>,
}

impl Node {
    /// Opens the data directory, binds the ports, joins the cluster and starts serving
    /// clients.
    pub async fn start(config: &Config) -> Result<Node, NodeError> {
        let dir = config.data_dir.clone();
        let mark = tokio::task::spawn_blocking(move || crate::identity::Decommissioned::load(&dir))
            .await?
            .map_err(|source| NodeError::Decommissioned {
                data_dir: config.data_dir.clone(),
                detail: format!("its decommissioned file cannot be read: {source}"),
            })?;
        if let Some(mark) = mark {
            return Err(NodeError::Decommissioned {
                data_dir: config.data_dir.clone(),
                detail: match mark {
                    Ok(d) => format!("node {} left at Unix time {}", d.node, d.left_at),
                    Err(reason) => format!("its decommissioned file is damaged: {reason}"),
                },
            });
        }
        let svc_opts = ServiceOptions {
            data_dir: config.data_dir.clone(),
            sync: config.sync,
            memtable_size: config.memtable_size,
            max_siblings: config.max_siblings,
            max_value_len: config.max_value_len,
            salvage_commitlog: config.salvage_commitlog,
            min_free_disk: config.min_free_disk,
            node_address: config.listen.to_string(),
            clock: Arc::new(SystemClock),
            partitioner: config.cluster.partitioner,
            anti_entropy: config.anti_entropy,
            tombstone_min_age: config.tombstone_min_age,
        };
        let (handle, inbox) = ClusterHandle::new();
        let svc_handle = handle.clone();
        let service = Arc::new(
            tokio::task::spawn_blocking(move || {
                Service::open_in_cluster(svc_opts, Some(svc_handle))
            })
            .await??,
        );
        let data_dir = config.data_dir.clone();
        let cluster_cfg = config.cluster.clone();
        let ring = tokio::task::spawn_blocking(move || prepare_ring_state(&data_dir, &cluster_cfg))
            .await??;
        let listener = bind("clients", config.listen).await?;
        let client_addr = local_addr("clients", &listener, config.listen)?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(bind("metrics", addr).await?),
            None => None,
        };
        let metrics_addr = match (&metrics_listener, config.metrics_listen) {
            (Some(l), Some(addr)) => Some(local_addr("metrics", l, addr)?),
            _ => None,
        };
        let node_id = NodeId(service.actor().node);
        let net = TcpNetwork::bind(
            config.peer_listen,
            TcpOptions {
                max_request_data_in_flight: config.max_request_data_in_flight,
                ..TcpOptions::new(&config.cluster.cluster_name, node_id)
            },
        )
        .await
        .map_err(|source| NodeError::Bind {
            what: "peers",
            addr: config.peer_listen,
            source,
        })?;
        let peer_addr = net.local_addr();
        let hints_dir = crate::hints::hints_dir(&config.data_dir);
        let sync = config.sync;
        let hint_limits = config.hints;
        let hints = match tokio::task::spawn_blocking(move || {
            HintStore::open(&hints_dir, sync, hint_limits, Arc::new(SystemClock))
        })
        .await?
        {
            Ok(h) => Arc::new(h),
            Err(source) => {
                net.shutdown().await;
                return Err(NodeError::Hints { source });
            }
        };
        let coordinator = Arc::new(Coordinator::new(
            service.clone(),
            Arc::new(net.clone()),
            handle.clone(),
            hints.clone(),
            CoordinatorOptions {
                write_timeout: config.write_timeout,
                read_timeout: config.read_timeout,
                stream_page_bytes: config.stream_page_bytes,
                ..CoordinatorOptions::default()
            },
        ));
        let replica_handler = Arc::new(ReplicaHandler::new(
            service.clone(),
            ReplicaExecution::Blocking,
        ));
        replica_handler.set_forward_target(coordinator.clone());
        let ledger = Arc::new(SyncLedger::default());
        let registered = net
            .register(Family::Replica, replica_handler)
            .and_then(|()| {
                net.register(
                    Family::Hints,
                    Arc::new(HintsHandler::new(hints.clone(), ReplicaExecution::Blocking)),
                )
            })
            .and_then(|()| {
                net.register(
                    Family::Stream,
                    Arc::new(StreamHandler::new(
                        service.clone(),
                        handle.clone(),
                        ReplicaExecution::Blocking,
                    )),
                )
            })
            .and_then(|()| {
                net.register(
                    Family::Repair,
                    Arc::new(RepairHandler::new(
                        service.clone(),
                        ReplicaExecution::Blocking,
                        ledger.clone(),
                    )),
                )
            })
            .map_err(|source| NodeError::PeerHandler { source });
        if let Err(e) = registered {
            // Stop the network's tasks and free the peer port before giving up.
            net.shutdown().await;
            return Err(e);
        }
        for (what, addr) in [("client", client_addr), ("peer", peer_addr)] {
            if addr.ip().is_unspecified() {
                tracing::warn!(
                    %addr,
                    "the {what} address is a wildcard; peers and clients are told this \
                     address as is: listen on a routable address in a real cluster"
                );
            }
        }
        let generation = ring.generation;
        let started = start_gossip(
            config,
            &service,
            ring,
            (&handle, inbox),
            &net,
            client_addr,
            peer_addr,
        );
        let (mut gossip, entry, replace) = match started {
            Ok(started) => started,
            Err(e) => {
                net.shutdown().await;
                return Err(e);
            }
        };
        if let Some(Replacement {
            node,
            resumed: false,
        }) = replace
        {
            match check_replacement(&handle, node).await {
                Ok(tokens) => handle.replace(node, tokens),
                Err(reason) => {
                    gossip.shutdown().await;
                    net.shutdown().await;
                    return Err(NodeError::Replace { node, reason });
                }
            }
        }
        if matches!(entry, Entry::Owner | Entry::Leaving | Entry::Moving) {
            wait_until_normal(&handle).await;
        } else {
            let peers = config.cluster.seeds.iter().any(|s| *s != peer_addr);
            wait_for_schema(&handle, peers).await;
        }
        // After the schema wait: a new node of a cluster has the cluster's users by now,
        // and does not create a superuser the cluster already has (or dropped).
        let auth = match start_auth(config, &service).await {
            Ok(auth) => auth,
            Err(e) => {
                gossip.shutdown().await;
                net.shutdown().await;
                return Err(e);
            }
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let requests = Arc::new(RequestMetrics::new());
        service.set_request_metrics(requests.clone());
        let opts = ServerOptions {
            max_connections: config.max_connections,
            max_in_flight: config.max_in_flight,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_request_data_in_flight: config.max_request_data_in_flight,
            idle_timeout: config.idle_timeout,
            handshake_timeout: config.handshake_timeout,
            max_pending_handshakes: config.max_pending_handshakes,
            shutdown_grace: SHUTDOWN_GRACE,
            requests: requests.clone(),
            auth,
        };
        let server = tokio::spawn(server::serve(
            listener,
            coordinator.clone(),
            opts,
            shutdown_rx.clone(),
        ));
        let exists_service = service.clone();
        let delivery = HintDelivery::start(
            hints.clone(),
            Arc::new(net.clone()),
            handle.clone(),
            Arc::new(move |table: &str| exists_service.has_table(table)),
            DeliveryOptions::default(),
            shutdown_rx.clone(),
        );
        let peers = keep_saved(
            handle.clone(),
            config.data_dir.clone(),
            PEERS_SAVE_INTERVAL,
            ReplicaExecution::Blocking,
            shutdown_rx.clone(),
        );
        let repairer = Arc::new(Repairer::new(
            service.clone(),
            Arc::new(net.clone()),
            handle.clone(),
            ledger,
            RepairOptions {
                period: config.repair_period,
                rate_bytes: config.repair_rate,
                ..RepairOptions::default()
            },
        ));
        coordinator.set_repairer(repairer.clone());
        let repair = config.anti_entropy.then(|| {
            // Trees start building at every start; exchanges that need a building tree
            // wait for the next round.
            let rebuild_service = service.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                match rebuild_service.replica().rebuild_trees() {
                    Ok(keys) => tracing::info!(keys, elapsed = ?started.elapsed(), "anti-entropy hash trees built"),
                    Err(e) => tracing::error!(error = %e, "cannot build the anti-entropy hash trees; repair stays off"),
                }
            });
            repairer.clone().start(shutdown_rx.clone())
        });
        let streams = Arc::new(StreamRegistry::new(
            config.stream_throughput,
            shutdown_rx.clone(),
        ));
        coordinator.set_streams(streams.clone());
        let stream_opts = StreamOptions::with_page_bytes(config.stream_page_bytes);
        let bootstrap = (entry == Entry::Joining).then(|| {
            let run = Bootstrap::new(
                service.clone(),
                Arc::new(net.clone()),
                handle.clone(),
                config.data_dir.clone(),
                streams.clone(),
                stream_opts,
            );
            tokio::spawn(run.run_to_normal(replace.map(|r| r.node), shutdown_rx.clone()))
        });
        if entry == Entry::Leaving {
            crate::stream::Decommission::new(
                service.clone(),
                Arc::new(net.clone()),
                handle.clone(),
                streams.clone(),
                stream_opts,
            )
            .persisted()
            .spawn();
        }
        if entry == Entry::Moving {
            match crate::stream::MoveState::load(&config.data_dir) {
                Ok(Some(m)) => crate::stream::Mover::new(
                    service.clone(),
                    Arc::new(net.clone()),
                    handle.clone(),
                    streams.clone(),
                    stream_opts,
                )
                .spawn(m.to),
                Ok(None) => tracing::error!("the move file went missing: the move is not resumed"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the move file: the move is not resumed")
                }
            }
        }
        let removals = crate::stream::Removals::new(
            service.clone(),
            Arc::new(net.clone()),
            handle.clone(),
            streams.clone(),
            stream_opts,
        );
        streams.spawn_watcher(move |shutdown| removals.run(shutdown));
        if let Some(grace) = config.cleanup_grace {
            let cleanup =
                crate::stream::cleanup::AutoCleanup::new(service.clone(), handle.clone(), grace);
            streams.spawn_watcher(move |shutdown| cleanup.run(shutdown));
        }
        let metrics = Arc::new(Metrics::new(
            requests,
            Some(NodeCollector::new(NodeSources {
                service: service.clone(),
                cluster: handle.clone(),
                coordinator: coordinator.clone(),
                hints: hints.clone(),
                delivery: delivery.counters(),
                repairer: repairer.clone(),
                streams: streams.clone(),
            })),
        ));
        coordinator.set_metrics(metrics.clone());
        coordinator.set_cluster_name(&config.cluster.cluster_name);
        let metrics_server = metrics_listener.map(|listener| {
            if let Some(addr) = metrics_addr {
                tracing::info!(%addr, "metrics served on http://{addr}/metrics");
            }
            crate::metrics::http::serve(listener, metrics, shutdown_rx.clone())
        });
        let load = tokio::spawn(announce_load(service.clone(), handle.clone(), shutdown_rx));
        Ok(Node {
            service,
            cluster: handle,
            gossip,
            net,
            client_addr,
            peer_addr,
            generation,
            shutdown_tx,
            server,
            load,
            peers,
            coordinator,
            hints,
            delivery,
            repairer,
            repair,
            streams,
            bootstrap,
            metrics_addr,
            metrics_server,
        })
    }

    /// The bound address of the metrics endpoint (`None` when it is off).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// What this node's streams are doing.
    pub fn streams(&self) -> &Arc<StreamRegistry> {
        &self.streams
    }

    /// This node's repairer (on-demand repair, sync times).
    pub fn repairer(&self) -> &Arc<Repairer> {
        &self.repairer
    }

    /// The coordinator of this node's client requests.
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Hint delivery counters.
    pub fn hint_delivery(&self) -> crate::hints::DeliveryStats {
        self.delivery.stats()
    }

    /// The hint store's counters.
    pub fn hint_stats(&self) -> crate::hints::HintStats {
        self.hints.stats()
    }

    /// The bound client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The gossip generation of this start.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The request handler.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The membership handle (published view, commands).
    pub fn cluster(&self) -> &Arc<ClusterHandle> {
        &self.cluster
    }

    /// Stops accepting, announces the shutdown to peers, drains connections, closes the
    /// engine (syncing the commit log).
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let _ = self.shutdown_tx.send(true);
        self.gossip.shutdown().await;
        self.net.shutdown().await;
        self.server.await?;
        self.load.await?;
        self.peers.await?;
        if let Some(metrics) = self.metrics_server {
            metrics.await?;
        }
        if let Some(repair) = self.repair {
            repair.await?;
        }
        if let Some(bootstrap) = self.bootstrap {
            bootstrap.await?;
        }
        self.streams.join().await;
        self.delivery.join().await;
        let hints = self.hints;
        if let Err(e) = tokio::task::spawn_blocking(move || hints.close()).await? {
            tracing::error!(error = %e, "closing the hint store");
        }
        let service = self.service;
        tokio::task::spawn_blocking(move || service.close())
            .await?
            .map_err(|source| NodeError::Close { source })?;
        tracing::info!(
            sibling_limit_rejections = crate::versioning::sibling_limit_rejections(),
            corrupt_cells_seen = crate::versioning::corrupt_cells_seen(),
            "storage engine closed; commit log synced"
        );
        Ok(())
    }
}

/// The ring state of this start: the stored one with the next generation (saved before
/// gossip starts, so the generation grows even if this start fails later), refusing a
/// partitioner change.
fn prepare_ring_state(
    data_dir: &std::path::Path,
    cluster: &ClusterConfig,
) -> Result<RingState, NodeError> {
    let stored = RingState::load(data_dir)?;
    if let Some(s) = &stored {
        if s.partitioner != cluster.partitioner {
            return Err(NodeError::PartitionerMismatch {
                data_dir: data_dir.to_path_buf(),
                stored: s.partitioner,
                configured: cluster.partitioner,
            });
        }
    }
    let state = RingState {
        partitioner: cluster.partitioner,
        generation: next_generation(
            stored.as_ref().map(|s| s.generation),
            SystemClock.now_secs(),
        ),
        tokens: stored.map(|s| s.tokens).unwrap_or_default(),
    };
    state.save(data_dir)?;
    Ok(state)
}

/// How this start gets into the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// Tokens known and owned (a restart, or the first node of a new cluster): the caller
    /// waits for the node to be published `normal`.
    Owner,
    /// A bootstrap: new tokens chosen once gossip shows the ring, or the tokens of a
    /// bootstrap that did not complete; announced `joining` while the node streams.
    Joining,
    /// New tokens chosen once gossip shows the ring, owned at once (`--auto-bootstrap
    /// off`).
    New,
    /// Tokens owned, restarted mid-decommission: announced `leaving`, and the hand-off
    /// resumes from its `handoff` file.
    Leaving,
    /// Tokens owned, restarted mid-move: announced `moving` to the tokens of its `move`
    /// file, and the move resumes from its checkpoints.
    Moving,
}

/// A replacement of a dead node (`--replace`) under way at this start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replacement {
    /// The node replaced.
    node: NodeId,
    /// Tokens already taken (a restart mid-replacement): nothing to check.
    resumed: bool,
}

/// Builds the gossiper and starts the runtime. Returns the link, how the node enters the
/// ring, and the replacement under way if any.
fn start_gossip(
    config: &Config,
    service: &Arc<Service>,
    mut ring: RingState,
    (handle, inbox): (&Arc<ClusterHandle>, CommandInbox),
    net: &TcpNetwork,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
) -> Result<(ClusterRuntime, Entry, Option<Replacement>), NodeError> {
    let c = &config.cluster;
    let id = NodeId(service.actor().node);
    let seeds: Vec<SocketAddr> = c
        .seeds
        .iter()
        .copied()
        .filter(|s| *s != peer_addr)
        .collect();
    let generation = ring.generation;
    // A `bootstrap` file means the tokens were chosen by a bootstrap that has not
    // completed; without saved tokens it is a leftover of a crash before they were saved.
    let bootstrap_state = crate::stream::BootstrapState::load(&config.data_dir)?;
    let bootstrap_file = bootstrap_state.is_some();
    if bootstrap_file && ring.tokens.is_empty() {
        crate::stream::BootstrapState::remove(&config.data_dir)?;
    }
    let resumed_replace = bootstrap_state.and_then(|s| s.replacing);
    let mut replace = None;
    let plan = if !ring.tokens.is_empty() && bootstrap_file {
        if let Some(node) = resumed_replace {
            if config.replace.is_some_and(|asked| asked != node) {
                return Err(NodeError::Replace {
                    node: config.replace.unwrap_or(node),
                    reason: format!(
                        "this node is already replacing node {node} (its bootstrap file \
                         says so): restart it with --replace {node}, or without --replace"
                    ),
                });
            }
            tracing::info!(node = %id, replaced = %node, tokens = ring.tokens.len(), "restarting a replacement that did not complete: joining in node {node}'s place with its tokens");
            replace = Some(Replacement {
                node,
                resumed: true,
            });
            TokenPlan::Replace {
                node,
                tokens: Some(ring.tokens.clone()),
            }
        } else {
            tracing::info!(node = %id, generation, tokens = ring.tokens.len(), "restarting a bootstrap that did not complete: joining with the saved tokens");
            TokenPlan::Resume(ring.tokens.clone())
        }
    } else if !ring.tokens.is_empty() {
        if let Some(node) = config.replace {
            tracing::warn!(replaced = %node, "--replace ignored: this node owns tokens already (its replacement completed, or it was never new); remove the flag");
        }
        if ring.tokens.len() != c.num_tokens {
            tracing::info!(
                saved = ring.tokens.len(),
                configured = c.num_tokens,
                "keeping the saved tokens; --num-tokens applies to a node's first join only"
            );
        }
        let moving = crate::stream::MoveState::load(&config.data_dir)?;
        let mut owned = ring.tokens.clone();
        owned.sort();
        if crate::stream::Decommission::under_way(&config.data_dir)? {
            tracing::warn!(node = %id, generation, tokens = ring.tokens.len(), "restarting mid-decommission (handoff file): leaving, resuming the hand-off");
            TokenPlan::Leaving(ring.tokens.clone())
        } else if let Some(m) = moving.filter(|m| m.to != owned) {
            tracing::warn!(node = %id, generation, tokens = ring.tokens.len(), "restarting mid-move (move file): moving, resuming its streams");
            TokenPlan::Moving {
                tokens: ring.tokens.clone(),
                to: m.to,
            }
        } else {
            // A move whose new tokens were recorded before the restart is complete.
            crate::stream::MoveState::remove(&config.data_dir)?;
            tracing::info!(node = %id, generation, tokens = ring.tokens.len(), "restarting with saved tokens");
            TokenPlan::Existing(ring.tokens.clone())
        }
    } else if seeds.is_empty() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(id.0 ^ generation);
        ring.tokens = allocate_tokens(
            &Ring::empty(c.partitioner),
            c.num_tokens,
            c.token_allocation,
            &mut rng,
        );
        ring.save(&config.data_dir)?;
        tracing::info!(
            node = %id,
            generation,
            tokens = ring.tokens.len(),
            "no seeds: starting a new cluster {:?} of my own",
            c.cluster_name
        );
        TokenPlan::Existing(ring.tokens.clone())
    } else if let Some(node) = config.replace {
        tracing::info!(
            node = %id,
            generation,
            seeds = ?seeds,
            replaced = %node,
            "replacing node {node} in cluster {:?}: listening to gossip to check it is down",
            c.cluster_name
        );
        replace = Some(Replacement {
            node,
            resumed: false,
        });
        TokenPlan::Replace { node, tokens: None }
    } else {
        tracing::info!(
            node = %id,
            generation,
            seeds = ?seeds,
            "joining cluster {:?}: listening to gossip before choosing {} tokens",
            c.cluster_name,
            c.num_tokens
        );
        if config.auto_bootstrap {
            TokenPlan::AllocateJoining {
                count: c.num_tokens,
                allocation: c.token_allocation,
            }
        } else {
            tracing::info!("--auto-bootstrap off: owning the chosen ranges at once, empty");
            TokenPlan::Allocate {
                count: c.num_tokens,
                allocation: c.token_allocation,
            }
        }
    };
    let existing = matches!(
        plan,
        TokenPlan::Existing(_) | TokenPlan::Leaving(_) | TokenPlan::Moving { .. }
    );
    let leaving = matches!(plan, TokenPlan::Leaving(_));
    let moving = matches!(plan, TokenPlan::Moving { .. });
    let joining = matches!(
        plan,
        TokenPlan::AllocateJoining { .. } | TokenPlan::Resume(_) | TokenPlan::Replace { .. }
    );
    let restarted = matches!(
        plan,
        TokenPlan::Existing(_)
            | TokenPlan::Leaving(_)
            | TokenPlan::Moving { .. }
            | TokenPlan::Resume(_)
            | TokenPlan::Replace {
                tokens: Some(_),
                ..
            }
    );
    let mut gossip = GossipConfig::new(
        &c.cluster_name,
        if seeds.is_empty() {
            vec![peer_addr]
        } else {
            seeds
        },
    );
    gossip.partitioner = c.partitioner;
    gossip.failure_detector.phi_threshold = c.phi_threshold;
    let local = LocalNode {
        id,
        generation,
        peer_address: peer_addr,
        client_address: Some(client_addr),
        location: NodeLocation::new(&c.datacenter, &c.rack),
        tokens: Vec::new(),
        status: NodeStatus::Joining,
        schema_version: service.schema_version(),
        load: service.load_bytes(),
    };
    let mut gossiper = Gossiper::new(gossip, local, id.0 ^ generation.rotate_left(32), 0);
    if restarted {
        remember_saved_peers(&mut gossiper, &config.data_dir, c.partitioner);
    }
    let data_dir = config.data_dir.clone();
    let on_chosen = Box::new(move |tokens: &[Token]| {
        if restarted {
            return;
        }
        // The bootstrap file first: saved tokens without it would restart as an owner
        // of ranges never streamed.
        if joining {
            let state = crate::stream::BootstrapState {
                replacing: replace.map(|r| r.node),
                ranges: Vec::new(),
            };
            if let Err(e) = state.save(&data_dir) {
                tracing::error!(error = %e, "cannot record the bootstrap; a restart before it completes owns its ranges unstreamed (repair fills them)");
            }
        }
        let state = RingState {
            partitioner: ring.partitioner,
            generation: ring.generation,
            tokens: tokens.to_vec(),
        };
        match state.save(&data_dir) {
            Ok(()) => tracing::info!(
                tokens = tokens.len(),
                joining,
                "tokens chosen and saved (joining: streamed before they are owned)"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "tokens chosen but not saved: a restart would choose new ones"
            ),
        }
    });
    let schema: Arc<dyn SchemaSource> = service.clone();
    let runtime = ClusterRuntime::start(
        handle.clone(),
        inbox,
        gossiper,
        Arc::new(net.clone()),
        schema,
        plan,
        on_chosen,
    )
    .map_err(|source| NodeError::Gossip { source })?;
    Ok((
        runtime,
        if leaving {
            Entry::Leaving
        } else if moving {
            Entry::Moving
        } else if existing {
            Entry::Owner
        } else if joining {
            Entry::Joining
        } else {
            Entry::New
        },
        replace,
    ))
}

/// Seeds `gossiper` with the ring saved by the last run (down until heard from), so a
/// restarted node that reaches no peer yet does not take their keys as its own. A
/// missing, corrupt or foreign-partitioner file is logged and left to gossip.
fn remember_saved_peers(gossiper: &mut Gossiper, dir: &std::path::Path, partitioner: Partitioner) {
    match SavedPeers::load(dir) {
        Ok(Some(saved)) if saved.partitioner == partitioner => {
            tracing::info!(
                peers = saved.peers.len(),
                "remembering the ring of the last run"
            );
            gossiper.remember(&saved.peers);
        }
        Ok(Some(_)) => {
            tracing::warn!("the saved peers use another partitioner; ignored");
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "the saved peers are unreadable; learning the ring from gossip")
        }
    }
}

/// Polls the view until the local node is published `normal` (bounded by
/// [`READY_WAIT`]), so the first topology answer already shows it.
async fn wait_until_normal(link: &ClusterHandle) {
    let deadline = Instant::now() + READY_WAIT;
    while Instant::now() < deadline {
        // Normal, or leaving or moving (a decommission or move resumed).
        let normal = link.view().is_some_and(|v| {
            v.node(v.local).is_some_and(|n| {
                matches!(
                    n.status,
                    Some(NodeStatus::Normal | NodeStatus::Leaving | NodeStatus::Moving)
                )
            })
        });
        if normal {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // polling interval
    }
    // Then until gossip has heard from the peers the saved ring remembers (they start
    // as down): a node that served at once would refuse writes or hint them needlessly
    // for their first second. And until this node holds the schema the live nodes hold
    // (schema agreement, as Cassandra waits for on bootstrap): a node with an empty or
    // stale schema (a new or wiped disk, a table created while it was down) would answer
    // UNKNOWN_TABLE for tables that exist. Bounded: peers that are really down, or a
    // schema that does not arrive, do not hold it up.
    let deadline = Instant::now() + SETTLE_WAIT;
    while Instant::now() < deadline {
        let settled = link.view().is_some_and(|v| {
            let owners_up = v
                .nodes
                .values()
                .filter(|n| n.status.is_some_and(|s| s.owns_tokens()))
                .all(|n| n.alive);
            owners_up && schema_agreed(&v)
        });
        if settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // polling interval
    }
    tracing::info!(
        "serving before every peer of the saved ring was heard from and the schema agreed \
         (some peers are down or disagree)"
    );
}

/// Whether every live peer that announced a schema version announced this node's.
pub(crate) fn schema_agreed(v: &ClusterView) -> bool {
    let mine = v.node(v.local).and_then(|n| n.schema_version);
    v.nodes
        .values()
        .filter(|n| n.alive && n.id != v.local)
        .filter_map(|n| n.schema_version)
        .all(|theirs| Some(theirs) == mine)
}

/// A node without saved tokens (new, or its disk wiped) that has seeds: polls (bounded by
/// [`SETTLE_WAIT`]) until gossip has heard from a peer and this node holds the schema the
/// live peers announce, so that its first clients do not get UNKNOWN_TABLE for tables
/// that exist.
/// Creates the configured first superuser if the users table lacks it, and returns the
/// connections' authenticator.
async fn start_auth(
    config: &Config,
    service: &Arc<Service>,
) -> Result<Arc<crate::auth::Authenticator>, NodeError> {
    if let Some(seed) = &config.auth.superuser {
        let svc = service.clone();
        let (name, password) = (seed.name.clone(), seed.password.0.clone());
        // PBKDF2 and a file write: off the async workers.
        let created = tokio::task::spawn_blocking(move || svc.ensure_superuser(&name, &password))
            .await
            .unwrap_or_else(|e| {
                Err(crate::auth::UserStoreError::Invalid(format!(
                    "the task creating the superuser failed: {e}"
                )))
            });
        match created {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(user = %seed.name, "superuser exists (or was dropped); left as it is")
            }
            Err(source) => return Err(NodeError::Superuser { source }),
        }
    }
    let required = config.auth.mode == crate::config::AuthMode::Required;
    if required && service.users().list().is_empty() {
        tracing::warn!(
            "authentication is required but there are no users yet: nobody can log in until \
             a peer brings users or the node restarts with --auth-superuser NAME"
        );
    }
    tracing::info!(required, "client authentication");
    Ok(Arc::new(crate::auth::Authenticator::new(
        config.auth.mode,
        service.users().clone(),
    )))
}

async fn wait_for_schema(link: &ClusterHandle, peers: bool) {
    let deadline = Instant::now() + SETTLE_WAIT;
    while Instant::now() < deadline {
        let ready = link.view().is_some_and(|v| {
            let heard = !peers || v.nodes.values().any(|n| n.id != v.local && n.alive);
            heard && schema_agreed(&v)
        });
        if ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await; // polling interval
    }
    tracing::info!(
        "serving before the schema agreed with the live peers (none heard, or they disagree)"
    );
}

/// Checks that `node` may be replaced by this new node: gossip knows it, it was `normal`
/// with tokens, no other node replaces it, no node is leaving, and it stays down for
/// [`REPLACE_LISTEN`] after this node first heard of it. Returns its tokens, or why not.
async fn check_replacement(link: &ClusterHandle, node: NodeId) -> Result<Vec<Token>, String> {
    let start = Instant::now();
    let mut heard: Option<Instant> = None;
    loop {
        if let Some(view) = link.view() {
            if let Some(n) = view.node(node) {
                let since = *heard.get_or_insert_with(Instant::now);
                if n.alive {
                    return Err(format!(
                        "node {node} is up: --replace is for a dead node (decommission a live one)"
                    ));
                }
                match n.status {
                    Some(NodeStatus::Normal) if !n.tokens.is_empty() => {}
                    Some(s @ (NodeStatus::Left | NodeStatus::Removed)) => {
                        return Err(format!(
                            "node {node} is {}: it owns no tokens any more; start without \
                             --replace to join as a new node",
                            s.name()
                        ))
                    }
                    Some(NodeStatus::Leaving) => {
                        return Err(format!(
                            "node {node} died leaving: `sibyl-admin removenode {node}` on a \
                             live node, then start this node without --replace"
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "node {node} never owned tokens (it died joining): start without \
                             --replace to join as a new node"
                        ))
                    }
                }
                if let Some(other) = view.nodes.values().find(|o| {
                    o.id != view.local
                        && o.replacing == Some(node)
                        && !o.status.is_some_and(|s| s.is_departed())
                }) {
                    return Err(format!("node {} is already replacing it", other.id));
                }
                if let Some(busy) = view
                    .nodes
                    .values()
                    .find(|n| matches!(n.status, Some(NodeStatus::Leaving | NodeStatus::Moving)))
                {
                    return Err(format!(
                        "node {} is {} (one ring change at a time per range): replace once \
                         it is done",
                        busy.id,
                        busy.status.map_or("leaving", |s| s.name())
                    ));
                }
                if since.elapsed() >= REPLACE_LISTEN {
                    return Ok(n.tokens.to_vec());
                }
            }
        }
        if heard.is_none() && start.elapsed() >= REPLACE_DEADLINE {
            return Err(format!(
                "gossip never told of node {node} within {} s (check the id with `sibyl-admin \
                 status` and the seeds)",
                REPLACE_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // polling interval
    }
}

/// Announces the node's load every [`LOAD_INTERVAL`] until shutdown.
async fn announce_load(
    service: Arc<Service>,
    link: Arc<ClusterHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(LOAD_INTERVAL) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let svc = service.clone();
        if let Ok(bytes) = tokio::task::spawn_blocking(move || svc.load_bytes()).await {
            link.set_load(bytes);
        }
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, NodeError> {
    l.local_addr()
        .map_err(|source| NodeError::Bind { what, addr, source })
}
