//! Cluster-layer integration tests: ring balance, gossip convergence and failure detection
//! under a deterministic simulated network. One behaviour per test; every randomised test
//! prints its seed (override with `SIBYL_SIM_SEED`).
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use rand::rngs::StdRng;
use rand::SeedableRng;
use sibyl::ring::{
    allocate_tokens, NodeId, NodeLocation, Partitioner, ReplicationStrategy, Ring, RingNode,
    TokenAllocation,
};

fn seed() -> u64 {
    let s = std::env::var("SIBYL_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2024);
    println!("seed = {s} (set SIBYL_SIM_SEED to replay)");
    s
}

/// Adds nodes one at a time with `allocation`; returns max/mean primary ownership after
/// each addition from 3 nodes on, and the final ring.
fn spread_while_growing(
    allocation: TokenAllocation,
    max_nodes: usize,
    tokens: usize,
    seed: u64,
) -> (Vec<(usize, f64)>, Ring) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut members: Vec<RingNode> = Vec::new();
    let mut ring = Ring::empty(Partitioner::Murmur3);
    let mut spreads = Vec::new();
    for i in 0..max_nodes {
        let toks = allocate_tokens(&ring, tokens, allocation, &mut rng);
        members.push(RingNode {
            id: NodeId(i as u64 + 1),
            location: NodeLocation::default(),
            tokens: toks,
        });
        ring = Ring::new(Partitioner::Murmur3, members.clone()).expect("distinct tokens");
        if members.len() >= 3 {
            let own = ring.ownership();
            let max = own.values().cloned().fold(0.0, f64::max);
            let mean = 1.0 / members.len() as f64;
            spreads.push((members.len(), max / mean));
        }
    }
    (spreads, ring)
}

#[test]
fn allocation_balanced_keeps_max_share_within_1_15_of_mean() {
    let seed = seed();
    let (balanced, _) = spread_while_growing(TokenAllocation::Balanced, 64, 16, seed);
    let (random, _) = spread_while_growing(TokenAllocation::Random, 64, 16, seed);
    let worst = |v: &[(usize, f64)]| {
        v.iter()
            .cloned()
            .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a })
    };
    println!("16 tokens/node, 3..=64 nodes added one by one (max share / mean share):");
    for ((n, b), (_, r)) in balanced.iter().zip(random.iter()) {
        if [3, 4, 5, 8, 10, 16, 20, 32, 48, 64].contains(n) {
            println!("  n={n:>2}  balanced {b:.3}  random {r:.3}");
        }
    }
    let (bn, bw) = worst(&balanced);
    let (rn, rw) = worst(&random);
    println!("worst: balanced {bw:.3} (at n={bn}), random {rw:.3} (at n={rn})");
    for (n, s) in &balanced {
        assert!(*s <= 1.15, "balanced allocation spread {s:.3} at {n} nodes");
    }
}

#[test]
fn allocation_balanced_beats_random_with_replication() {
    let seed = seed();
    let rf3 = ReplicationStrategy::simple(3);
    let spread = |ring: &Ring| {
        let own = ring.replicated_ownership(&rf3);
        let mean = own.values().sum::<f64>() / own.len() as f64;
        own.values().cloned().fold(0.0, f64::max) / mean
    };
    let (_, balanced) = spread_while_growing(TokenAllocation::Balanced, 32, 16, seed);
    let (_, random) = spread_while_growing(TokenAllocation::Random, 32, 16, seed);
    let (b, r) = (spread(&balanced), spread(&random));
    println!(
        "32 nodes, 16 tokens, RF 3 replicated ownership max/mean: balanced {b:.3}, random {r:.3}"
    );
    assert!(b < r, "balanced {b} should beat random {r}");
}

// ---------------------------------------------------------------------------------------
// Gossip simulation
// ---------------------------------------------------------------------------------------

use rand::Rng;
use sibyl::cluster::simulation::{sim_addr, sim_config};
use sibyl::cluster::SimConfig;
use sibyl::cluster::{
    GossipConfig, GossipEvent, GossipSimulation, LocalNode, NodeStatus, GOSSIP_INTERVAL_MS,
};

const SECOND: u64 = 1000;

struct Cluster {
    sim: GossipSimulation,
    ids: Vec<NodeId>,
}

fn local_node(i: usize, id: NodeId, generation: u64, tokens: Vec<sibyl::ring::Token>) -> LocalNode {
    LocalNode {
        id,
        generation,
        peer_address: sim_addr(i),
        client_address: None,
        location: NodeLocation::new("dc1", &format!("rack{}", i % 3)),
        tokens,
        status: NodeStatus::Normal,
        schema_version: 0,
        load: 0,
    }
}

/// `n` nodes with random ids and 16 random tokens each, all started within the first
/// second, the first `seeds` of them seeds.
fn cluster(n: usize, seeds: usize, net: SimConfig, seed: u64) -> Cluster {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = GossipSimulation::new(net, seed);
    let seed_addrs: Vec<_> = (0..seeds.min(n)).map(sim_addr).collect();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = NodeId(rng.gen());
        let tokens = (0..16)
            .map(|_| Partitioner::Murmur3.random_token(&mut rng))
            .collect();
        let config = GossipConfig::new("sim", seed_addrs.clone());
        sim.add_node(
            config,
            local_node(i, id, 1, tokens),
            rng.gen_range(0..SECOND),
        );
        ids.push(id);
    }
    Cluster { sim, ids }
}

/// Every running node knows every node and all build the same ring with `n` owners.
fn rings_agree(sim: &GossipSimulation, n: usize) -> bool {
    let running: Vec<_> = sim.nodes().iter().filter(|x| !x.crashed).collect();
    let Some(first) = running.first() else {
        return false;
    };
    if running.iter().any(|x| x.gossiper.known_count() < n) {
        return false;
    }
    let ring = first.gossiper.view().ring();
    ring.nodes().len() == n && running.iter().all(|x| x.gossiper.view().ring() == ring)
}

/// Every running node sees every other running node up.
fn all_up(sim: &GossipSimulation) -> bool {
    let running: Vec<_> = sim
        .nodes()
        .iter()
        .filter(|x| !x.crashed)
        .map(|x| x.gossiper.id())
        .collect();
    sim.nodes()
        .iter()
        .filter(|x| !x.crashed)
        .all(|x| running.iter().all(|id| x.gossiper.is_alive(*id)))
}

fn rounds_to_converge(n: usize, seed: u64) -> u64 {
    let mut c = cluster(n, 2, SimConfig::default(), seed);
    let t = c
        .sim
        .run_until_condition(GOSSIP_INTERVAL_MS, 120 * SECOND, |s| rings_agree(s, n))
        .unwrap_or_else(|| panic!("{n} nodes did not converge in 120 s (seed {seed})"));
    t / GOSSIP_INTERVAL_MS
}

#[test]
fn gossip_5_to_50_nodes_converge_on_one_ring() {
    let seed = seed();
    for n in [5, 10, 20, 50] {
        let rounds = rounds_to_converge(n, seed ^ n as u64);
        println!("{n:>3} nodes: one ring after {rounds} rounds");
    }
}

/// Rounds until a change made at one non-seed node of a converged `n`-node cluster is
/// known to every node (pure epidemic spread: seeds play no special part here).
fn rounds_to_spread(n: usize, seed: u64) -> u64 {
    let mut c = converged_cluster(n, SimConfig::default(), seed);
    let origin = n - 1;
    let id = c.ids[origin];
    let marker = 0xfeed_0000 + seed % 1000;
    let t0 = c.sim.now_ms();
    c.sim
        .node_mut(origin)
        .expect("origin")
        .gossiper
        .set_load(marker);
    let t = c
        .sim
        .run_until_condition(100, t0 + 120 * SECOND, |s| {
            s.nodes()
                .iter()
                .all(|x| x.gossiper.endpoint(id).and_then(|e| e.load()) == Some(marker))
        })
        .unwrap_or_else(|| panic!("update did not reach all {n} nodes (seed {seed})"));
    (t - t0).div_ceil(GOSSIP_INTERVAL_MS)
}

#[test]
fn gossip_rounds_to_converge_grow_like_log_n() {
    let seed = seed();
    let runs = 4;
    let mut means = Vec::new();
    for n in [5usize, 10, 20, 50, 100] {
        let total: u64 = (0..runs)
            .map(|r| rounds_to_spread(n, seed.wrapping_add(r * 7919 + n as u64)))
            .sum();
        let mean = total as f64 / runs as f64;
        let log2 = (n as f64).log2();
        println!(
            "{n:>4} nodes: an update reaches every node in {mean:.2} rounds ({:.2} x log2 N)",
            mean / log2
        );
        means.push((n, mean, log2));
    }
    // Logarithmic growth: rounds stay within a constant factor of log2 N, and 20x more
    // nodes (5 -> 100) cost far less than 20x the rounds (log2 grows 2.9x).
    for (n, mean, log2) in &means {
        assert!(*mean <= 1.5 * log2 + 2.0, "{n} nodes took {mean} rounds");
    }
    let (first, last) = (means[0].1, means[means.len() - 1].1);
    assert!(last / first < 5.0, "rounds grew {first} -> {last}");
}

fn converged_cluster(n: usize, net: SimConfig, seed: u64) -> Cluster {
    let mut c = cluster(n, 2, net, seed);
    c.sim
        .run_until_condition(SECOND, 120 * SECOND, |s| all_up(s) && rings_agree(s, n))
        .expect("cluster converges and sees everyone up");
    c
}

#[test]
fn gossip_killed_node_is_marked_down_by_every_peer_within_10_seconds() {
    let seed = seed();
    let mut c = converged_cluster(20, SimConfig::default(), seed);
    // Let the failure detectors learn the rhythm.
    let t0 = c.sim.now_ms() + 30 * SECOND;
    c.sim.run_until(t0);
    let victim = 7;
    let victim_id = c.ids[victim];
    c.sim.crash(victim);
    let detected = c
        .sim
        .run_until_condition(100, t0 + 10 * SECOND, |s| {
            s.nodes()
                .iter()
                .filter(|x| !x.crashed)
                .all(|x| !x.gossiper.is_alive(victim_id))
        })
        .map(|t| t - t0);
    let worst = c
        .sim
        .nodes()
        .iter()
        .filter(|x| !x.crashed)
        .filter_map(|x| {
            x.events.iter().find_map(|(t, e)| match e {
                GossipEvent::Down { node, .. } if *node == victim_id => Some(*t - t0),
                _ => None,
            })
        })
        .max();
    println!("killed node marked down by all 19 peers after {detected:?} ms (last Down event at {worst:?} ms)");
    assert!(
        detected.is_some(),
        "some peer still sees the killed node up after 10 s"
    );
}

#[test]
fn gossip_no_false_down_with_200ms_jitter_over_10_minutes() {
    let seed = seed();
    let net = sim_config(1, 200, 0.0);
    let mut c = converged_cluster(20, net, seed);
    let start = c.sim.now_ms();
    c.sim.run_until(start + 600 * SECOND);
    let false_downs: Vec<_> = c
        .sim
        .nodes()
        .iter()
        .flat_map(|x| {
            x.events
                .iter()
                .filter(|(t, e)| *t >= start && matches!(e, GossipEvent::Down { .. }))
                .map(move |(t, e)| (x.gossiper.id(), *t, e.clone()))
        })
        .collect();
    let max_phi = c
        .sim
        .nodes()
        .iter()
        .flat_map(|x| {
            c.ids
                .iter()
                .map(move |id| x.gossiper.phi(*id, start + 600 * SECOND))
        })
        .fold(0.0, f64::max);
    println!(
        "10 simulated minutes, 20 nodes, 1-201 ms latency: {} false downs; phi at the end <= {max_phi:.2}",
        false_downs.len()
    );
    assert!(false_downs.is_empty(), "false downs: {false_downs:?}");
    assert!(all_up(&c.sim));
}

#[test]
fn gossip_partition_heals_and_views_reconverge() {
    let seed = seed();
    let n = 10;
    let mut c = converged_cluster(n, SimConfig::default(), seed);
    let left: Vec<_> = (0..n / 2).map(sim_addr).collect();
    let right: Vec<_> = (n / 2..n).map(sim_addr).collect();
    c.sim.network().partition(&[left, right]);
    let t0 = c.sim.now_ms();
    c.sim.run_until(t0 + 60 * SECOND);
    // Each side has convicted the other.
    let a = &c.sim.node(0).expect("node 0").gossiper;
    assert!(!a.is_alive(c.ids[n - 1]), "the partition is visible");
    // A change made during the partition must cross after the heal.
    c.sim.create_table(n - 1, "made_during_partition");
    c.sim.network().heal();
    let healed = c.sim.now_ms();
    let t = c
        .sim
        .run_until_condition(SECOND, healed + 60 * SECOND, |s| {
            all_up(s)
                && rings_agree(s, n)
                && s.nodes()
                    .iter()
                    .all(|x| x.tables.contains("made_during_partition"))
        })
        .expect("views re-converge after the partition heals");
    println!(
        "partition healed; views re-converged after {} ms",
        t - healed
    );
}

#[test]
fn gossip_1000_nodes_converge() {
    let seed = seed();
    let n = 1000;
    let mut c = cluster(n, 3, SimConfig::default(), seed);
    c.sim.record_events(false);
    c.sim.set_check_interval(GOSSIP_INTERVAL_MS);
    let t = c
        .sim
        .run_until_condition(GOSSIP_INTERVAL_MS, 120 * SECOND, |s| {
            s.nodes().iter().all(|x| x.gossiper.known_count() == n)
        })
        .expect("1000 nodes converge");
    let rounds = t / GOSSIP_INTERVAL_MS;
    // Spot-check full agreement on the ring on a few nodes.
    let ring = c.sim.node(0).expect("node").gossiper.view().ring();
    assert_eq!(ring.nodes().len(), n);
    for i in [1, 499, 999] {
        assert_eq!(c.sim.node(i).expect("node").gossiper.view().ring(), ring);
    }
    let stats = c.sim.network().stats();
    let per_node_round = stats.bytes_sent as f64 / n as f64 / rounds as f64;
    println!(
        "1000 nodes: every node knows every node after {rounds} rounds; {} messages, {:.1} KiB per node per round",
        stats.sent,
        per_node_round / 1024.0
    );
    // Steady state: two more rounds after convergence.
    let before = c.sim.network().stats().bytes_sent;
    c.sim.run_until(t + 2 * GOSSIP_INTERVAL_MS);
    let steady = (c.sim.network().stats().bytes_sent - before) as f64 / n as f64 / 2.0;
    println!(
        "1000 nodes, steady state: {:.1} KiB per node per round",
        steady / 1024.0
    );
}

#[test]
fn gossip_nodes_join_one_by_one_and_agree_on_a_balanced_ring() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = GossipSimulation::new(SimConfig::default(), seed);
    let seeds = vec![sim_addr(0)];
    for i in 0..12usize {
        let mut local = local_node(i, NodeId(i as u64 + 1), 1, Vec::new());
        local.status = NodeStatus::Joining;
        let now = sim.now_ms();
        let idx = sim.add_node(GossipConfig::new("join", seeds.clone()), local, now);
        // Learn the ring from the seed, then choose balanced tokens against it and join.
        sim.run_until_condition(100, now + 30 * SECOND, |s| {
            s.node(idx)
                .is_some_and(|x| x.gossiper.known_count() == i + 1)
        })
        .expect("joiner learns the ring");
        let ring = sim.node(idx).expect("joiner").gossiper.view().ring();
        let tokens = allocate_tokens(&ring, 16, TokenAllocation::Balanced, &mut rng);
        sim.node_mut(idx)
            .expect("joiner")
            .gossiper
            .join_ring(tokens);
        sim.run_until_condition(SECOND, sim.now_ms() + 60 * SECOND, |s| {
            rings_agree(s, i + 1)
        })
        .expect("every node agrees on the new ring");
    }
    let ring = sim.node(0).expect("node").gossiper.view().ring();
    let own = ring.ownership();
    let max = own.values().cloned().fold(0.0, f64::max);
    let spread = max * own.len() as f64;
    println!("12 nodes joined through gossip; max share / mean = {spread:.3}");
    assert!(spread <= 1.15, "spread {spread}");
}

// ---------------------------------------------------------------------------------------
// Whole gossip runtimes (the node's tokio task) over the message-level simulated network.
// ---------------------------------------------------------------------------------------

mod runtime_over_sim {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sibyl::cluster::{
        ClusterHandle, ClusterRuntime, GossipConfig, Gossiper, LocalNode, NodeStatus, SchemaSource,
        TokenPlan,
    };
    use sibyl::net::{SimConfig as NetConfig, SimNetwork, SimTraceEvent};
    use sibyl::ring::{NodeId, NodeLocation, TokenAllocation};

    use super::{seed, sim_addr};

    /// An in-memory schema of table names (never blocks: runs on the gossip task).
    #[derive(Default)]
    struct Names(Mutex<BTreeSet<String>>);

    impl Names {
        fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    impl SchemaSource for Names {
        fn schema_version(&self) -> u64 {
            self.set().iter().fold(0u64, |h, n| {
                n.bytes().fold(h.rotate_left(5) ^ 0x9e37, |h, b| {
                    h.wrapping_mul(31) ^ u64::from(b)
                })
            })
        }
        fn export(&self) -> Vec<u8> {
            self.set()
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        }
        fn import(&self, schema: &[u8]) -> Result<u64, String> {
            let text = std::str::from_utf8(schema).map_err(|e| e.to_string())?;
            self.set().extend(
                text.split('\n')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            );
            Ok(self.schema_version())
        }
        fn may_block(&self) -> bool {
            false
        }
    }

    /// Gossip settings (seed node 0, a round every 200 ms) and the local state of sim node
    /// `i`, joining with no tokens yet.
    fn joining(i: usize, id: NodeId) -> (GossipConfig, LocalNode) {
        let mut gossip = GossipConfig::new("sim", vec![sim_addr(0)]);
        gossip.interval_ms = 200;
        let local = LocalNode {
            id,
            generation: 1,
            peer_address: sim_addr(i),
            client_address: None,
            location: NodeLocation::default(),
            tokens: Vec::new(),
            status: NodeStatus::Joining,
            schema_version: 0,
            load: 0,
        };
        (gossip, local)
    }

    struct Outcome {
        trace: Vec<SimTraceEvent>,
        formed_at: Duration,
    }

    /// Bound of the storm regression test: five gossip rounds a second, each a syn, an ack
    /// and an ack2 sent or received, plus schema pulls, pushes and probes, stay far below
    /// this; the storm it guards against was thousands.
    const MAX_GOSSIP_MESSAGES_PER_NODE_PER_SEC: f64 = 100.0;

    /// Starts `n` gossip runtimes over one simulated network (jitter, 5% loss, some
    /// duplication and reordering), waits until every node sees the same ring of `n`
    /// normal nodes and a table created on node 0; returns the network trace.
    async fn run(n: usize, seed: u64) -> Outcome {
        let config = NetConfig {
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(10),
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(30),
        };
        let world = SimNetwork::new(config, seed);
        let start = tokio::time::Instant::now();
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = NodeId(seed.rotate_left(i as u32) ^ (i as u64 + 1));
            let net = Arc::new(world.node(sim_addr(i), id));
            let (gossip, local) = joining(i, id);
            let schema = Arc::new(Names::default());
            let (handle, inbox) = ClusterHandle::new();
            let runtime = ClusterRuntime::start(
                handle.clone(),
                inbox,
                Gossiper::new(gossip, local, id.0, 0),
                net,
                schema.clone(),
                TokenPlan::Allocate {
                    count: 8,
                    allocation: TokenAllocation::Balanced,
                },
                Box::new(|_| {}),
            )
            .expect("start");
            nodes.push((handle, runtime, schema));
            // Nodes join one after the other, as an operator would start them.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let formed = |nodes: &[(Arc<ClusterHandle>, ClusterRuntime, Arc<Names>)]| {
            let rings: Vec<_> = nodes
                .iter()
                .filter_map(|(h, _, _)| h.view())
                .map(|v| v.ring())
                .collect();
            rings.len() == n && rings[0].nodes().len() == n && rings.iter().all(|r| *r == rings[0])
        };
        let deadline = start + Duration::from_secs(120);
        while !formed(&nodes) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no common ring of {n} nodes"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let formed_at = start.elapsed();
        nodes[0].2.set().insert("users".into());
        nodes[0].0.schema_changed();
        while !nodes.iter().all(|(_, _, s)| s.set().contains("users")) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "schema did not spread"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (_, runtime, _) in &mut nodes {
            runtime.shutdown().await;
        }
        world.shutdown().await;
        Outcome {
            trace: world.trace(),
            formed_at,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_nodes_over_the_sim_network_form_a_ring_and_replay_for_a_seed() {
        let seed = seed();
        let first = run(8, seed).await;
        println!("ring formed after {:?} of simulated time", first.formed_at);
        let again = run(8, seed).await;
        assert_eq!(first.formed_at, again.formed_at);
        assert!(first.trace == again.trace, "same seed, same trace");
    }

    /// Regression (found by the simulator): every schema push re-announced the version and
    /// every mismatched peer pulled at once, a pull/push storm of tens of thousands of
    /// messages per node in seconds. Gossip traffic must stay a few messages per node per
    /// round (a round is 200 ms here) while a ring forms and a schema change spreads.
    #[tokio::test(start_paused = true)]
    async fn runtime_gossip_traffic_stays_bounded_while_a_schema_change_spreads() {
        const NODES: usize = 8;
        let outcome = run(NODES, seed()).await;
        let last_ms = outcome.trace.iter().map(|e| e.at_ms).max().unwrap_or(0);
        let secs = (last_ms as f64 / 1000.0).max(1.0);
        let per_node_per_sec = outcome.trace.len() as f64 / NODES as f64 / secs;
        println!(
            "{} messages over {secs:.1} simulated s: {per_node_per_sec:.1} per node per s",
            outcome.trace.len()
        );
        assert!(
            per_node_per_sec < MAX_GOSSIP_MESSAGES_PER_NODE_PER_SEC,
            "gossip storm: {per_node_per_sec:.1} messages per node per second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_closes_connections_to_a_node_that_left() {
        let world = SimNetwork::new(NetConfig::default(), seed());
        let mut nodes = Vec::new();
        for i in 0..3 {
            let id = NodeId(i as u64 + 1);
            let (gossip, local) = joining(i, id);
            let (handle, inbox) = ClusterHandle::new();
            let token = sibyl::ring::Token::Murmur3(i as i64 * 1000);
            let runtime = ClusterRuntime::start(
                handle.clone(),
                inbox,
                Gossiper::new(gossip, local, id.0, 0),
                Arc::new(world.node(sim_addr(i), id)),
                Arc::new(Names::default()),
                TokenPlan::Existing(vec![token]),
                Box::new(|_| {}),
            )
            .expect("start");
            nodes.push((handle, runtime));
        }
        let all_see = |nodes: &[(Arc<ClusterHandle>, ClusterRuntime)], id: u64, status| {
            nodes.iter().all(|(h, _)| {
                h.view()
                    .and_then(|v| v.node(NodeId(id)).and_then(|n| n.status))
                    == Some(status)
            })
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !(1..=3).all(|id| all_see(&nodes, id, NodeStatus::Normal)) {
            assert!(tokio::time::Instant::now() < deadline, "never all normal");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(world.disconnects().is_empty());
        nodes[2].0.set_status(NodeStatus::Leaving);
        nodes[2].0.set_status(NodeStatus::Left);
        while !all_see(&nodes, 3, NodeStatus::Left) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node 3 never seen left"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Closed once the departure grace (calls in flight end first) has passed.
        let closed_by_all = |closed: &[(std::net::SocketAddr, std::net::SocketAddr)]| {
            (0..2).all(|i| closed.contains(&(sim_addr(i), sim_addr(2))))
        };
        while !closed_by_all(&world.disconnects()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the live nodes did not close their connections to the departed node: {:?}",
                world.disconnects()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (_, runtime) in &mut nodes {
            runtime.shutdown().await;
        }
        world.shutdown().await;
    }
}
