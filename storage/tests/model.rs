//! Model test: random puts, deletes, range scans (both directions), flushes, compactions
//! and reopens, checked against a `BTreeMap` that applies the same merge rule. Runs once
//! with newest-wins and once with a set-union merge policy, under both compaction
//! strategies, with a tiny memtable so that background flushes and compactions race the
//! foreground operations.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use proptest::prelude::*;
use sibyl_storage::compaction::CompactionStrategy;
use sibyl_storage::{
    Direction, Engine, EngineOptions, Entry, EntryRef, MergePolicy, NewestWins, TableOptions,
};

/// Set union of the bytes of all versions; a tombstone is the identity. Associative and
/// not newest-wins, so reads, flushes and compactions must fold every version (a policy
/// where a tombstone resets older versions must encode the reset inside its values, as
/// the node's DVV and LWW cells do: see `MergePolicy`).
struct Union;

impl MergePolicy for Union {
    fn merge(&self, _key: &[u8], older: EntryRef<'_>, newer: EntryRef<'_>) -> Entry {
        match (older, newer) {
            (EntryRef::Value(a), EntryRef::Value(b)) => {
                let mut v: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
                v.sort_unstable();
                v.dedup();
                Entry::Value(v)
            }
            (EntryRef::Tombstone, n) => n.to_owned(),
            (o, EntryRef::Tombstone) => o.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Get(u8),
    Scan(u8, u8, bool),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, v)| Op::Put(k % 64, v)),
        3 => any::<u8>().prop_map(|k| Op::Delete(k % 64)),
        3 => any::<u8>().prop_map(|k| Op::Get(k % 64)),
        2 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(a, b, r)| Op::Scan(a % 70, b % 70, r)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("key{k:03}").into_bytes()
}

fn run(ops: Vec<Op>, concat: bool, leveled: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy: Arc<dyn MergePolicy> = if concat {
        Arc::new(Union)
    } else {
        Arc::new(NewestWins)
    };
    let resolver_policy = policy.clone();
    let opts = EngineOptions {
        memtable_size: 2 << 10,
        segment_size: 4 << 10,
        merge_resolver: Arc::new(move |_, _| resolver_policy.clone()),
        ..EngineOptions::default()
    };
    let compaction = if leveled {
        CompactionStrategy::Leveled {
            l0_trigger: 2,
            target_file_size: 2 << 10,
            level_base_bytes: 4 << 10,
            level_multiplier: 3,
        }
    } else {
        CompactionStrategy::SizeTiered {
            min_threshold: 2,
            max_threshold: 8,
            bucket_low: 0.5,
            bucket_high: 1.5,
            min_sstable_size: 1 << 10,
        }
    };
    let mut engine = Some(Engine::open(dir.path(), opts.clone()).expect("open"));
    engine
        .as_ref()
        .expect("engine")
        .create_table(
            "t",
            TableOptions {
                compaction,
                merge: policy.clone(),
                metadata: vec![],
                prefix_bloom_len: Some(5),
            },
        )
        .expect("create");
    // The model: merged entry per key, tombstones kept (they hide values).
    let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
    for op in ops {
        let e = engine.as_ref().expect("engine");
        match op {
            Op::Put(k, v) => {
                e.put("t", &key(k), &v).expect("put");
                let new = Entry::Value(v);
                let merged = match model.get(&key(k)) {
                    Some(old) => policy.merge(&key(k), old.as_ref(), new.as_ref()),
                    None => new,
                };
                model.insert(key(k), merged);
            }
            Op::Delete(k) => {
                e.delete("t", &key(k)).expect("delete");
                let merged = match model.get(&key(k)) {
                    Some(old) => policy.merge(&key(k), old.as_ref(), EntryRef::Tombstone),
                    None => Entry::Tombstone,
                };
                model.insert(key(k), merged);
            }
            Op::Get(k) => {
                let want = match model.get(&key(k)) {
                    Some(Entry::Value(v)) => Some(v.clone()),
                    _ => None,
                };
                prop_assert_eq!(e.get("t", &key(k)).expect("get"), want, "get {}", k);
            }
            Op::Scan(a, b, reverse) => {
                let (lo, hi) = (key(a.min(b)), key(a.max(b)));
                let dir = if reverse {
                    Direction::Reverse
                } else {
                    Direction::Forward
                };
                let got: Vec<(Vec<u8>, Vec<u8>)> = e
                    .scan("t", Bound::Included(&lo), Bound::Excluded(&hi), dir)
                    .expect("scan")
                    .collect::<Result<_, _>>()
                    .expect("scan entries");
                let mut want: Vec<(Vec<u8>, Vec<u8>)> = model
                    .range(lo.clone()..hi.clone())
                    .filter_map(|(k, v)| match v {
                        Entry::Value(v) => Some((k.clone(), v.clone())),
                        Entry::Tombstone => None,
                    })
                    .collect();
                if reverse {
                    want.reverse();
                }
                prop_assert_eq!(got, want, "scan {:?}..{:?} reverse={}", lo, hi, reverse);
            }
            Op::Flush => e.flush(None).expect("flush"),
            Op::Compact => e.compact("t").expect("compact"),
            Op::Reopen => {
                drop(engine.take());
                engine = Some(Engine::open(dir.path(), opts.clone()).expect("reopen"));
            }
        }
    }
    // Final full comparison, both directions.
    let e = engine.as_ref().expect("engine");
    let want: Vec<(Vec<u8>, Vec<u8>)> = model
        .iter()
        .filter_map(|(k, v)| match v {
            Entry::Value(v) => Some((k.clone(), v.clone())),
            Entry::Tombstone => None,
        })
        .collect();
    let got: Vec<(Vec<u8>, Vec<u8>)> = e
        .scan("t", Bound::Unbounded, Bound::Unbounded, Direction::Forward)
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("entries");
    prop_assert_eq!(&got, &want);
    let mut rev: Vec<(Vec<u8>, Vec<u8>)> = e
        .scan("t", Bound::Unbounded, Bound::Unbounded, Direction::Reverse)
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("entries");
    rev.reverse();
    prop_assert_eq!(rev, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn model_newest_wins_size_tiered(ops in prop::collection::vec(op(), 1..300)) {
        run(ops, false, false)?;
    }

    #[test]
    fn model_newest_wins_leveled(ops in prop::collection::vec(op(), 1..300)) {
        run(ops, false, true)?;
    }

    #[test]
    fn model_merge_policy_size_tiered(ops in prop::collection::vec(op(), 1..300)) {
        run(ops, true, false)?;
    }

    #[test]
    fn model_merge_policy_leveled(ops in prop::collection::vec(op(), 1..300)) {
        run(ops, true, true)?;
    }
}
