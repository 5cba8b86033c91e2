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

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sibyl_protocol::{Consistency, Request, Response};
use sibyl_tools::nemesis::check::{check, Observed, REGISTER_COLUMN};
use sibyl_tools::nemesis::history::{Event, Op, Workload};

#[path = "common/sim_cluster.rs"]
mod sim_cluster;
use sim_cluster::*;

/// Keys per workload.
const KEYS: usize = 2;
/// Nemesis rounds per seed.
const ROUNDS: usize = 16;
/// Concurrent client operations per round.
const CLIENTS: usize = 6;

fn key_of(w: Workload, k: usize) -> Vec<u8> {
    format!("{}-{k}", w.name()).into_bytes()
}

/// Live values by column of a ROW answer (`None` for any other answer).
fn live(r: &Response) -> Option<BTreeMap<String, Vec<String>>> {
    let Response::Row { cells, .. } = r else {
        return None;
    };
    Some(
        cells
            .iter()
            .map(|c| {
                let mut vs: Vec<String> = c
                    .values()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                vs.sort();
                (String::from_utf8_lossy(&c.name).into_owned(), vs)
            })
            .collect(),
    )
}

fn event(client: usize, w: Workload, op: Op, key: &[u8], value: &str, ok: bool) -> Event {
    Event {
        client,
        workload: w,
        op,
        key: String::from_utf8_lossy(key).into_owned(),
        value: value.to_owned(),
        seen: Vec::new(),
        context: String::new(),
        node: String::new(),
        start_ms: 0,
        end_ms: 0,
        ok,
        error: None,
    }
}

/// One client operation of workload `w` through `coordinator` (see the module docs);
/// its events.
async fn operate(
    coordinator: std::sync::Arc<sibyl::coordinator::Coordinator>,
    client: usize,
    w: Workload,
    key: Vec<u8>,
    value: String,
    ids: (u128, u128),
) -> Vec<Event> {
    let q = Consistency::QUORUM;
    let mut out = Vec::new();
    match w {
        Workload::Set | Workload::Delete => {
            let put = with_write_id(insert(&key, &value, "1", Bytes::new(), q), ids.0);
            let ok = matches!(coordinator.answer(put).await, Response::Written { .. });
            out.push(event(client, w, Op::Add, &key, &value, ok));
            if ok && w == Workload::Delete && ids.0.is_multiple_of(2) {
                let read = Request::Get {
                    table: TABLE.into(),
                    key: Bytes::copy_from_slice(&key),
                    selector: sibyl_protocol::Selector::Columns(vec![Bytes::copy_from_slice(
                        value.as_bytes(),
                    )]),
                    consistency: Some(q),
                };
                if let Response::Row { cells, .. } = coordinator.answer(read).await {
                    if let Some(cell) = cells.iter().find(|c| c.values().next().is_some()) {
                        let del = with_write_id(
                            delete_with_context(&key, &value, cell.context.clone(), q),
                            ids.1,
                        );
                        let ok = matches!(coordinator.answer(del).await, Response::Written { .. });
                        out.push(event(client, w, Op::Delete, &key, &value, ok));
                    }
                }
            }
        }
        Workload::Register => {
            let r = coordinator.answer(get(&key, Some(q))).await;
            let Response::Row { cells, .. } = &r else {
                return out;
            };
            let cell = cells
                .iter()
                .find(|c| c.name.as_ref() == REGISTER_COLUMN.as_bytes());
            let seen: Vec<String> = cell
                .map(|c| {
                    c.values()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let context = cell.map(|c| c.context.clone()).unwrap_or_default();
            let put = with_write_id(insert(&key, REGISTER_COLUMN, &value, context, q), ids.0);
            let ok = matches!(coordinator.answer(put).await, Response::Written { .. });
            let mut e = event(client, w, Op::Add, &key, &value, ok);
            e.seen = seen;
            out.push(e);
        }
    }
    out
}

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
    let workloads = [Workload::Set, Workload::Delete, Workload::Register];
    let mut events: Vec<Event> = Vec::new();
    let mut next: u128 = u128::from(seed) << 64;
    let mut faults = 0usize;
    for round in 0..ROUNDS {
        if sim.random_fault(&mut rng, round).await {
            faults += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..3000))).await;
        let mut calls = Vec::new();
        for client in 0..CLIENTS {
            let running: Vec<usize> = sim.running().map(|(i, _)| i).collect();
            let via = running[rng.gen_range(0..running.len())];
            let w = workloads[rng.gen_range(0..workloads.len())];
            let key = key_of(w, rng.gen_range(0..KEYS));
            let value = format!("c{client}-r{round}");
            next += 2;
            let coordinator = sim.node(via).coordinator.clone();
            calls.push(tokio::spawn(operate(
                coordinator,
                client,
                w,
                key,
                value,
                (next, next + 1),
            )));
        }
        for call in calls {
            events.extend(call.await.unwrap());
        }
    }

    sim.heal_everything().await;
    // Read repair with blocking reads at ALL through one node, then the reads checked.
    let keys: Vec<(Workload, Vec<u8>)> = workloads
        .iter()
        .flat_map(|w| (0..KEYS).map(move |k| (*w, key_of(*w, k))))
        .collect();
    for (_, key) in &keys {
        let r = sim
            .node(0)
            .coordinator
            .answer(get(key, Some(Consistency::ALL.blocking_read_repair())))
            .await;
        assert!(live(&r).is_some(), "seed {seed}: repair read {r:?}");
    }
    let mut observed = Vec::new();
    for (w, key) in &keys {
        for i in 0..nodes {
            for (c, label) in [(Consistency::ONE, "ONE"), (Consistency::ALL, "ALL")] {
                let r = sim.node(i).coordinator.answer(get(key, Some(c))).await;
                let columns =
                    live(&r).unwrap_or_else(|| panic!("seed {seed}: read through node {i}: {r:?}"));
                observed.push(Observed {
                    source: format!("node {i} at {label}"),
                    workload: *w,
                    key: String::from_utf8_lossy(key).into_owned(),
                    columns,
                });
            }
        }
    }
    let verdict = check(&events, &observed);
    assert!(
        verdict.is_clean(),
        "seed {seed} ({nodes} nodes): lost {:?}, never written {:?}, resurrected {:?} \
         (SIBYL_SIM_SEED={seed} SIBYL_SIM_SEEDS=1 replays it)",
        verdict.lost.examples(5),
        verdict.never_written.examples(5),
        verdict.resurrected.examples(5)
    );
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
