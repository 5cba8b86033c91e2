//! Simulation at scale: clusters of 5 to 25 whole nodes (`common/sim_cluster.rs`) under
//! the seeded simulated network run the nemesis's three workloads (set, delete and causal
//! register, as `sibyl-nemesis` runs them against real processes) while nodes crash,
//! restart, are partitioned and have their clocks skewed, and the network loses,
//! duplicates and reorders messages. After the heal every key is read through every node
//! at ONE and at ALL, and the nemesis's own checker (`sibyl_tools::nemesis::check`) must
//! find nothing lost, nothing that was never written, nothing resurrected.
//!
//! A seed fixes everything, the cluster size included ([`nodes_of`]: 5 to 9 nodes for
//! seven seeds in eight, 10 to 25 for the eighth); it is printed, and
//! `SIBYL_SIM_SEED=<seed> SIBYL_SIM_SEEDS=1 cargo test --test nemesis_sim` replays it alone.
//! A run covers `SIBYL_SIM_SEEDS` seeds (default 256) from `SIBYL_SIM_SEED`, split over two
//! tests so both cores work.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use rand::rngs::StdRng;
use rand::SeedableRng;
use sibyl_tools::nemesis::history::Event;

#[path = "common/sim_cluster.rs"]
mod sim_cluster;
use sim_cluster::*;
#[path = "common/sim_workload.rs"]
mod sim_workload;
use sim_workload::*;

/// Nemesis rounds per seed.
const ROUNDS: usize = 16;

struct Summary {
    nodes: usize,
    acknowledged: u64,
    unknown: u64,
    faults: usize,
}

/// The cluster size of `seed`: small clusters mostly (they are cheap, so many seeds fit a
/// CI run), a large one every eighth seed.
fn nodes_of(seed: u64) -> usize {
    if seed.is_multiple_of(8) {
        10 + ((seed / 8) % 16) as usize
    } else {
        5 + (seed % 5) as usize
    }
}

async fn run_seed(seed: u64) -> Summary {
    let nodes = nodes_of(seed);
    let mut sim = Sim::start(nodes, seed, quiet(), FAST_DELIVERY).await;
    sim.world.set_config(lossy());
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0bad_cafe);
    let mut events: Vec<Event> = Vec::new();
    let mut next: u128 = u128::from(seed) << 64;
    let mut faults = 0usize;
    for round in 0..ROUNDS {
        if sim.random_fault(&mut rng, round).await {
            faults += 1;
        }
        pause(&mut rng).await;
        events.extend(client_round(&sim, &mut rng, round, &mut next).await);
    }
    sim.heal_everything().await;
    let verdict = check_everything(&sim, seed, &events).await;
    sim.shutdown().await;
    Summary {
        nodes,
        acknowledged: verdict.acknowledged.values().sum(),
        unknown: verdict.unknown.values().sum(),
        faults,
    }
}

/// Runs the seeds of this run whose offset from the first is `half` modulo 2.
async fn run_half(half: u64) {
    let first = seed();
    let seeds: u64 = std::env::var("SIBYL_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let (mut runs, mut acked, mut unknown, mut faults) = (0, 0, 0, 0);
    for s in (first..first + seeds).filter(|s| (s - first) % 2 == half) {
        println!("nemesis sim, seed {s} (SIBYL_SIM_SEED={s} SIBYL_SIM_SEEDS=1 replays it)");
        let run = run_seed(s).await;
        println!(
            "  {} nodes: acknowledged {}, unknown {}, faults {}",
            run.nodes, run.acknowledged, run.unknown, run.faults
        );
        runs += 1;
        acked += run.acknowledged;
        unknown += run.unknown;
        faults += run.faults;
    }
    println!(
        "{runs} seeds: {acked} acknowledged, {unknown} unknown, {faults} faults; \
         0 lost, 0 never written, 0 resurrected"
    );
    if runs > 0 {
        assert!(acked > 0, "some writes were acknowledged");
        assert!(faults > 0, "the nemesis injected faults");
    }
}

#[tokio::test(start_paused = true)]
async fn nemesis_sim_even_seeds_lose_nothing_and_resurrect_nothing() {
    run_half(0).await;
}

#[tokio::test(start_paused = true)]
async fn nemesis_sim_odd_seeds_lose_nothing_and_resurrect_nothing() {
    run_half(1).await;
}
