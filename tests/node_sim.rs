//! Whole nodes under the simulated network: each node is a real `Service` (storage engine
//! in its own temp dir, schema, replica), its gossip runtime and its replica handler, all
//! on one `SimNetwork` with jitter, loss, duplication and reordering, in one process on a
//! paused tokio clock. Two nodes write the same keys blind (concurrent writes), each ships
//! the cells it minted to the key's three home replicas with `ReplicaRequest::Apply`
//! (retrying what the network loses, so some cells arrive twice and in any order), one
//! replica is cut off one way while that happens and healed after. Every replica must end
//! with the same digest and both siblings, and the whole run (network trace and final
//! digests) must replay exactly for its seed.
//!
//! The seed is printed; `SIBYL_SIM_SEED=<seed> cargo test --test node_sim` replays it.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sibyl::cluster::simulation::sim_addr;
use sibyl::cluster::{
    ClusterHandle, ClusterRuntime, GossipConfig, Gossiper, LocalNode, NodeStatus, TokenPlan,
};
use sibyl::net::{Family, PeerNetwork, SimConfig, SimNetwork, SimNode, SimTraceEvent};
use sibyl::replica::keys::RowPrefix;
use sibyl::replica::{
    RawCell, ReplicaExecution, ReplicaHandler, ReplicaHost, ReplicaRequest, ReplicaResponse,
};
use sibyl::ring::{NodeId, NodeLocation, Partitioner, ReplicationStrategy, TokenAllocation};
use sibyl::service::{Service, ServiceOptions};
use sibyl::versioning::{Actor, ActorEpoch};
use sibyl_protocol::{
    ColumnWrite, ConflictMode, Consistency, Request, Response, RowInsert, Selector, TableOptions,
};

const NODES: usize = 5;
const KEYS: usize = 12;
const RF: usize = 3;
/// How long one replica call may wait before it is retried (virtual time).
const CALL_TIMEOUT: Duration = Duration::from_millis(200);
/// Bound on every wait of the run (virtual time).
const DEADLINE: Duration = Duration::from_secs(300);

fn seed() -> u64 {
    let s = std::env::var("SIBYL_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x51b7_2026);
    println!("seed = {s} (set SIBYL_SIM_SEED to replay)");
    s
}

#[path = "common/inline_schema.rs"]
mod inline_schema;
use inline_schema::InlineSchema;
use sibyl::cluster::SchemaSource;

struct SimulatedNode {
    _dir: tempfile::TempDir,
    id: NodeId,
    addr: SocketAddr,
    service: Arc<Service>,
    handle: Arc<ClusterHandle>,
    runtime: ClusterRuntime,
    net: Arc<SimNode>,
}

fn start_node(world: &SimNetwork, i: usize, seed: u64) -> SimulatedNode {
    let dir = tempfile::tempdir().unwrap();
    let id = NodeId(seed.rotate_left(7 * i as u32) ^ (i as u64 + 1));
    let addr = sim_addr(i);
    ActorEpoch::create(dir.path(), Actor::new(id.0, 1)).unwrap();
    let (handle, inbox) = ClusterHandle::new();
    let service = Arc::new(
        Service::open_in_cluster(
            ServiceOptions {
                memtable_size: 1 << 20,
                node_address: addr.to_string(),
                ..ServiceOptions::new(dir.path().to_path_buf(), Arc::new(world.clock(addr)))
            },
            Some(handle.clone()),
        )
        .unwrap(),
    );
    assert_eq!(service.actor().node, id.0);
    let net = Arc::new(world.node(addr, id));
    net.register(
        Family::Replica,
        Arc::new(ReplicaHandler::new(
            service.clone(),
            ReplicaExecution::Inline,
        )),
    )
    .unwrap();
    let mut gossip = GossipConfig::new("sim", vec![sim_addr(0)]);
    gossip.interval_ms = 200;
    let local = LocalNode {
        id,
        generation: 1,
        peer_address: addr,
        client_address: None,
        location: NodeLocation::default(),
        tokens: Vec::new(),
        status: NodeStatus::Joining,
        schema_version: service.schema_version(),
        load: 0,
    };
    let runtime = ClusterRuntime::start(
        handle.clone(),
        inbox,
        Gossiper::new(gossip, local, id.0, 0),
        net.clone(),
        Arc::new(InlineSchema(service.clone())),
        TokenPlan::Allocate {
            count: 8,
            allocation: TokenAllocation::Balanced,
        },
        Box::new(|_| {}),
    )
    .unwrap();
    SimulatedNode {
        _dir: dir,
        id,
        addr,
        service,
        handle,
        runtime,
        net,
    }
}

async fn wait_for(what: &str, start: tokio::time::Instant, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls `to`'s replica until it answers (the network loses and delays messages; a
/// retried Apply may land twice, which merging makes harmless).
async fn call(from: &SimulatedNode, to: SocketAddr, request: &ReplicaRequest) -> ReplicaResponse {
    let start = tokio::time::Instant::now();
    loop {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        match from
            .net
            .call(to, Family::Replica, request.encode(), deadline)
            .await
        {
            Ok(body) => return ReplicaResponse::decode(&body).unwrap(),
            Err(e) => {
                assert!(
                    start.elapsed() < DEADLINE,
                    "replica call to {to} kept failing: {e}"
                );
                tokio::time::sleep(CALL_TIMEOUT).await;
            }
        }
    }
}

fn blind_insert(svc: &Service, key: &[u8], value: String) {
    let r = svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "users".into(),
            key: Bytes::copy_from_slice(key),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"v"),
                value: Bytes::from(value.into_bytes()),
                context: Bytes::new(),
            }],
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

fn key(k: usize) -> Vec<u8> {
    format!("key-{k}").into_bytes()
}

struct Outcome {
    trace: Vec<SimTraceEvent>,
    digests: Vec<Vec<u8>>,
}

async fn run(seed: u64) -> Outcome {
    let world = SimNetwork::new(
        SimConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(8),
            loss: 0.05,
            duplicate: 0.05,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(25),
        },
        seed,
    );
    let start = tokio::time::Instant::now();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        nodes.push(start_node(&world, i, seed));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_for("one ring of every node on every node", start, || {
        let rings: Vec<_> = nodes
            .iter()
            .filter_map(|n| n.handle.view())
            .map(|v| v.ring())
            .collect();
        rings.len() == NODES
            && rings[0].nodes().len() == NODES
            && rings.iter().all(|r| *r == rings[0])
    })
    .await;

    let created = nodes[0].service.handle(Request::CreateTable {
        name: "users".into(),
        options: TableOptions {
            replication_factor: RF as u16,
            read_consistency: Consistency::ONE,
            write_consistency: Consistency::ONE,
            conflict_mode: ConflictMode::Causal,
            ..TableOptions::default()
        },
        if_not_exists: false,
    });
    assert!(
        matches!(created, Response::SchemaChanged { .. }),
        "{created:?}"
    );
    wait_for("the table on every node", start, || {
        nodes
            .iter()
            .all(|n| n.service.conflict_mode("users").is_some())
    })
    .await;

    let ring = nodes[0].handle.view().unwrap().ring();
    let strategy = ReplicationStrategy::simple(RF);
    let addr_of = |id: NodeId| nodes.iter().find(|n| n.id == id).unwrap().addr;
    // One replica of the first key stops hearing from node 0 (a one-way cut) while the
    // writes are shipped; it is healed once every other replica has them.
    let first_home = ring.preference_list(&Partitioner::Murmur3.token(&key(0)), &strategy);
    let cut = addr_of(first_home[0]);
    world.block(nodes[0].addr, cut);

    // Two writers per key, writing blind before either write is replicated: concurrent.
    let mut shipments = Vec::new();
    for k in 0..KEYS {
        for w in [k % NODES, (k + 1) % NODES] {
            let writer = &nodes[w];
            blind_insert(&writer.service, &key(k), format!("from-{w}-key-{k}"));
            let engine_key = RowPrefix::new(Partitioner::Murmur3, &key(k)).cell_key(b"v");
            let value = writer
                .service
                .replica()
                .read_raw("users", &engine_key)
                .unwrap()
                .unwrap();
            shipments.push((
                w,
                k,
                RawCell {
                    table: "users".into(),
                    key: engine_key,
                    value,
                },
            ));
        }
    }
    let mut deferred = Vec::new();
    for (w, k, cell) in &shipments {
        let homes = ring.preference_list(&Partitioner::Murmur3.token(&key(*k)), &strategy);
        assert_eq!(homes.len(), RF);
        for home in homes {
            let to = addr_of(home);
            // A call either way between node 0 and the cut replica needs node 0 -> cut
            // (its request or its answer): it waits for the heal.
            let from = nodes[*w].addr;
            if (from == nodes[0].addr && to == cut) || (from == cut && to == nodes[0].addr) {
                deferred.push((*w, cell.clone(), to));
                continue;
            }
            let apply = ReplicaRequest::Apply {
                cells: vec![cell.clone()],
            };
            let r = call(&nodes[*w], to, &apply).await;
            assert_eq!(r, ReplicaResponse::Applied { count: 1 });
        }
    }
    // Through the cut, a call cannot get through; after healing it does.
    let blocked = nodes[0]
        .net
        .call(
            cut,
            Family::Replica,
            ReplicaRequest::Digest {
                table: "users".into(),
                keys: vec![],
            }
            .encode(),
            tokio::time::Instant::now() + CALL_TIMEOUT,
        )
        .await;
    assert!(blocked.is_err(), "the one-way cut lets nothing through");
    world.heal();
    for (w, cell, to) in deferred {
        let r = call(&nodes[w], to, &ReplicaRequest::Apply { cells: vec![cell] }).await;
        assert_eq!(r, ReplicaResponse::Applied { count: 1 });
    }

    // Every home replica holds both concurrent versions, with one digest per key.
    let mut digests = Vec::new();
    for k in 0..KEYS {
        let homes = ring.preference_list(&Partitioner::Murmur3.token(&key(k)), &strategy);
        let engine_key = RowPrefix::new(Partitioner::Murmur3, &key(k)).cell_key(b"v");
        let digest = ReplicaRequest::Digest {
            table: "users".into(),
            keys: vec![engine_key],
        };
        let mut seen = Vec::new();
        for home in &homes {
            match call(&nodes[0], addr_of(*home), &digest).await {
                ReplicaResponse::Digests { digests } => seen.push(digests),
                other => panic!("{other:?}"),
            }
            let replica = &nodes.iter().find(|n| n.id == *home).unwrap().service;
            let got = replica.handle(Request::Get {
                table: "users".into(),
                key: Bytes::from(key(k)),
                selector: Selector::All,
                consistency: None,
            });
            let Response::Row { cells, .. } = got else {
                panic!("{got:?}")
            };
            let mut values: Vec<Vec<u8>> = cells
                .iter()
                .flat_map(|c| c.values().map(|v| v.to_vec()))
                .collect();
            values.sort();
            let mut want = vec![
                format!("from-{}-key-{k}", k % NODES).into_bytes(),
                format!("from-{}-key-{k}", (k + 1) % NODES).into_bytes(),
            ];
            want.sort();
            assert_eq!(values, want, "both siblings of key {k} on {home}");
        }
        assert!(
            seen.iter().all(|d| *d == seen[0]),
            "replicas of key {k} agree"
        );
        assert!(seen[0][0].is_some());
        digests.push(seen[0][0].unwrap().to_vec());
    }

    for n in &mut nodes {
        n.runtime.shutdown().await;
    }
    world.shutdown().await;
    Outcome {
        trace: world.trace(),
        digests,
    }
}

#[tokio::test(start_paused = true)]
async fn node_sim_concurrent_writes_shipped_over_a_lossy_network_converge_and_replay() {
    let seed = seed();
    let first = run(seed).await;
    let again = run(seed).await;
    assert_eq!(first.digests, again.digests, "same seed, same final state");
    assert!(first.trace == again.trace, "same seed, same network trace");
    let lost = first
        .trace
        .iter()
        .filter(|e| e.fate != sibyl::net::SimFate::Delivered)
        .count();
    println!(
        "{} messages, {lost} lost, duplicated, reordered or cut",
        first.trace.len()
    );
    assert!(lost > 0, "the network misbehaved at least once");
}
