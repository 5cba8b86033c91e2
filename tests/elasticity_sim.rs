//! Elasticity in simulation: clusters of 5 to 7 whole nodes (`common/sim_cluster.rs`)
//! under the seeded simulated network run the nemesis's workloads
//! (`common/sim_workload.rs`) while nodes join (bootstrap, streaming their ranges) and
//! decommission (streaming their ranges out, then leaving) and move one of their tokens
//! (pulling what the new token gains, pushing what the old one loses: a rebalance's
//! step), and meanwhile crash, restart,
//! are partitioned and have their clocks skewed, and the network loses, duplicates and
//! reorders messages. A crash can hit a joining node (its restart resumes the bootstrap)
//! or a leaving one (it comes back normal), or a moving one (it comes back with its old
//! tokens, or its new ones once it recorded them). After the heal every ring change completes,
//! the nodes that left are stopped for good, and every key is read through every
//! remaining node at ONE and at ALL: the nemesis's checker must find nothing lost,
//! nothing that was never written, nothing resurrected.
//!
//! A seed fixes everything and is printed; `SIBYL_SIM_SEED=<seed> SIBYL_SIM_SEEDS=1 cargo
//! test --test elasticity_sim` replays it alone. A run covers `SIBYL_SIM_SEEDS` seeds
//! (default 32) from `SIBYL_SIM_SEED`, split over two tests so both cores work.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sibyl::cluster::NodeStatus;
use sibyl_tools::nemesis::history::Event;

#[path = "common/sim_cluster.rs"]
mod sim_cluster;
use sim_cluster::*;
#[path = "common/sim_workload.rs"]
mod sim_workload;
use sim_workload::*;

/// Rounds per seed.
const ROUNDS: usize = 16;
/// Most nodes a seed adds.
const MAX_JOINS: usize = 2;

#[derive(Default)]
struct Summary {
    nodes: usize,
    acknowledged: u64,
    unknown: u64,
    faults: usize,
    joins: usize,
    decommissions: usize,
    moves: usize,
    refused: usize,
}

/// A ring change drawn from `rng`, or none: a new node joins, or a running normal node is
/// asked to decommission (it may be refused: the cluster would fall below the rf, or a
/// change under way moves one of its ranges).
async fn ring_change(sim: &mut Sim, rng: &mut StdRng, seed: u64, round: usize, s: &mut Summary) {
    match rng.gen_range(0..5) {
        0 if s.joins < MAX_JOINS => {
            let i = sim.join_new(seed);
            println!("round {round}: node {i} joins");
            s.joins += 1;
        }
        1 => {
            let normal: Vec<usize> = sim
                .running()
                .filter(|(i, r)| {
                    r.handle.view().is_some_and(|v| {
                        v.node(sim.slots[*i].id).and_then(|n| n.status) == Some(NodeStatus::Normal)
                    })
                })
                .map(|(i, _)| i)
                .collect();
            if normal.is_empty() {
                return;
            }
            let i = normal[rng.gen_range(0..normal.len())];
            if rng.gen_bool(0.5) {
                // One token of node i moves to a random place.
                let Some(view) = sim.node(i).handle.view() else {
                    return;
                };
                let mut tokens: Vec<i128> = view
                    .node(sim.slots[i].id)
                    .map(|n| {
                        n.tokens
                            .iter()
                            .map(sibyl::service::cluster::token_value)
                            .collect()
                    })
                    .unwrap_or_default();
                if tokens.is_empty() {
                    return;
                }
                let k = rng.gen_range(0..tokens.len());
                tokens[k] = i128::from(rng.gen_range(i64::MIN + 1..i64::MAX));
                match sim.move_to(i, tokens).await {
                    Ok(_) => {
                        println!("round {round}: node {i} moves a token");
                        s.moves += 1;
                    }
                    Err(why) => {
                        println!("round {round}: move of node {i} refused: {why}");
                        s.refused += 1;
                    }
                }
                return;
            }
            match sim.decommission(i).await {
                Ok(_) => {
                    println!("round {round}: node {i} decommissions");
                    s.decommissions += 1;
                }
                Err(why) => {
                    println!("round {round}: decommission of node {i} refused: {why}");
                    s.refused += 1;
                }
            }
        }
        _ => {}
    }
}

async fn run_seed(seed: u64) -> Summary {
    let nodes = 5 + (seed % 3) as usize;
    let mut sim = Sim::start(nodes, seed, quiet(), FAST_DELIVERY).await;
    sim.world.set_config(lossy());
    let mut rng = StdRng::seed_from_u64(seed ^ 0xe1a5_71c0);
    let mut events: Vec<Event> = Vec::new();
    let mut next: u128 = u128::from(seed) << 64;
    let mut s = Summary::default();
    for round in 0..ROUNDS {
        ring_change(&mut sim, &mut rng, seed, round, &mut s).await;
        if sim.random_fault(&mut rng, round).await {
            s.faults += 1;
        }
        for i in sim.retire_left().await {
            println!("round {round}: node {i} left and is stopped");
        }
        pause(&mut rng).await;
        events.extend(client_round(&sim, &mut rng, round, &mut next).await);
    }
    sim.heal_everything().await;
    let verdict = check_everything(&sim, seed, &events).await;
    s.nodes = sim.members().count();
    sim.shutdown().await;
    s.acknowledged = verdict.acknowledged.values().sum();
    s.unknown = verdict.unknown.values().sum();
    s
}

/// Runs the seeds of this run whose offset from the first is `half` modulo 2.
async fn run_half(half: u64) {
    let first = seed();
    let seeds: u64 = std::env::var("SIBYL_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let mut total = Summary::default();
    let mut runs = 0;
    for seed in (first..first + seeds).filter(|s| (s - first) % 2 == half) {
        println!(
            "elasticity sim, seed {seed} (SIBYL_SIM_SEED={seed} SIBYL_SIM_SEEDS=1 replays it)"
        );
        let run = run_seed(seed).await;
        println!(
            "  {} nodes at the end: acknowledged {}, unknown {}, faults {}, joins {}, \
             decommissions {}, moves {} ({} refused)",
            run.nodes,
            run.acknowledged,
            run.unknown,
            run.faults,
            run.joins,
            run.decommissions,
            run.moves,
            run.refused
        );
        runs += 1;
        total.acknowledged += run.acknowledged;
        total.unknown += run.unknown;
        total.faults += run.faults;
        total.joins += run.joins;
        total.decommissions += run.decommissions;
        total.moves += run.moves;
    }
    println!(
        "{runs} seeds: {} acknowledged, {} unknown, {} faults, {} joins, {} decommissions, \
         {} moves; 0 lost, 0 never written, 0 resurrected",
        total.acknowledged,
        total.unknown,
        total.faults,
        total.joins,
        total.decommissions,
        total.moves
    );
    if runs > 2 {
        assert!(total.acknowledged > 0, "some writes were acknowledged");
        assert!(total.joins > 0, "nodes joined");
        assert!(total.decommissions > 0, "nodes decommissioned");
        assert!(total.moves > 0, "nodes moved");
    }
}

#[tokio::test(start_paused = true)]
async fn elasticity_sim_even_seeds_lose_nothing_while_nodes_join_and_leave() {
    run_half(0).await;
}

#[tokio::test(start_paused = true)]
async fn elasticity_sim_odd_seeds_lose_nothing_while_nodes_join_and_leave() {
    run_half(1).await;
}
