//! The nemesis's workloads in a simulation (`common/sim_cluster.rs`): the set, delete and
//! causal register workloads as `sibyl-nemesis` runs them against real processes, one
//! round of client operations at a time, and the final check after the heal (every key
//! read through every member node at ONE and at ALL, judged by the nemesis's own checker,
//! `sibyl_tools::nemesis::check`). Shared by `nemesis_sim.rs` and `elasticity_sim.rs`.
#![allow(dead_code)] // each simulation uses part of it
#![allow(clippy::unwrap_used)] // test harness

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use sibyl_protocol::{Consistency, Request, Response};
use sibyl_tools::nemesis::check::{check, Observed, Verdict, REGISTER_COLUMN};
use sibyl_tools::nemesis::history::{Event, Op, Workload};

use super::sim_cluster::*;

/// Keys per workload.
pub const KEYS: usize = 2;
/// Concurrent client operations per round.
pub const CLIENTS: usize = 6;
/// The workloads, in the order a round draws from.
pub const WORKLOADS: [Workload; 3] = [Workload::Set, Workload::Delete, Workload::Register];

pub fn key_of(w: Workload, k: usize) -> Vec<u8> {
    format!("{}-{k}", w.name()).into_bytes()
}

/// Live values by column of a ROW answer (`None` for any other answer).
pub fn live(r: &Response) -> Option<BTreeMap<String, Vec<String>>> {
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

pub fn event(client: usize, w: Workload, op: Op, key: &[u8], value: &str, ok: bool) -> Event {
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
pub async fn operate(
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

/// One round of client operations: [`CLIENTS`] operations at once, each through a running
/// node drawn from `rng`, on a key and workload drawn from `rng`; `next` numbers their
/// write ids. Returns their events.
pub async fn client_round(
    sim: &Sim,
    rng: &mut StdRng,
    round: usize,
    next: &mut u128,
) -> Vec<Event> {
    let mut calls = Vec::new();
    for client in 0..CLIENTS {
        let running: Vec<usize> = sim.running().map(|(i, _)| i).collect();
        let via = running[rng.gen_range(0..running.len())];
        let w = WORKLOADS[rng.gen_range(0..WORKLOADS.len())];
        let key = key_of(w, rng.gen_range(0..KEYS));
        let value = format!("c{client}-r{round}");
        *next += 2;
        let coordinator = sim.node(via).coordinator.clone();
        calls.push(tokio::spawn(operate(
            coordinator,
            client,
            w,
            key,
            value,
            (*next, *next + 1),
        )));
    }
    let mut events = Vec::new();
    for call in calls {
        events.extend(call.await.unwrap());
    }
    events
}

/// After the heal: read repair with blocking reads at ALL through one node, then every
/// key read through every member node at ONE and at ALL and judged against `events`;
/// panics, naming the seed, unless nothing was lost, never written or resurrected.
pub async fn check_everything(sim: &Sim, seed: u64, events: &[Event]) -> Verdict {
    let keys: Vec<(Workload, Vec<u8>)> = WORKLOADS
        .iter()
        .flat_map(|w| (0..KEYS).map(move |k| (*w, key_of(*w, k))))
        .collect();
    let members: Vec<usize> = sim.members().collect();
    for (_, key) in &keys {
        let r = sim
            .node(members[0])
            .coordinator
            .answer(get(key, Some(Consistency::ALL.blocking_read_repair())))
            .await;
        assert!(live(&r).is_some(), "seed {seed}: repair read {r:?}");
    }
    let mut observed = Vec::new();
    for (w, key) in &keys {
        for &i in &members {
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
    let verdict = check(events, &observed);
    assert!(
        verdict.is_clean(),
        "seed {seed} ({} nodes): lost {:?}, never written {:?}, resurrected {:?} \
         (SIBYL_SIM_SEED={seed} SIBYL_SIM_SEEDS=1 replays it)",
        members.len(),
        verdict.lost.examples(5),
        verdict.never_written.examples(5),
        verdict.resurrected.examples(5)
    );
    verdict
}

/// A pause of up to 3 s of virtual time between rounds, drawn from `rng`.
pub async fn pause(rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..3000))).await;
}
