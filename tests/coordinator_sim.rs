//! Replicated requests through whole nodes under the simulated network: each node is a
//! real `Service` (its engine in a temp dir), its hint store, its `Coordinator`, its
//! replica and hints handlers, hint delivery and gossip, all on one `SimNetwork`, in one
//! process on a paused tokio clock. Clients are the test calling `Coordinator::answer` on
//! the node it picks, as a client connection would. A crash cuts the node off the
//! network and closes everything it had open; a restart reopens its engine and hint
//! store from its directory, as a new process would.
//!
//! The scenarios are the replication issue's: a write through a stand-in and its hint
//! delivered on return; strict quorums refusing with nothing written; concurrent
//! writers' siblings and the write that resolves them; a stale replica repaired by a
//! read; and randomised set workloads under partitions, crashes, loss and clock skew.
//!
//! The seed is printed; `SIBYL_SIM_SEED=<seed> cargo test --test coordinator_sim`
//! replays it (`SIBYL_SIM_SEEDS=<n>` runs more seeds of the randomised workload).
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sibyl::cluster::simulation::sim_addr;
use sibyl::cluster::{
    ClusterHandle, ClusterRuntime, GossipConfig, Gossiper, LocalNode, NodeStatus, TokenPlan,
};
use sibyl::coordinator::{Coordinator, CoordinatorOptions};
use sibyl::hints::{DeliveryOptions, HintDelivery, HintLimits, HintStore, HintsHandler};
use sibyl::identity::{keep_saved, SavedPeers};
use sibyl::net::{Family, PeerNetwork, SimConfig, SimNetwork};
use sibyl::replica::keys::RowPrefix;
use sibyl::replica::{ReplicaExecution, ReplicaHandler, ReplicaHost};
use sibyl::ring::{NodeId, NodeLocation, Partitioner, ReplicationStrategy, Token, TokenAllocation};
use sibyl::service::{Service, ServiceOptions};
use sibyl::versioning::{decode_causal_cell, Actor, ActorEpoch};
use sibyl_protocol::{
    Cell, ColumnWrite, ConflictMode, Consistency, ErrorKind, Request, Response, ResponseMeta,
    RowInsert, Selector, TableOptions, WriteId,
};
use tokio::sync::watch;
use tokio::time::Instant;

const RF: usize = 3;
const TABLE: &str = "sets";
/// Bound on every wait of a run (virtual time).
const DEADLINE: Duration = Duration::from_secs(600);

fn seed() -> u64 {
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

#[path = "common/inline_schema.rs"]
mod inline_schema;
use inline_schema::InlineSchema;
use sibyl::cluster::SchemaSource;

/// What a running node has open.
struct Running {
    service: Arc<Service>,
    handle: Arc<ClusterHandle>,
    runtime: ClusterRuntime,
    coordinator: Arc<Coordinator>,
    hints: Arc<HintStore>,
    delivery: HintDelivery,
    saver: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// One node's place in the cluster: its directory outlives its processes.
struct Slot {
    dir: tempfile::TempDir,
    id: NodeId,
    addr: SocketAddr,
    generation: u64,
    tokens: Option<Vec<Token>>,
    running: Option<Running>,
    /// What a crashed process still holds until its last task ends.
    closing: Option<(Weak<Service>, Weak<HintStore>)>,
}

/// How hint delivery runs in a scenario.
#[derive(Clone, Copy)]
struct Delivery {
    interval: Duration,
}

struct Sim {
    world: SimNetwork,
    slots: Vec<Slot>,
    delivery: Delivery,
}

impl Sim {
    /// `n` nodes joined one by one into one ring, with the `sets` table (rf 3, causal).
    async fn start(n: usize, seed: u64, config: SimConfig, delivery: Delivery) -> Sim {
        let world = SimNetwork::new(config, seed);
        let mut sim = Sim {
            world,
            slots: Vec::new(),
            delivery,
        };
        for i in 0..n {
            sim.slots.push(Slot {
                dir: tempfile::tempdir().unwrap(),
                id: NodeId(seed.rotate_left(7 * i as u32) ^ (i as u64 + 1)),
                addr: sim_addr(i),
                generation: 0,
                tokens: None,
                running: None,
                closing: None,
            });
            ActorEpoch::create(sim.slots[i].dir.path(), Actor::new(sim.slots[i].id.0, 1)).unwrap();
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

    /// Opens node `i`'s process from its directory (its first start or a restart).
    fn open(&mut self, i: usize) {
        let delivery = self.delivery;
        let slot = &mut self.slots[i];
        assert!(slot.running.is_none(), "node {i} is already running");
        slot.generation += 1;
        let clock = Arc::new(self.world.clock(slot.addr));
        let net = Arc::new(self.world.node(slot.addr, slot.id));
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
        let mut gossip = GossipConfig::new("sim", vec![sim_addr(0)]);
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
        let plan = match &slot.tokens {
            Some(tokens) => TokenPlan::Existing(tokens.clone()),
            None => TokenPlan::Allocate {
                count: 8,
                allocation: TokenAllocation::Balanced,
            },
        };
        let mut gossiper = Gossiper::new(gossip, local, slot.id.0 ^ slot.generation, 0);
        if slot.tokens.is_some() {
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
            Box::new(|_| {}),
        )
        .unwrap();
        let (stop, stopped) = watch::channel(false);
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
            handle,
            runtime,
            coordinator,
            hints,
            delivery,
            saver,
            stop,
        });
    }

    /// Kills node `i` (kill -9): off the network, its tasks stopped, its files closed
    /// once the last request it was serving ends.
    async fn crash(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        self.world.crash(slot.addr);
        let mut r = slot.running.take().expect("crash a running node");
        let _ = r.stop.send(true);
        r.runtime.shutdown().await;
        r.delivery.join().await;
        r.saver.await.unwrap();
        slot.closing = Some((Arc::downgrade(&r.service), Arc::downgrade(&r.hints)));
    }

    /// Restarts crashed node `i` from its directory.
    async fn restart(&mut self, i: usize) {
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

    fn node(&self, i: usize) -> &Running {
        self.slots[i].running.as_ref().expect("a running node")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Running)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.running.as_ref().map(|r| (i, r)))
    }

    fn index_of(&self, id: NodeId) -> usize {
        self.slots.iter().position(|s| s.id == id).unwrap()
    }

    /// Waits until every running node's view has every node, the running ones alive and
    /// the crashed ones down, on one ring.
    async fn settle(&self) {
        let n = self.slots.len();
        let up: BTreeSet<NodeId> = self.running().map(|(i, _)| self.slots[i].id).collect();
        wait_for(
            "every running node to agree on who is up",
            Instant::now(),
            || {
                let views: Vec<_> = self
                    .running()
                    .filter_map(|(_, r)| r.handle.view())
                    .collect();
                views.len() == up.len()
                    && views.iter().all(|v| {
                        v.nodes.len() == n
                            && v.ring().nodes().len() == n
                            && v.ring() == views[0].ring()
                            && v.nodes
                                .values()
                                .all(|node| node.alive == up.contains(&node.id))
                    })
            },
        )
        .await;
    }

    /// The key's home replicas, in preference order.
    fn homes(&self, key: &[u8]) -> Vec<usize> {
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
    fn pending_hints(&self) -> u64 {
        self.running()
            .map(|(_, r)| {
                r.hints.owners().iter().map(|(_, p)| p.count).sum::<u64>()
                    + r.coordinator.stats().shipments_in_flight
            })
            .sum()
    }

    /// What node `i`'s own replica holds for `key` (no coordination).
    fn stored(&self, i: usize, key: &[u8]) -> Vec<Cell> {
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
    async fn shutdown(mut self) {
        let mut closing = Vec::new();
        for i in 0..self.slots.len() {
            if let Some(mut r) = self.slots[i].running.take() {
                let _ = r.stop.send(true);
                r.runtime.shutdown().await;
                r.delivery.join().await;
                r.saver.await.unwrap();
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

async fn wait_for(what: &str, start: Instant, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn insert(key: &[u8], column: &str, value: &str, context: Bytes, c: Consistency) -> Request {
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

fn get(key: &[u8], c: Option<Consistency>) -> Request {
    Request::Get {
        table: TABLE.into(),
        key: Bytes::copy_from_slice(key),
        selector: Selector::All,
        consistency: c,
    }
}

fn written(r: Response) -> ResponseMeta {
    match r {
        Response::Written { meta } => meta,
        other => panic!("expected WRITTEN, got {other:?}"),
    }
}

fn row(r: Response) -> (Vec<Cell>, ResponseMeta) {
    match r {
        Response::Row { cells, meta, .. } => (cells, meta),
        other => panic!("expected ROW, got {other:?}"),
    }
}

/// The live values of column `name` in `cells`, sorted.
fn values(cells: &[Cell], name: &str) -> Vec<String> {
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
fn columns(cells: &[Cell]) -> BTreeSet<String> {
    cells
        .iter()
        .filter(|c| c.values().next().is_some())
        .map(|c| String::from_utf8(c.name.to_vec()).unwrap())
        .collect()
}

fn quiet() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(2),
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::from_millis(5),
    }
}

const FAST_DELIVERY: Delivery = Delivery {
    interval: Duration::from_millis(200),
};

#[tokio::test(start_paused = true)]
async fn coordinator_sim_a_down_replica_is_stood_in_for_and_gets_its_hint_on_return() {
    let seed = seed();
    let mut sim = Sim::start(5, seed, quiet(), FAST_DELIVERY).await;
    let key = b"cart-1".as_slice();
    let homes = sim.homes(key);
    let down = homes[2];
    sim.crash(down).await;
    sim.settle().await;

    // N=3, W=2 with one home down: the coordinator and the other home acknowledge; at
    // ALL the stand-in's hint counts too (sloppy).
    let coordinator = sim.node(homes[0]).coordinator.clone();
    let meta = written(
        coordinator
            .answer(insert(key, "a", "1", Bytes::new(), Consistency::QUORUM))
            .await,
    );
    assert!(meta.replicas.len() >= 2, "{meta:?}");
    let meta = written(
        coordinator
            .answer(insert(key, "b", "2", Bytes::new(), Consistency::ALL))
            .await,
    );
    assert_eq!(meta.replicas.len(), 3, "{meta:?}");
    assert_eq!(meta.stand_ins.len(), 1, "{meta:?}");
    let stand_in = sim
        .slots
        .iter()
        .position(|s| s.id.to_string() == meta.stand_ins[0])
        .unwrap();
    assert!(
        !homes.contains(&stand_in),
        "a stand-in is not a home replica"
    );
    let owner = sim.slots[down].id;
    assert!(
        sim.node(stand_in).hints.pending(owner).count >= 1,
        "the stand-in holds a hint for the down replica"
    );
    // A write through a node that is no replica is forwarded, and counts the same way.
    let outsider = (0..5)
        .find(|i| !homes.contains(i) && *i != stand_in)
        .unwrap();
    written(
        sim.node(outsider)
            .coordinator
            .answer(insert(key, "c", "3", Bytes::new(), Consistency::QUORUM))
            .await,
    );

    drop(coordinator);
    let start = Instant::now();
    sim.restart(down).await;
    sim.settle().await;
    wait_for("every hint delivered", start, || sim.pending_hints() == 0).await;
    println!("hints delivered {:?} after the restart", start.elapsed());

    let want: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    for h in &homes {
        assert_eq!(columns(&sim.stored(*h, key)), want, "home replica {h}");
    }
    assert!(
        sim.stored(stand_in, key).is_empty(),
        "a delivered hint leaves no copy on the stand-in"
    );
    for (i, _) in sim.running() {
        let (cells, meta) = row(sim
            .node(i)
            .coordinator
            .answer(get(key, Some(Consistency::TWO)))
            .await);
        assert_eq!(columns(&cells), want, "R=2 through node {i}");
        assert!(meta.replicas.len() >= 2, "{meta:?}");
    }
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn coordinator_sim_strict_quorum_with_two_homes_down_is_unavailable_and_writes_nothing() {
    let seed = seed();
    let mut sim = Sim::start(5, seed, quiet(), FAST_DELIVERY).await;
    let key = b"cart-2".as_slice();
    let homes = sim.homes(key);
    sim.crash(homes[1]).await;
    sim.crash(homes[2]).await;
    sim.settle().await;

    for (i, _) in sim.running().collect::<Vec<_>>() {
        let r = sim
            .node(i)
            .coordinator
            .answer(insert(
                key,
                "x",
                "1",
                Bytes::new(),
                Consistency::QUORUM.strict(),
            ))
            .await;
        match r {
            Response::Error(e) => assert!(
                matches!(
                    e.kind,
                    ErrorKind::Unavailable {
                        required: 2,
                        alive: 1
                    }
                ),
                "through node {i}: {e:?}"
            ),
            other => panic!("through node {i}: {other:?}"),
        }
    }
    // Nothing anywhere: no replica holds the cell and no node holds a hint.
    for (i, _) in sim.running() {
        assert!(sim.stored(i, key).is_empty(), "node {i} stored nothing");
    }
    assert_eq!(sim.pending_hints(), 0, "no hint was stored");
    // Sloppy, the same write goes through (the stand-ins count) ...
    written(
        sim.node(homes[0])
            .coordinator
            .answer(insert(key, "y", "2", Bytes::new(), Consistency::QUORUM))
            .await,
    );
    // ... and, after the homes return, it is everywhere and the refused one nowhere.
    sim.restart(homes[1]).await;
    sim.restart(homes[2]).await;
    sim.settle().await;
    wait_for("every hint delivered", Instant::now(), || {
        sim.pending_hints() == 0
    })
    .await;
    for h in &homes {
        let cols = columns(&sim.stored(*h, key));
        assert_eq!(cols, BTreeSet::from(["y".to_string()]), "home {h}");
    }
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn coordinator_sim_concurrent_writers_make_siblings_everywhere_and_a_merged_context_resolves_them(
) {
    let seed = seed();
    let sim = Sim::start(5, seed, quiet(), FAST_DELIVERY).await;
    let key = b"profile-7".as_slice();
    let homes = sim.homes(key);

    // Two clients write the same cell with empty contexts through two home replicas: each
    // mints at its own replica, neither saw the other.
    let (a, b) = (
        sim.node(homes[0]).coordinator.clone(),
        sim.node(homes[1]).coordinator.clone(),
    );
    let (ra, rb) = tokio::join!(
        a.answer(insert(key, "name", "ada", Bytes::new(), Consistency::ALL)),
        b.answer(insert(key, "name", "grace", Bytes::new(), Consistency::ALL)),
    );
    written(ra);
    written(rb);
    drop((a, b));
    let both = vec!["ada".to_string(), "grace".to_string()];
    for h in &homes {
        assert_eq!(
            values(&sim.stored(*h, key), "name"),
            both,
            "siblings on home {h}"
        );
    }
    let outsider = (0..5).find(|i| !homes.contains(i)).unwrap();
    let (cells, _) = row(sim
        .node(outsider)
        .coordinator
        .answer(get(key, Some(Consistency::QUORUM)))
        .await);
    assert_eq!(values(&cells, "name"), both, "a read returns both siblings");
    let context = cells[0].context.clone();
    assert!(!context.is_empty());

    // A write with the read's context supersedes both, on every replica.
    written(
        sim.node(outsider)
            .coordinator
            .answer(insert(
                key,
                "name",
                "ada lovelace",
                context,
                Consistency::ALL,
            ))
            .await,
    );
    for h in &homes {
        assert_eq!(
            values(&sim.stored(*h, key), "name"),
            vec!["ada lovelace".to_string()],
            "resolved on home {h}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn coordinator_sim_a_stale_replica_is_repaired_by_a_read_then_answers_alone() {
    let seed = seed();
    // Hints wait an hour: only the read can bring the replica up to date.
    let slow = Delivery {
        interval: Duration::from_secs(3600),
    };
    let mut sim = Sim::start(5, seed, quiet(), slow).await;
    let key = b"order-3".as_slice();
    let homes = sim.homes(key);
    sim.crash(homes[2]).await;
    sim.settle().await;
    written(
        sim.node(homes[0])
            .coordinator
            .answer(insert(
                key,
                "status",
                "paid",
                Bytes::new(),
                Consistency::QUORUM,
            ))
            .await,
    );
    sim.restart(homes[2]).await;
    sim.settle().await;
    assert!(
        sim.stored(homes[2], key).is_empty(),
        "the returning replica missed the write"
    );

    let (cells, meta) = row(sim
        .node(homes[0])
        .coordinator
        .answer(get(key, Some(Consistency::ALL.blocking_read_repair())))
        .await);
    assert_eq!(values(&cells, "status"), vec!["paid".to_string()]);
    assert!(meta.read_repair, "{meta:?}");
    assert_eq!(
        values(&sim.stored(homes[2], key), "status"),
        vec!["paid".to_string()]
    );
    let (cells, _) = row(sim
        .node(homes[2])
        .coordinator
        .answer(get(key, Some(Consistency::ONE)))
        .await);
    assert_eq!(
        values(&cells, "status"),
        vec!["paid".to_string()],
        "alone at ONE"
    );
    sim.shutdown().await;
}

/// What became of the writes of the randomised workload, per key.
#[derive(Default)]
struct Ledger {
    /// Acknowledged: must be on every replica at the end.
    acked: BTreeSet<String>,
    /// Timed out or failed in flight: may or may not be there.
    unknown: BTreeSet<String>,
    /// Refused as unavailable: must be nowhere.
    refused: BTreeSet<String>,
}

struct SetRun {
    acked: usize,
    unknown: usize,
    refused: usize,
    faults: usize,
}

/// Clients add unique elements (columns) to a few set keys through random nodes while a
/// nemesis partitions, crashes, restarts and skews nodes and the network loses and
/// duplicates messages; after healing, every acknowledged element is on every replica,
/// no refused element is anywhere, and nothing appears that was never written.
async fn set_workload(seed: u64) -> SetRun {
    const NODES: usize = 5;
    const KEYS: usize = 3;
    const ROUNDS: usize = 24;
    const CLIENTS: usize = 4;
    let lossy = SimConfig {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(6),
        loss: 0.02,
        duplicate: 0.02,
        reorder: 0.02,
        reorder_delay: Duration::from_millis(20),
    };
    let mut sim = Sim::start(NODES, seed, quiet(), FAST_DELIVERY).await;
    sim.world.set_config(lossy);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00c0_ffee);
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|k| format!("set-{k}").into_bytes()).collect();
    let mut ledger: BTreeMap<usize, Ledger> = (0..KEYS).map(|k| (k, Ledger::default())).collect();
    let mut next = 0usize;
    let mut faults = 0usize;
    for round in 0..ROUNDS {
        // The nemesis: at most two nodes down at once, so every key keeps a home.
        let down: Vec<usize> = (0..NODES)
            .filter(|i| sim.slots[*i].running.is_none())
            .collect();
        match rng.gen_range(0..6) {
            0 if down.len() < 2 => {
                let victim = rng.gen_range(0..NODES);
                if sim.slots[victim].running.is_some() {
                    println!("round {round}: crash node {victim}");
                    sim.crash(victim).await;
                    faults += 1;
                }
            }
            1 if !down.is_empty() => {
                let back = down[rng.gen_range(0..down.len())];
                println!("round {round}: restart node {back}");
                sim.restart(back).await;
                faults += 1;
            }
            2 => {
                let mut side: Vec<SocketAddr> = Vec::new();
                let mut rest: Vec<SocketAddr> = Vec::new();
                for s in &sim.slots {
                    if rng.gen_bool(0.4) {
                        side.push(s.addr);
                    } else {
                        rest.push(s.addr);
                    }
                }
                println!("round {round}: partition {side:?} | {rest:?}");
                sim.world.partition(&[side, rest]);
                faults += 1;
            }
            3 => {
                println!("round {round}: heal");
                sim.world.heal();
            }
            4 => {
                let i = rng.gen_range(0..NODES);
                let skew = rng.gen_range(-5_000_000i64..5_000_000);
                println!("round {round}: skew node {i} by {skew} us");
                sim.world.set_skew(sim.slots[i].addr, skew);
                faults += 1;
            }
            _ => {}
        }
        // Let the failure detector see it (or not: some writes race it).
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..3000))).await;
        let mut calls = Vec::new();
        for _ in 0..CLIENTS {
            let running: Vec<usize> = sim.running().map(|(i, _)| i).collect();
            let via = running[rng.gen_range(0..running.len())];
            let k = rng.gen_range(0..KEYS);
            let element = format!("e{next}");
            next += 1;
            let c = match rng.gen_range(0..4) {
                0 => Consistency::ONE,
                1 => Consistency::QUORUM.strict(),
                _ => Consistency::QUORUM,
            };
            let request = insert(&keys[k], &element, &element, Bytes::new(), c);
            let coordinator = sim.node(via).coordinator.clone();
            calls.push(tokio::spawn(async move {
                let r = coordinator.answer(request).await;
                println!("  {element} -> key {k} via node {via} at {c:?}: {r:?}");
                (k, element, r)
            }));
        }
        for call in calls {
            let (k, element, r) = call.await.unwrap();
            let l = ledger.get_mut(&k).unwrap();
            match r {
                Response::Written { .. } => l.acked.insert(element),
                Response::Error(e) if matches!(e.kind, ErrorKind::Unavailable { .. }) => {
                    l.refused.insert(element)
                }
                Response::Error(_) => l.unknown.insert(element),
                other => panic!("unexpected answer {other:?}"),
            };
        }
    }

    // Heal: everyone back, no cuts, no skew, a clean network; hints drain.
    sim.world.heal();
    sim.world.set_config(quiet());
    for i in 0..NODES {
        sim.world.set_skew(sim.slots[i].addr, 0);
        if sim.slots[i].running.is_none() {
            sim.restart(i).await;
        }
    }
    sim.settle().await;
    let healed = Instant::now();
    wait_for("every hint delivered", healed, || sim.pending_hints() == 0).await;
    println!("hints drained {:?} after the heal", healed.elapsed());

    for (k, l) in &ledger {
        for h in sim.homes(&keys[*k]) {
            let have = columns(&sim.stored(h, &keys[*k]));
            let lost: Vec<_> = l.acked.difference(&have).collect();
            assert!(
                lost.is_empty(),
                "seed {seed}: key {k} home {h} lost acknowledged {lost:?}"
            );
            for c in &have {
                assert!(
                    l.acked.contains(c) || l.unknown.contains(c),
                    "seed {seed}: key {k} home {h} holds {c}, which was {}",
                    if l.refused.contains(c) {
                        "refused as unavailable"
                    } else {
                        "never written"
                    }
                );
            }
        }
    }
    // Reads through every node see every acknowledged element.
    for (k, l) in &ledger {
        for i in 0..NODES {
            let r = sim
                .node(i)
                .coordinator
                .answer(get(&keys[*k], Some(Consistency::QUORUM)))
                .await;
            let have = columns(&row(r).0);
            assert!(
                l.acked.is_subset(&have),
                "seed {seed}: a QUORUM read of key {k} through node {i} misses {:?}",
                l.acked.difference(&have).collect::<Vec<_>>()
            );
        }
    }
    let run = SetRun {
        acked: ledger.values().map(|l| l.acked.len()).sum(),
        unknown: ledger.values().map(|l| l.unknown.len()).sum(),
        refused: ledger.values().map(|l| l.refused.len()).sum(),
        faults,
    };
    sim.shutdown().await;
    run
}

#[tokio::test(start_paused = true)]
async fn coordinator_sim_randomised_sets_keep_every_acknowledged_element_under_faults() {
    let first = seed();
    let seeds: u64 = std::env::var("SIBYL_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let mut totals = (0, 0, 0, 0);
    for s in first..first + seeds {
        println!("set workload, seed {s} (SIBYL_SIM_SEED={s} SIBYL_SIM_SEEDS=1 replays it)");
        let run = set_workload(s).await;
        println!(
            "  acknowledged {}, unknown {}, refused {}, faults {}",
            run.acked, run.unknown, run.refused, run.faults
        );
        totals.0 += run.acked;
        totals.1 += run.unknown;
        totals.2 += run.refused;
        totals.3 += run.faults;
    }
    println!(
        "{seeds} seeds: {} acknowledged, {} unknown, {} refused, {} faults; 0 lost",
        totals.0, totals.1, totals.2, totals.3
    );
    assert!(totals.0 > 0, "some writes were acknowledged");
    assert!(totals.3 > 0, "the nemesis injected faults");
}

/// The versions stored for column `name` of `key` on node `i` (every dot, duplicates of
/// one write id included), as (write id, value).
fn stored_versions(sim: &Sim, i: usize, key: &[u8], name: &str) -> Vec<(Option<u128>, String)> {
    let engine_key = RowPrefix::new(Partitioner::Murmur3, key).cell_key(name.as_bytes());
    let Some(raw) = sim
        .node(i)
        .service
        .replica()
        .read_raw(TABLE, &engine_key)
        .unwrap()
    else {
        return Vec::new();
    };
    decode_causal_cell(&raw)
        .unwrap()
        .values()
        .into_iter()
        .map(|s| {
            let v = s.value.as_deref().map(String::from_utf8_lossy);
            (s.write_id, v.unwrap_or_default().into_owned())
        })
        .collect()
}

fn with_write_id(request: Request, id: u128) -> Request {
    match request {
        Request::Insert {
            mut insert,
            consistency,
        } => {
            insert.write_id = Some(WriteId(id));
            Request::Insert {
                insert,
                consistency,
            }
        }
        other => other,
    }
}

/// Safe retries: a write through a coordinator cut off from its peers times out after
/// the coordinator minted it; the coordinator is killed (its hints survive on disk); the
/// client retries the same write, with the same write id, through another replica. When
/// the first coordinator returns and its hints land, every replica holds both versions
/// (two coordinators minted them), but they are one write: every read shows one value,
/// and a retry through a coordinator that holds the write mints nothing. The same
/// history without a write id leaves two siblings of the value (the control).
#[tokio::test(start_paused = true)]
async fn coordinator_sim_a_write_retried_through_another_coordinator_after_a_crash_is_one_version()
{
    let seed = seed();
    let mut sim = Sim::start(5, seed, quiet(), FAST_DELIVERY).await;
    let with_id = b"cart-retried".as_slice();
    let control = b"cart-control".as_slice();
    // Both keys need the same first home (the coordinator to kill): find a control key.
    let homes = sim.homes(with_id);
    let control = (0..)
        .map(|n| format!("{}-{n}", String::from_utf8_lossy(control)).into_bytes())
        .find(|k| sim.homes(k)[0] == homes[0] && sim.homes(k)[1] == homes[1])
        .unwrap();
    let (first, second) = (homes[0], homes[1]);
    let write = |key: &[u8]| insert(key, "item", "book", Bytes::new(), Consistency::QUORUM);
    let attempt_with_id = with_write_id(write(with_id), 0x1d_2026);

    // The first coordinator is cut off before anyone notices: it mints both writes at its
    // own replica, the shipments never arrive, and the client sees WRITE_TIMEOUT.
    let cut_off: Vec<SocketAddr> = sim.slots.iter().map(|s| s.addr).collect();
    sim.world.partition(&[
        vec![sim.slots[first].addr],
        cut_off
            .into_iter()
            .filter(|a| *a != sim.slots[first].addr)
            .collect(),
    ]);
    let c = sim.node(first).coordinator.clone();
    for request in [attempt_with_id.clone(), write(&control)] {
        match c.answer(request).await {
            Response::Error(e) => assert!(
                matches!(
                    e.kind,
                    ErrorKind::WriteTimeout {
                        acks: 1,
                        required: 2
                    }
                ),
                "{e:?}"
            ),
            other => panic!("a cut-off coordinator: {other:?}"),
        }
    }
    drop(c);
    sim.crash(first).await;
    sim.world.heal();
    sim.settle().await;

    // The client retries each write as it was (the same write id) through the next home.
    let c = sim.node(second).coordinator.clone();
    written(c.answer(attempt_with_id.clone()).await);
    written(c.answer(write(&control)).await);
    drop(c);

    sim.restart(first).await;
    sim.settle().await;
    wait_for("every hint delivered", Instant::now(), || {
        sim.pending_hints() == 0
    })
    .await;

    for h in &homes {
        let stored = stored_versions(&sim, *h, with_id, "item");
        assert_eq!(
            stored.len(),
            2,
            "home {h} holds both coordinators' versions: {stored:?}"
        );
        assert!(
            stored.iter().all(|(id, _)| *id == Some(0x1d_2026)),
            "{stored:?}"
        );
        assert_eq!(
            values(&sim.stored(*h, with_id), "item"),
            vec!["book".to_string()]
        );
        assert_eq!(
            values(&sim.stored(*h, &control), "item"),
            vec!["book".to_string(), "book".to_string()],
            "without a write id the retry is a second sibling (home {h})"
        );
    }
    for (i, _) in sim.running() {
        let (cells, _) = row(sim
            .node(i)
            .coordinator
            .answer(get(with_id, Some(Consistency::ALL)))
            .await);
        assert_eq!(
            values(&cells, "item"),
            vec!["book".to_string()],
            "ALL through node {i}"
        );
    }
    // One more retry through the first coordinator, which holds the write: nothing new.
    written(sim.node(first).coordinator.answer(attempt_with_id).await);
    wait_for("every hint delivered", Instant::now(), || {
        sim.pending_hints() == 0
    })
    .await;
    for h in &homes {
        assert_eq!(
            stored_versions(&sim, *h, with_id, "item").len(),
            2,
            "home {h}"
        );
    }
    // A write with the read's context supersedes every copy.
    let (cells, _) = row(sim
        .node(first)
        .coordinator
        .answer(get(with_id, Some(Consistency::ALL)))
        .await);
    written(
        sim.node(first)
            .coordinator
            .answer(insert(
                with_id,
                "item",
                "two books",
                cells[0].context.clone(),
                Consistency::ALL,
            ))
            .await,
    );
    for h in &homes {
        assert_eq!(
            values(&sim.stored(*h, with_id), "item"),
            vec!["two books".to_string()]
        );
    }
    sim.shutdown().await;
}

/// A delete of a retried write whose read saw only the retry's copy: the first attempt's
/// copy, minted by a coordinator that was cut off, reaches the others only after the
/// delete (through its hints and read repair) and must not bring the value back.
#[tokio::test(start_paused = true)]
async fn coordinator_sim_a_delete_of_a_retried_write_removes_the_copy_it_never_saw() {
    let seed = seed();
    let mut sim = Sim::start(5, seed, quiet(), FAST_DELIVERY).await;
    let key = b"cart-deleted".as_slice();
    let homes = sim.homes(key);
    let (first, second) = (homes[0], homes[1]);
    let attempt = with_write_id(
        insert(key, "item", "book", Bytes::new(), Consistency::QUORUM),
        0x5eed_0001,
    );
    // The first coordinator is cut off: it mints copy A and answers WRITE_TIMEOUT.
    let others: Vec<SocketAddr> = sim
        .slots
        .iter()
        .map(|s| s.addr)
        .filter(|a| *a != sim.slots[first].addr)
        .collect();
    sim.world.partition(&[vec![sim.slots[first].addr], others]);
    let c = sim.node(first).coordinator.clone();
    assert!(matches!(
        c.answer(attempt.clone()).await,
        Response::Error(_)
    ));
    drop(c);
    sim.crash(first).await;
    sim.world.heal();
    sim.settle().await;
    // The retry through the second home mints copy B; a read there sees B only, and the
    // client deletes what it read.
    let c = sim.node(second).coordinator.clone();
    written(c.answer(attempt).await);
    let (cells, _) = row(c.answer(get(key, Some(Consistency::QUORUM))).await);
    assert_eq!(values(&cells, "item"), vec!["book".to_string()]);
    let delete = Request::Delete {
        delete: sibyl_protocol::RowDelete {
            table: TABLE.into(),
            key: Bytes::copy_from_slice(key),
            timestamp_micros: None,
            write_id: None,
            target: sibyl_protocol::DeleteTarget::Columns(vec![sibyl_protocol::CellContext {
                name: Bytes::from_static(b"item"),
                context: cells[0].context.clone(),
            }]),
        },
        consistency: Some(Consistency::QUORUM),
    };
    written(c.answer(delete).await);
    drop(c);
    // Copy A comes back with its coordinator, and travels on as hints and read repair.
    sim.restart(first).await;
    sim.settle().await;
    wait_for("every hint delivered", Instant::now(), || {
        sim.pending_hints() == 0
    })
    .await;
    for (i, _) in sim.running() {
        let (cells, _) = row(sim
            .node(i)
            .coordinator
            .answer(get(key, Some(Consistency::ALL.blocking_read_repair())))
            .await);
        assert!(
            values(&cells, "item").is_empty(),
            "the deleted value is back through node {i}: {cells:?} (seed {seed})"
        );
    }
    for h in &homes {
        assert!(
            values(&sim.stored(*h, key), "item").is_empty(),
            "home {h} holds the deleted value again (seed {seed})"
        );
    }
    sim.shutdown().await;
}

/// A delete without a context through a replica that missed the write: the coordinator
/// reads what the other replicas hold first, so the delete removes the value everywhere
/// instead of only what its own (empty) replica held.
#[tokio::test(start_paused = true)]
async fn coordinator_sim_a_blind_delete_through_a_replica_that_missed_the_write_deletes_it() {
    let seed = seed();
    // Hints wait an hour: the returning replica stays without the write.
    let slow = Delivery {
        interval: Duration::from_secs(3600),
    };
    let mut sim = Sim::start(5, seed, quiet(), slow).await;
    let key = b"session-9".as_slice();
    let homes = sim.homes(key);
    sim.crash(homes[2]).await;
    sim.settle().await;
    for column in ["token", "user"] {
        written(
            sim.node(homes[0])
                .coordinator
                .answer(insert(key, column, "x", Bytes::new(), Consistency::QUORUM))
                .await,
        );
    }
    sim.restart(homes[2]).await;
    sim.settle().await;
    assert!(
        sim.stored(homes[2], key).is_empty(),
        "the replica missed the writes"
    );

    let blind = |target| Request::Delete {
        delete: sibyl_protocol::RowDelete {
            table: TABLE.into(),
            key: Bytes::copy_from_slice(key),
            timestamp_micros: None,
            write_id: None,
            target,
        },
        consistency: Some(Consistency::QUORUM),
    };
    let c = sim.node(homes[2]).coordinator.clone();
    written(
        c.answer(blind(sibyl_protocol::DeleteTarget::Columns(vec![
            sibyl_protocol::CellContext {
                name: Bytes::from_static(b"token"),
                context: Bytes::new(),
            },
        ])))
        .await,
    );
    let (cells, _) = row(c.answer(get(key, Some(Consistency::ALL))).await);
    assert_eq!(
        columns(&cells),
        BTreeSet::from(["user".to_string()]),
        "token deleted"
    );
    // A row delete without contexts, through the same replica, covers the rest.
    written(
        c.answer(blind(sibyl_protocol::DeleteTarget::Row {
            contexts: vec![],
        }))
        .await,
    );
    for (i, _) in sim.running() {
        let (cells, _) = row(sim
            .node(i)
            .coordinator
            .answer(get(key, Some(Consistency::ALL)))
            .await);
        assert!(
            columns(&cells).is_empty(),
            "the row is gone through node {i}: {cells:?}"
        );
    }
    drop(c);
    sim.shutdown().await;
}
