//! The simulated cluster the simulations share: whole nodes (each a real `Service` with
//! its engine in a temp dir, its hint store, its `Coordinator`, its replica and hints
//! handlers, hint delivery and gossip) on one `SimNetwork`, in one process on a paused
//! tokio clock. Clients are the test calling `Coordinator::answer` on the node it picks,
//! as a client connection would. A crash cuts the node off the network and closes
//! everything it had open; a restart reopens its engine and hint store from its
//! directory, as a new process would. Nodes stream on ring changes as real ones do: a
//! node added by [`Sim::join_new`] bootstraps, [`Sim::decommission`] hands a node's ranges
//! off, and a node that left is retired ([`Sim::retire_left`]: stopped for good).
#![allow(dead_code)] // each simulation uses part of it
#![allow(clippy::unwrap_used)] // test harness

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use sibyl::cluster::simulation::sim_addr;
use sibyl::cluster::{
    ClusterHandle, ClusterRuntime, GossipConfig, Gossiper, LocalNode, NodeStatus, TokenPlan,
};
use sibyl::coordinator::{Coordinator, CoordinatorOptions};
use sibyl::hints::{DeliveryOptions, HintDelivery, HintLimits, HintStore, HintsHandler};
use sibyl::identity::{keep_saved, SavedPeers};
use sibyl::net::{Family, PeerNetwork, SimConfig, SimNetwork};
use sibyl::repair::{RepairHandler, RepairOptions, Repairer, SyncLedger};
use sibyl::replica::{ReplicaExecution, ReplicaHandler, ReplicaHost};
use sibyl::ring::{NodeId, NodeLocation, Partitioner, ReplicationStrategy, Token, TokenAllocation};
use sibyl::service::{Service, ServiceOptions};
use sibyl::stream::{
    Bootstrap, BootstrapState, Removals, StreamHandler, StreamOptions, StreamRegistry,
};
use sibyl::versioning::{Actor, ActorEpoch};
use sibyl_protocol::{
    Cell, ColumnWrite, ConflictMode, Consistency, Request, Response, ResponseMeta, RowInsert,
    Selector, TableOptions,
};
use tokio::sync::watch;
use tokio::time::Instant;

pub const RF: usize = 3;
pub const TABLE: &str = "sets";
/// Bound on every wait of a run (virtual time).
pub const DEADLINE: Duration = Duration::from_secs(600);

pub fn seed() -> u64 {
    // `SIBYL_SIM_LOG=debug` (an env filter) shows the nodes' logs.
    if let Ok(filter) = std::env::var("SIBYL_SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let s = std::env::var("SIBYL_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_0009);
    println!("seed = {s} (set SIBYL_SIM_SEED to replay)");
    s
}

#[path = "inline_schema.rs"]
mod inline_schema;
use inline_schema::InlineSchema;
use sibyl::cluster::SchemaSource;

/// What a running node has open.
pub struct Running {
    pub service: Arc<Service>,
    /// On-demand anti-entropy of this node (engine work inline).
    pub repairer: Arc<Repairer>,
    pub handle: Arc<ClusterHandle>,
    pub runtime: ClusterRuntime,
    pub coordinator: Arc<Coordinator>,
    pub hints: Arc<HintStore>,
    pub delivery: HintDelivery,
    pub saver: tokio::task::JoinHandle<()>,
    pub stop: watch::Sender<bool>,
    /// The node's streams (bootstrap, decommission, removenode) and their tasks.
    pub streams: Arc<StreamRegistry>,
    /// The bootstrap of a joining node.
    pub bootstrap: Option<tokio::task::JoinHandle<()>>,
}

/// One node's place in the cluster: its directory outlives its processes.
pub struct Slot {
    pub dir: tempfile::TempDir,
    pub id: NodeId,
    pub addr: SocketAddr,
    pub generation: u64,
    pub tokens: Option<Vec<Token>>,
    /// Tokens a joining node chose (set by the runtime's callback, read at a restart).
    pub chosen: Arc<Mutex<Option<Vec<Token>>>>,
    /// Joined a running cluster: it bootstraps (streams its ranges) before owning them.
    pub joins: bool,
    /// Left the ring (decommissioned) and stopped for good: never restarted or read.
    pub retired: bool,
    pub running: Option<Running>,
    /// What a crashed process still holds until its last task ends.
    pub closing: Option<(Weak<Service>, Weak<HintStore>)>,
}

/// How hint delivery runs in a scenario.
#[derive(Clone, Copy)]
pub struct Delivery {
    pub interval: Duration,
}

pub struct Sim {
    pub world: SimNetwork,
    pub slots: Vec<Slot>,
    pub delivery: Delivery,
}

impl Sim {
    /// `n` nodes joined one by one into one ring, with the `sets` table (rf 3, causal).
    pub async fn start(n: usize, seed: u64, config: SimConfig, delivery: Delivery) -> Sim {
        let world = SimNetwork::new(config, seed);
        let mut sim = Sim {
            world,
            slots: Vec::new(),
            delivery,
        };
        for i in 0..n {
            sim.add_slot(seed, false);
            sim.open(i);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        sim.settle().await;
        for (i, slot) in sim.slots.iter_mut().enumerate() {
            let view = slot.running.as_ref().unwrap().handle.view().unwrap();
            slot.tokens = Some(view.node(slot.id).unwrap().tokens.to_vec());
            assert!(
                !slot.tokens.as_ref().unwrap().is_empty(),
                "node {i} has tokens"
            );
        }
        let created = sim.node(0).service.handle(Request::CreateTable {
            name: TABLE.into(),
            options: TableOptions {
                replication_factor: RF as u16,
                conflict_mode: ConflictMode::Causal,
                ..TableOptions::default()
            },
            if_not_exists: false,
        });
        assert!(
            matches!(created, Response::SchemaChanged { .. }),
            "{created:?}"
        );
        let start = Instant::now();
        wait_for("the table on every node", start, || {
            sim.running().all(|(_, r)| r.service.has_table(TABLE))
        })
        .await;
        sim
    }

    /// A new node's slot (directory, id, address), not started; `joins`: it bootstraps
    /// into a running cluster. Returns its index.
    fn add_slot(&mut self, seed: u64, joins: bool) -> usize {
        let i = self.slots.len();
        self.slots.push(Slot {
            dir: tempfile::tempdir().unwrap(),
            id: NodeId(seed.rotate_left(7 * i as u32) ^ (i as u64 + 1)),
            addr: sim_addr(i),
            generation: 0,
            tokens: None,
            chosen: Arc::new(Mutex::new(None)),
            joins,
            retired: false,
            running: None,
            closing: None,
        });
        ActorEpoch::create(self.slots[i].dir.path(), Actor::new(self.slots[i].id.0, 1)).unwrap();
        i
    }

    /// Starts a new node that joins the running cluster: it bootstraps (chooses tokens,
    /// announces them pending, streams its ranges) and then owns them. Returns its index.
    pub fn join_new(&mut self, seed: u64) -> usize {
        let i = self.add_slot(seed, true);
        self.open(i);
        i
    }

    /// Asks node `i` to decommission (through its coordinator, as `sibyl-admin` does);
    /// the node's answer: accepted (it streams, then leaves) or refused, with why.
    /// Asks node `i` to move to `tokens` (through its coordinator, as `sibyl-admin
    /// rebalance --commit` does); a refusal is returned.
    pub async fn move_to(&self, i: usize, tokens: Vec<i128>) -> Result<String, String> {
        match self
            .node(i)
            .coordinator
            .answer(Request::Move { tokens })
            .await
        {
            Response::AdminDone { message } => Ok(message),
            other => Err(format!("{other:?}")),
        }
    }

    pub async fn decommission(&self, i: usize) -> Result<String, String> {
        match self.node(i).coordinator.answer(Request::Decommission).await {
            Response::AdminDone { message } => Ok(message),
            other => Err(format!("{other:?}")),
        }
    }

    /// Stops for good every running node that every running node (itself included) sees
    /// `left`, as an operator would (`sibyl-admin decommission` waits for the same);
    /// returns them.
    pub async fn retire_left(&mut self) -> Vec<usize> {
        let sees_left = |r: &Running, id: NodeId| {
            r.handle
                .view()
                .is_some_and(|v| v.node(id).and_then(|n| n.status) == Some(NodeStatus::Left))
        };
        let left: Vec<usize> = self
            .running()
            .filter(|(i, _)| {
                let id = self.slots[*i].id;
                self.running().all(|(_, r)| sees_left(r, id))
            })
            .map(|(i, _)| i)
            .collect();
        for &i in &left {
            self.crash(i).await;
            self.slots[i].retired = true;
        }
        left
    }

    /// Waits until no running node sees a ring change under way, retiring every node that
    /// left meanwhile.
    pub async fn finish_ring_changes(&mut self) {
        let start = Instant::now();
        loop {
            self.retire_left().await;
            self.remove_retired_seen_leaving().await;
            // A change under way, or a node that left and is not yet retired (the others
            // have not all heard it left).
            let changing = self.running().any(|(i, r)| {
                r.handle.view().is_none_or(|v| {
                    v.future_ring().is_some()
                        || v.node(self.slots[i].id).and_then(|n| n.status) == Some(NodeStatus::Left)
                })
            });
            if !changing {
                return;
            }
            if start.elapsed() >= DEADLINE {
                panic!(
                    "timed out waiting for the ring changes to complete:\n{}",
                    self.describe_views()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A retired node that the cluster still sees `leaving` (it stopped after handing
    /// everything off, before its `left` spread) is removed through a running node, as
    /// an operator would (`sibyl-admin removenode`); refusals are retried by the caller.
    async fn remove_retired_seen_leaving(&self) {
        let Some((_, r)) = self.running().next() else {
            return;
        };
        let Some(view) = r.handle.view() else {
            return;
        };
        for slot in self.slots.iter().filter(|s| s.retired) {
            let leaving = view
                .node(slot.id)
                .is_some_and(|n| n.status == Some(NodeStatus::Leaving) && !n.alive);
            if !leaving {
                continue;
            }
            let service = r.service.clone();
            let request = Request::RemoveNode {
                node_id: slot.id.to_string(),
                force: false,
            };
            let answer = tokio::task::spawn_blocking(move || service.handle(request))
                .await
                .unwrap();
            println!(
                "removenode of retired node {} (seen leaving): {answer:?}",
                slot.id
            );
        }
    }

    /// What every running node's view says of every node (index, status, down), one line
    /// per running node: for the message of a wait that timed out.
    pub fn describe_views(&self) -> String {
        let views: Vec<String> = self
            .running()
            .map(|(i, r)| {
                let states: Vec<String> = r
                    .handle
                    .view()
                    .map(|v| {
                        v.nodes
                            .values()
                            .map(|n| {
                                format!(
                                    "{}:{}{}",
                                    self.index_of(n.id),
                                    n.status.map_or("-", |s| s.name()),
                                    if n.alive { "" } else { "(down)" }
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!("node {i} sees [{}]", states.join(" "))
            })
            .collect();
        views.join("\n")
    }

    /// The slots that are part of the cluster (not retired).
    pub fn members(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.slots.len()).filter(|i| !self.slots[*i].retired)
    }

    /// Opens node `i`'s process from its directory (its first start or a restart).
    pub fn open(&mut self, i: usize) {
        let delivery = self.delivery;
        // Node 0 seeds the first nodes; a node that joins later is given three members
        // as seeds (as an operator lists several), and so is every node once node 0 left.
        let seeds: Vec<SocketAddr> = if self.slots[0].retired || self.slots[i].joins {
            self.members()
                .filter(|m| *m != i)
                .take(3)
                .map(|m| self.slots[m].addr)
                .collect()
        } else {
            vec![sim_addr(0)]
        };
        let slot = &mut self.slots[i];
        assert!(slot.running.is_none(), "node {i} is already running");
        assert!(!slot.retired, "node {i} left the cluster");
        if let Some(chosen) = slot.chosen.lock().unwrap().clone() {
            slot.tokens = Some(chosen);
        }
        // As a node does: the tokens a completed move recorded in the ring state file.
        if let Some(saved) = sibyl::identity::RingState::load(slot.dir.path()).unwrap() {
            if !saved.tokens.is_empty() && slot.tokens.is_some() {
                slot.tokens = Some(saved.tokens);
            }
        }
        slot.generation += 1;
        let clock = Arc::new(self.world.clock(slot.addr));
        let net = Arc::new(self.world.node(slot.addr, slot.id));
        let net_for_streams = net.clone();
        let (handle, inbox) = ClusterHandle::new();
        let options = ServiceOptions {
            memtable_size: 1 << 20,
            node_address: slot.addr.to_string(),
            ..ServiceOptions::new(slot.dir.path().to_path_buf(), clock.clone())
        };
        let sync = options.sync;
        let service = Arc::new(Service::open_in_cluster(options, Some(handle.clone())).unwrap());
        let hints = Arc::new(
            HintStore::open(
                &sibyl::hints::hints_dir(slot.dir.path()),
                sync,
                HintLimits::default(),
                clock,
            )
            .unwrap(),
        );
        let peers: Arc<dyn PeerNetwork> = net.clone();
        let coordinator = Arc::new(Coordinator::new(
            service.clone(),
            peers.clone(),
            handle.clone(),
            hints.clone(),
            CoordinatorOptions {
                execution: ReplicaExecution::Inline,
                // As the node's own streams below: small pages, so ranges are ingested.
                stream_page_bytes: 512,
                ..CoordinatorOptions::default()
            },
        ));
        let replica = Arc::new(ReplicaHandler::new(
            service.clone(),
            ReplicaExecution::Inline,
        ));
        replica.set_forward_target(coordinator.clone());
        net.register(Family::Replica, replica).unwrap();
        net.register(
            Family::Hints,
            Arc::new(HintsHandler::new(hints.clone(), ReplicaExecution::Inline)),
        )
        .unwrap();
        let ledger = Arc::new(SyncLedger::default());
        net.register(
            Family::Repair,
            Arc::new(RepairHandler::new(
                service.clone(),
                ReplicaExecution::Inline,
                ledger.clone(),
            )),
        )
        .unwrap();
        // Trees build at every start (inline: nothing races the virtual clock).
        service.replica().rebuild_trees().unwrap();
        let repairer = Arc::new(Repairer::new(
            service.clone(),
            peers.clone(),
            handle.clone(),
            ledger,
            RepairOptions {
                call_timeout: Duration::from_secs(5),
                execution: ReplicaExecution::Inline,
                ..RepairOptions::default()
            },
        ));
        let mut gossip = GossipConfig::new("sim", seeds);
        gossip.interval_ms = 200;
        let local = LocalNode {
            id: slot.id,
            generation: slot.generation,
            peer_address: slot.addr,
            client_address: None,
            location: NodeLocation::default(),
            tokens: Vec::new(),
            status: NodeStatus::Joining,
            schema_version: service.schema_version(),
            load: 0,
        };
        // As a node does: saved tokens with a bootstrap file resume a bootstrap.
        let bootstrap_file = BootstrapState::load(slot.dir.path()).unwrap().is_some();
        let joining = slot.joins && (slot.tokens.is_none() || bootstrap_file);
        let plan = match &slot.tokens {
            Some(tokens) if bootstrap_file => TokenPlan::Resume(tokens.clone()),
            Some(tokens) => TokenPlan::Existing(tokens.clone()),
            None if slot.joins => TokenPlan::AllocateJoining {
                count: 8,
                allocation: TokenAllocation::Balanced,
            },
            None => TokenPlan::Allocate {
                count: 8,
                allocation: TokenAllocation::Balanced,
            },
        };
        let (chosen, dir) = (slot.chosen.clone(), slot.dir.path().to_path_buf());
        let restarted = slot.tokens.is_some();
        let on_chosen = Box::new(move |tokens: &[Token]| {
            if restarted {
                return;
            }
            // The bootstrap file first, as a node saves it before its tokens.
            if joining {
                BootstrapState::default().save(&dir).unwrap();
            }
            *chosen.lock().unwrap() = Some(tokens.to_vec());
        });
        let mut gossiper = Gossiper::new(gossip, local, slot.id.0 ^ slot.generation, 0);
        if restarted {
            // A restart: the ring of the last run, as the node remembers it.
            if let Some(saved) = SavedPeers::load(slot.dir.path()).unwrap() {
                gossiper.remember(&saved.peers);
            }
        }
        let runtime = ClusterRuntime::start(
            handle.clone(),
            inbox,
            gossiper,
            net,
            Arc::new(InlineSchema(service.clone())),
            plan,
            on_chosen,
        )
        .unwrap();
        let (stop, stopped) = watch::channel(false);
        net_for_streams
            .register(
                Family::Stream,
                Arc::new(StreamHandler::new(
                    service.clone(),
                    handle.clone(),
                    ReplicaExecution::Inline,
                )),
            )
            .unwrap();
        let streams = Arc::new(StreamRegistry::new(0, stopped.clone()));
        coordinator.set_streams(streams.clone());
        // Small pages: a range of a few cells spans several, so streams ingest
        // (straight into SSTables, checkpointed every four pages) as large ranges do.
        let stream_opts = StreamOptions {
            page_bytes: 512,
            checkpoint_bytes: 4 * 512,
            call_timeout: Duration::from_secs(5),
            execution: ReplicaExecution::Inline,
            ..StreamOptions::default()
        };
        let removals = Removals::new(
            service.clone(),
            peers.clone(),
            handle.clone(),
            streams.clone(),
            stream_opts,
        );
        streams.spawn_watcher(move |shutdown| removals.run(shutdown));
        let bootstrap = joining.then(|| {
            let run = Bootstrap::new(
                service.clone(),
                peers.clone(),
                handle.clone(),
                slot.dir.path().to_path_buf(),
                streams.clone(),
                stream_opts,
            );
            tokio::spawn(run.run_to_normal(None, stopped.clone()))
        });
        let saver = keep_saved(
            handle.clone(),
            slot.dir.path().to_path_buf(),
            Duration::from_secs(1),
            ReplicaExecution::Inline,
            stopped.clone(),
        );
        let exists = service.clone();
        let delivery = HintDelivery::start(
            hints.clone(),
            peers,
            handle.clone(),
            Arc::new(move |table: &str| exists.has_table(table)),
            DeliveryOptions {
                interval: delivery.interval,
                call_timeout: Duration::from_secs(1),
                backoff_min: Duration::from_millis(200),
                backoff_max: Duration::from_secs(2),
                execution: ReplicaExecution::Inline,
                ..DeliveryOptions::default()
            },
            stopped,
        );
        slot.running = Some(Running {
            service,
            repairer,
            handle,
            runtime,
            coordinator,
            hints,
            delivery,
            saver,
            stop,
            streams,
            bootstrap,
        });
    }

    /// Kills node `i` (kill -9): off the network, its tasks stopped, its files closed
    /// once the last request it was serving ends.
    pub async fn crash(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        self.world.crash(slot.addr);
        let mut r = slot.running.take().expect("crash a running node");
        let _ = r.stop.send(true);
        r.runtime.shutdown().await;
        r.delivery.join().await;
        r.saver.await.unwrap();
        r.streams.join().await;
        if let Some(b) = r.bootstrap.take() {
            b.await.unwrap();
        }
        slot.closing = Some((Arc::downgrade(&r.service), Arc::downgrade(&r.hints)));
    }

    /// Restarts crashed node `i` from its directory; a node that had left the ring (its
    /// `decommissioned` file) refuses to start, as a real one does, and is retired.
    pub async fn restart(&mut self, i: usize) {
        if sibyl::identity::Decommissioned::load(self.slots[i].dir.path())
            .unwrap()
            .is_some()
        {
            println!("node {i} had left the ring: it is not restarted (retired)");
            self.slots[i].retired = true;
            return;
        }
        // A new process at the address: the old one's handlers (and what they hold) go.
        let slot = &self.slots[i];
        drop(self.world.node(slot.addr, slot.id));
        if let Some((service, hints)) = self.slots[i].closing.take() {
            wait_for(
                "the crashed process to close its files",
                Instant::now(),
                || service.strong_count() == 0 && hints.strong_count() == 0,
            )
            .await;
        }
        self.open(i);
    }

    pub fn node(&self, i: usize) -> &Running {
        self.slots[i].running.as_ref().expect("a running node")
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &Running)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.running.as_ref().map(|r| (i, r)))
    }

    pub fn index_of(&self, id: NodeId) -> usize {
        self.slots.iter().position(|s| s.id == id).unwrap()
    }

    /// Waits until every running node's view has every node, the running ones alive and
    /// the crashed and retired ones down, on one ring of the members (no ring change
    /// under way).
    pub async fn settle(&self) {
        let n = self.slots.len();
        let up: BTreeSet<NodeId> = self.running().map(|(i, _)| self.slots[i].id).collect();
        let members: BTreeSet<NodeId> = self.members().map(|i| self.slots[i].id).collect();
        let agreed = || {
            let views: Vec<_> = self
                .running()
                .filter_map(|(_, r)| r.handle.view())
                .collect();
            views.len() == up.len()
                && views.iter().all(|v| {
                    v.nodes.len() == n
                        && v.future_ring().is_none()
                        && v.ring().nodes().keys().copied().collect::<BTreeSet<_>>() == members
                        && v.ring() == views[0].ring()
                        && v.nodes
                            .values()
                            .all(|node| node.alive == up.contains(&node.id))
                })
        };
        let start = Instant::now();
        while !agreed() {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for every running node to agree on who is up:\n{}",
                self.describe_views()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The key's home replicas, in preference order.
    pub fn homes(&self, key: &[u8]) -> Vec<usize> {
        let (_, r) = self.running().next().unwrap();
        let ring = r.handle.view().unwrap().ring();
        ring.preference_list(
            &Partitioner::Murmur3.token(key),
            &ReplicationStrategy::simple(RF),
        )
        .into_iter()
        .map(|id| self.index_of(id))
        .collect()
    }

    /// Hints still pending on every running node, plus the shipments of writes still
    /// under way (each may yet leave a hint): zero once every write is where it goes.
    pub fn pending_hints(&self) -> u64 {
        self.running()
            .map(|(_, r)| {
                r.hints.owners().iter().map(|(_, p)| p.count).sum::<u64>()
                    + r.coordinator.stats().shipments_in_flight
            })
            .sum()
    }

    /// What node `i`'s own replica holds for `key` (no coordination).
    pub fn stored(&self, i: usize, key: &[u8]) -> Vec<Cell> {
        match self
            .node(i)
            .service
            .handle(get(key, Some(Consistency::ONE)))
        {
            Response::Row { cells, .. } => cells,
            other => panic!("local read on node {i}: {other:?}"),
        }
    }

    /// Stops every node and waits until each has closed its engine and hint store
    /// (nothing keeps a stopped node alive: no reference cycle through the network).
    pub async fn shutdown(mut self) {
        let mut closing = Vec::new();
        for i in 0..self.slots.len() {
            if let Some(mut r) = self.slots[i].running.take() {
                let _ = r.stop.send(true);
                r.runtime.shutdown().await;
                r.delivery.join().await;
                r.saver.await.unwrap();
                r.streams.join().await;
                if let Some(b) = r.bootstrap.take() {
                    b.await.unwrap();
                }
                closing.push((Arc::downgrade(&r.service), Arc::downgrade(&r.hints)));
            }
            closing.extend(self.slots[i].closing.take());
        }
        self.world.shutdown().await;
        wait_for(
            "every stopped node to close its files",
            Instant::now(),
            || {
                closing
                    .iter()
                    .all(|(s, h)| s.strong_count() == 0 && h.strong_count() == 0)
            },
        )
        .await;
    }
}

pub async fn wait_for(what: &str, start: Instant, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn insert(key: &[u8], column: &str, value: &str, context: Bytes, c: Consistency) -> Request {
    Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: TABLE.into(),
            key: Bytes::copy_from_slice(key),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::copy_from_slice(column.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                context,
            }],
        },
        consistency: Some(c),
    }
}

pub fn get(key: &[u8], c: Option<Consistency>) -> Request {
    Request::Get {
        table: TABLE.into(),
        key: Bytes::copy_from_slice(key),
        selector: Selector::All,
        consistency: c,
    }
}

pub fn written(r: Response) -> ResponseMeta {
    match r {
        Response::Written { meta } => meta,
        other => panic!("expected WRITTEN, got {other:?}"),
    }
}

pub fn row(r: Response) -> (Vec<Cell>, ResponseMeta) {
    match r {
        Response::Row { cells, meta, .. } => (cells, meta),
        other => panic!("expected ROW, got {other:?}"),
    }
}

/// The live values of column `name` in `cells`, sorted.
pub fn values(cells: &[Cell], name: &str) -> Vec<String> {
    let mut v: Vec<String> = cells
        .iter()
        .filter(|c| c.name.as_ref() == name.as_bytes())
        .flat_map(|c| c.values())
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

/// The columns with a live value in `cells`.
pub fn columns(cells: &[Cell]) -> BTreeSet<String> {
    cells
        .iter()
        .filter(|c| c.values().next().is_some())
        .map(|c| String::from_utf8(c.name.to_vec()).unwrap())
        .collect()
}

pub fn quiet() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(2),
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::from_millis(5),
    }
}

pub const FAST_DELIVERY: Delivery = Delivery {
    interval: Duration::from_millis(200),
};

/// The network the randomised workloads run under: some loss, duplication and reordering.
pub fn lossy() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(6),
        loss: 0.02,
        duplicate: 0.02,
        reorder: 0.02,
        reorder_delay: Duration::from_millis(20),
    }
}

/// A column delete of `key` with the context a read returned.
pub fn delete_with_context(key: &[u8], column: &str, context: Bytes, c: Consistency) -> Request {
    Request::Delete {
        delete: sibyl_protocol::RowDelete {
            table: TABLE.into(),
            key: Bytes::copy_from_slice(key),
            timestamp_micros: None,
            write_id: None,
            target: sibyl_protocol::DeleteTarget::Columns(vec![sibyl_protocol::CellContext {
                name: Bytes::copy_from_slice(column.as_bytes()),
                context,
            }]),
        },
        consistency: Some(c),
    }
}

impl Sim {
    /// One round of the randomised nemesis, drawn from `rng`: crash a node (at most two
    /// down at once, so every key keeps a home replica), restart one, partition the
    /// cluster at random, heal, skew a clock by up to ±5 s, or nothing; prints what it
    /// did. Returns whether it injected a fault.
    pub async fn random_fault(&mut self, rng: &mut StdRng, round: usize) -> bool {
        let nodes = self.slots.len();
        let down: Vec<usize> = self
            .members()
            .filter(|i| self.slots[*i].running.is_none())
            .collect();
        match rng.gen_range(0..6) {
            0 if down.len() < 2 => {
                let victim = rng.gen_range(0..nodes);
                if self.slots[victim].running.is_some() {
                    println!("round {round}: crash node {victim}");
                    self.crash(victim).await;
                    return true;
                }
                false
            }
            1 if !down.is_empty() => {
                let back = down[rng.gen_range(0..down.len())];
                println!("round {round}: restart node {back}");
                self.restart(back).await;
                true
            }
            2 => {
                let (mut side, mut rest): (Vec<SocketAddr>, Vec<SocketAddr>) = (vec![], vec![]);
                for s in &self.slots {
                    if rng.gen_bool(0.4) {
                        side.push(s.addr);
                    } else {
                        rest.push(s.addr);
                    }
                }
                println!("round {round}: partition {side:?} | {rest:?}");
                self.world.partition(&[side, rest]);
                true
            }
            3 => {
                println!("round {round}: heal");
                self.world.heal();
                false
            }
            4 => {
                let i = rng.gen_range(0..nodes);
                let skew = rng.gen_range(-5_000_000i64..5_000_000);
                println!("round {round}: skew node {i} by {skew} us");
                self.world.set_skew(self.slots[i].addr, skew);
                true
            }
            _ => false,
        }
    }

    /// Ends every fault: no cuts, no skew, a clean network, every member running; lets
    /// the ring changes under way complete (retiring the nodes that left); then waits
    /// until the views agree and every hint is delivered.
    pub async fn heal_everything(&mut self) {
        self.world.heal();
        self.world.set_config(quiet());
        for i in 0..self.slots.len() {
            self.world.set_skew(self.slots[i].addr, 0);
            if self.slots[i].running.is_none() && !self.slots[i].retired {
                self.restart(i).await;
            }
        }
        self.finish_ring_changes().await;
        self.settle().await;
        let healed = Instant::now();
        wait_for("every hint delivered", healed, || self.pending_hints() == 0).await;
        println!("hints drained {:?} after the heal", healed.elapsed());
    }
}

/// `request` (an INSERT or DELETE) carrying the write id `id`.
pub fn with_write_id(request: Request, id: u128) -> Request {
    match request {
        Request::Insert {
            mut insert,
            consistency,
        } => {
            insert.write_id = Some(sibyl_protocol::WriteId(id));
            Request::Insert {
                insert,
                consistency,
            }
        }
        Request::Delete {
            mut delete,
            consistency,
        } => {
            delete.write_id = Some(sibyl_protocol::WriteId(id));
            Request::Delete {
                delete,
                consistency,
            }
        }
        other => other,
    }
}
