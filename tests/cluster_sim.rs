//! Cluster-layer integration tests: ring balance, gossip convergence and failure detection
//! under a deterministic simulated network. One behaviour per test; every randomised test
//! prints its seed (override with `SIBYL_SIM_SEED`).

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
