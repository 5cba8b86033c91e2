//! Property: applying minted cells is idempotent and order-free. Random writes (values,
//! deletes, TTL'd values, row deletes, with and without contexts) are minted at several actors of a
//! causal and an lww table; every minted cell is then applied, in a random order and with
//! duplicates, to fresh replicas. They must all end with identical stored state (raw
//! merged bytes of every key, digests, the ordered range scan), and still agree after a
//! flush and a major compaction. The clock is fixed, so TTLs are deterministic.
//!
//! proptest prints the failing input (the apply order comes from a seed inside it) and
//! records it in `proptest-regressions/` for replay.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sibyl::replica::keys::{split_engine_key, RowPrefix};
use sibyl::replica::read::cell_digest;
use sibyl::replica::{DotClock, MintCell, MintRow, RawCell, Replica, ReplicaError, TokenRange};
use sibyl::ring::Partitioner;
use sibyl::versioning::{
    decode_causal_cell, Actor, CausalMerge, Clock, Context, LwwCell, LwwMerge, ManualClock,
};
use sibyl_protocol::ConflictMode;
use sibyl_storage::{Engine, EngineOptions, MergePolicy, TableOptions};

const T0: i64 = 1_700_000_000;
const TABLES: [(&str, ConflictMode); 2] = [("c", ConflictMode::Causal), ("l", ConflictMode::Lww)];

fn mode_of(table: &str) -> Option<ConflictMode> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, m)| *m)
}

struct Node {
    _dir: tempfile::TempDir,
    replica: Replica,
}

fn node(id: u64, partitioner: Partitioner) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_secs(T0));
    let engine = Engine::open(
        dir.path(),
        EngineOptions {
            auto_compaction: false,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    for (name, mode) in TABLES {
        let merge: Arc<dyn MergePolicy> = match mode {
            ConflictMode::Causal => Arc::new(CausalMerge::new(clock.clone())),
            ConflictMode::Lww => Arc::new(LwwMerge::new(clock.clone())),
        };
        engine
            .create_table(
                name,
                TableOptions {
                    merge,
                    ..TableOptions::default()
                },
            )
            .unwrap();
    }
    Node {
        _dir: dir,
        replica: Replica::new(
            Arc::new(engine),
            Actor::new(id, 1),
            clock.clone(),
            partitioner,
            DotClock::in_memory(clock),
        ),
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Value(u8),
    Delete,
    /// A value with a TTL: expired already (`true`) or not.
    Ttl(u8, bool),
    /// A delete of the whole row.
    RowDelete,
}

#[derive(Debug, Clone)]
struct Op {
    actor: usize,
    table: usize,
    row: u8,
    column: u8,
    kind: Kind,
    /// Causal: write with the context of what this actor holds (else blind).
    with_context: bool,
    /// Lww: the write timestamp (small, so ties happen).
    timestamp: i64,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0..3usize,
        0..2usize,
        0..3u8,
        0..3u8,
        prop_oneof![
            3 => any::<u8>().prop_map(Kind::Value),
            1 => Just(Kind::Delete),
            1 => (any::<u8>(), any::<bool>()).prop_map(|(v, e)| Kind::Ttl(v, e)),
            1 => Just(Kind::RowDelete),
        ],
        any::<bool>(),
        0..4i64,
    )
        .prop_map(
            |(actor, table, row, column, kind, with_context, timestamp)| Op {
                actor,
                table,
                row,
                column,
                kind,
                with_context,
                timestamp,
            },
        )
}

#[derive(Debug, Clone)]
struct ErrText(#[allow(dead_code)] String);

impl From<ReplicaError> for ErrText {
    fn from(e: ReplicaError) -> Self {
        ErrText(e.to_string())
    }
}

/// Mints `op` at `at`, returning the cells written.
fn mint(at: &Replica, op: &Op) -> Vec<RawCell> {
    let (table, mode) = TABLES[op.table];
    let prefix = RowPrefix::new(at.partitioner(), &[b'r', op.row]);
    let key = prefix.cell_key(&[b'c', op.column]);
    let context = if mode == ConflictMode::Causal && op.with_context {
        at.read_raw(table, &key)
            .unwrap()
            .map(|v| Context::of(&decode_causal_cell(&v).unwrap()))
    } else {
        None
    };
    let row_delete = matches!(op.kind, Kind::RowDelete);
    let (value, expires) = match &op.kind {
        Kind::Value(v) => (Some(vec![*v]), None),
        Kind::Delete | Kind::RowDelete => (None, None),
        Kind::Ttl(v, expired) => {
            let t = if *expired { T0 - 10 } else { T0 + 1000 };
            (Some(vec![*v]), Some(t as u64))
        }
    };
    let row = if row_delete {
        MintRow {
            table,
            row: prefix,
            mode,
            max_siblings: 1000,
            keys: Vec::new(),
            cells: Vec::new(),
            timestamp_micros: op.timestamp,
            expires_at_secs: None,
            write_id: None,
            row_delete: Some(context.into_iter().collect()),
        }
    } else {
        MintRow {
            table,
            row: prefix,
            mode,
            max_siblings: 1000,
            keys: vec![key],
            cells: vec![MintCell {
                value: value.as_deref(),
                context,
            }],
            timestamp_micros: op.timestamp,
            expires_at_secs: expires,
            write_id: None,
            row_delete: None,
        }
    };
    let mut out = Vec::new();
    let mut sink = |_: usize, t: &str, k: &[u8], v: &[u8]| {
        out.push(RawCell {
            table: t.to_owned(),
            key: k.to_vec(),
            value: v.to_vec(),
        })
    };
    let r = at.mint_group::<_, ErrText>(&[Ok(row)], |_: &MintRow<'_>| Ok(()), Some(&mut sink));
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    out
}

/// Everything a replica holds: per table, the raw merged bytes and digest of every key
/// any replica was sent, then the whole-ring scan.
type State = Vec<(String, Vec<u8>, Option<Vec<u8>>, Option<[u8; 16]>)>;
/// The whole-ring scan: (table, engine key, stored bytes).
type Scanned = Vec<(String, Vec<u8>, Vec<u8>)>;

fn state(r: &Replica, keys: &BTreeSet<(String, Vec<u8>)>) -> (State, Scanned) {
    let now = r.clock().now_secs();
    let mut cells = Vec::new();
    for (t, k) in keys {
        let raw = r.read_raw(t, k).unwrap();
        let digest = raw
            .as_ref()
            .map(|v| cell_digest(mode_of(t).unwrap(), k, v, now));
        cells.push((t.clone(), k.clone(), raw, digest));
    }
    let mut scanned = Vec::new();
    let min = r.partitioner().min_token();
    for (t, _) in TABLES {
        let mut scan = r
            .scan_range(
                t,
                TokenRange {
                    start: min,
                    end: min,
                },
            )
            .unwrap();
        while let Some((k, v)) = scan.next_entry().unwrap() {
            scanned.push((t.to_owned(), k.to_vec(), v.to_vec()));
        }
    }
    (cells, scanned)
}

/// What a client would see of every cell key: live values after expiry and the row
/// tombstone.
fn visible(r: &Replica, keys: &BTreeSet<(String, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let now = r.clock().now_secs();
    let mut out = Vec::new();
    for (t, k) in keys {
        let parts = split_engine_key(r.partitioner(), k).unwrap();
        if parts.column.is_empty() {
            continue;
        }
        let row_key = &k[..parts.prefix_len(r.partitioner())];
        let tomb = r.row_tombstone(t, row_key).unwrap();
        let Some(raw) = r.read_raw(t, k).unwrap() else {
            out.push((k.clone(), Vec::new()));
            continue;
        };
        let mut values: Vec<Vec<u8>> = match mode_of(t).unwrap() {
            ConflictMode::Causal => {
                let mut d = decode_causal_cell(&raw).unwrap().without_expired(now);
                if let Some(left) = tomb.as_ref().and_then(|tb| tb.remove_covered(&d)) {
                    d = left;
                }
                d.values().iter().filter_map(|s| s.value.clone()).collect()
            }
            ConflictMode::Lww => {
                let c = LwwCell::decode(&raw).unwrap();
                let covered = tomb.as_ref().is_some_and(|tb| tb.covers_lww(&c));
                if c.is_tombstone() || c.is_expired(now) || covered {
                    Vec::new()
                } else {
                    c.value.into_iter().collect()
                }
            }
        };
        values.sort();
        out.push((k.clone(), values));
    }
    out
}

fn check(ops: &[Op], seed: u64, partitioner: Partitioner) -> Result<(), TestCaseError> {
    let actors: Vec<Node> = (0..3).map(|i| node(i + 1, partitioner)).collect();
    let mut minted: Vec<RawCell> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for op in ops {
        let at = &actors[op.actor].replica;
        let cells = mint(at, op);
        // Gossip a little: sometimes another actor learns the cell before its next write,
        // so later writes there carry contexts that cover it.
        if rng.gen_bool(0.5) {
            let other = &actors[rng.gen_range(0..actors.len())].replica;
            other.apply(&cells, mode_of).unwrap();
        }
        minted.extend(cells);
    }
    let keys: BTreeSet<(String, Vec<u8>)> = minted
        .iter()
        .map(|c| (c.table.clone(), c.key.clone()))
        .collect();
    let replicas: Vec<Node> = (0..3).map(|i| node(100 + i, partitioner)).collect();
    for r in &replicas {
        let mut order: Vec<&RawCell> = minted.iter().collect();
        // Duplicates: some cells twice.
        let dups: Vec<&RawCell> = order
            .iter()
            .filter(|_| rng.gen_bool(0.3))
            .copied()
            .collect();
        order.extend(dups);
        order.shuffle(&mut rng);
        // Applied one by one and in small groups.
        let mut i = 0;
        while i < order.len() {
            let n = rng.gen_range(1..=3).min(order.len() - i);
            let group: Vec<RawCell> = order[i..i + n].iter().map(|c| (*c).clone()).collect();
            r.replica.apply(&group, mode_of).unwrap();
            i += n;
        }
    }
    let first = state(&replicas[0].replica, &keys);
    for r in &replicas[1..] {
        prop_assert_eq!(&state(&r.replica, &keys), &first);
    }
    // Flush one replica only: the state must not change by being on disk.
    replicas[1].replica.engine().flush(None).unwrap();
    prop_assert_eq!(&state(&replicas[1].replica, &keys), &first);
    let seen = visible(&replicas[0].replica, &keys);
    // Compaction drops tombstones, expired values and what row tombstones cover; every
    // replica compacts the same, and what a client sees does not change.
    for r in &replicas {
        r.replica.engine().flush(None).unwrap();
        for (t, _) in TABLES {
            r.replica.engine().compact(t).unwrap();
        }
    }
    let compacted = state(&replicas[0].replica, &keys);
    for r in &replicas[1..] {
        prop_assert_eq!(&state(&r.replica, &keys), &compacted);
    }
    prop_assert!(compacted.1.len() <= first.1.len());
    prop_assert_eq!(visible(&replicas[0].replica, &keys), seen);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn replica_apply_is_idempotent_and_order_free(
        ops in prop::collection::vec(op(), 1..24),
        seed in any::<u64>(),
        md5 in any::<bool>(),
    ) {
        let p = if md5 { Partitioner::Md5 } else { Partitioner::Murmur3 };
        check(&ops, seed, p)?;
    }
}
