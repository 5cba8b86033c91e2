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
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sibyl::replica::keys::RowPrefix;
use sibyl::replica::ReplicaHost;
use sibyl::ring::Partitioner;
use sibyl::versioning::decode_causal_cell;
use sibyl_protocol::{Consistency, ErrorKind, Request, Response};
use tokio::time::Instant;

#[path = "common/sim_cluster.rs"]
mod sim_cluster;
use sim_cluster::*;

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
    let mut sim = Sim::start(NODES, seed, quiet(), FAST_DELIVERY).await;
    sim.world.set_config(lossy());
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00c0_ffee);
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|k| format!("set-{k}").into_bytes()).collect();
    let mut ledger: BTreeMap<usize, Ledger> = (0..KEYS).map(|k| (k, Ledger::default())).collect();
    let mut next = 0usize;
    let mut faults = 0usize;
    for round in 0..ROUNDS {
        if sim.random_fault(&mut rng, round).await {
            faults += 1;
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

    sim.heal_everything().await;

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

/// Once every hint is delivered: column `item` of `key` reads as deleted through every
/// node at ALL (blocking read repair) and is stored deleted on every home replica.
async fn assert_deleted_everywhere(sim: &Sim, key: &[u8], seed: u64) {
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
    for h in sim.homes(key) {
        assert!(
            values(&sim.stored(h, key), "item").is_empty(),
            "home {h} holds the deleted value again (seed {seed})"
        );
    }
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
    let delete = delete_with_context(key, "item", cells[0].context.clone(), Consistency::QUORUM);
    written(c.answer(delete).await);
    drop(c);
    // Copy A comes back with its coordinator, and travels on as hints and read repair.
    sim.restart(first).await;
    sim.settle().await;
    assert_deleted_everywhere(&sim, key, seed).await;
    sim.shutdown().await;
}

/// The first attempt of a write reaches its coordinator only after the retry was read
/// and deleted elsewhere (the coordinator was paused with the request in its socket): it
/// mints a copy then, which must not survive the delete anywhere.
#[tokio::test(start_paused = true)]
async fn coordinator_sim_a_first_attempt_processed_after_the_delete_does_not_resurrect() {
    let seed = seed();
    let sim = Sim::start(5, seed, quiet(), FAST_DELIVERY).await;
    let key = b"cart-late".as_slice();
    let homes = sim.homes(key);
    let (first, second) = (homes[0], homes[1]);
    let attempt = with_write_id(
        insert(key, "item", "book", Bytes::new(), Consistency::QUORUM),
        0x5eed_0002,
    );
    // The first home is cut off (as if paused) and marked down by the others.
    let others: Vec<SocketAddr> = sim
        .slots
        .iter()
        .map(|s| s.addr)
        .filter(|a| *a != sim.slots[first].addr)
        .collect();
    sim.world.partition(&[vec![sim.slots[first].addr], others]);
    let first_id = sim.slots[first].id;
    wait_for(
        "the second home marks the first down",
        Instant::now(),
        || {
            sim.node(second)
                .handle
                .view()
                .is_some_and(|v| v.nodes.values().any(|n| n.id == first_id && !n.alive))
        },
    )
    .await;
    let c = sim.node(second).coordinator.clone();
    written(c.answer(attempt.clone()).await);
    let (cells, _) = row(c.answer(get(key, Some(Consistency::QUORUM))).await);
    assert_eq!(values(&cells, "item"), vec!["book".to_string()]);
    let delete = delete_with_context(key, "item", cells[0].context.clone(), Consistency::QUORUM);
    written(c.answer(delete).await);
    drop(c);
    // The pause ends: the first home runs the buffered first attempt at once.
    sim.world.heal();
    let late = sim.node(first).coordinator.answer(attempt).await;
    println!("the late first attempt: {late:?}");
    sim.settle().await;
    assert_deleted_everywhere(&sim, key, seed).await;
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
