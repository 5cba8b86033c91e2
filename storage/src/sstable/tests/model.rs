//! The table against a `BTreeMap` model: random key sets, block shapes, point lookups and
//! sequences of seeks and steps.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    First,
    Last,
    Seek(Vec<u8>),
    SeekForPrev(Vec<u8>),
    Next,
    Prev,
}

fn small_key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec![b'a', b'b', b'c', 0u8, 0xff]),
        0..6,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::First),
        1 => Just(Op::Last),
        2 => small_key().prop_map(Op::Seek),
        2 => small_key().prop_map(Op::SeekForPrev),
        4 => Just(Op::Next),
        4 => Just(Op::Prev),
    ]
}

fn apply_model(model: &Model, pos: Option<usize>, op: &Op) -> Option<usize> {
    let n = model.len();
    match op {
        Op::First => (n > 0).then_some(0),
        Op::Last => n.checked_sub(1),
        Op::Seek(k) => {
            let i = model.range::<Vec<u8>, _>(..k).count();
            (i < n).then_some(i)
        }
        Op::SeekForPrev(k) => model.range::<Vec<u8>, _>(..=k).count().checked_sub(1),
        Op::Next => pos.and_then(|i| (i + 1 < n).then_some(i + 1)),
        Op::Prev => pos.and_then(|i| i.checked_sub(1)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn sstable_matches_btreemap_model(
        entries in prop::collection::btree_map(
            small_key(),
            (0u64..1000, prop::option::of(prop::collection::vec(any::<u8>(), 0..40))),
            0..200,
        ),
        ops in prop::collection::vec(op(), 1..80),
        block_size in 32usize..300,
        restart_interval in 1usize..5,
        probes in prop::collection::vec(small_key(), 0..20),
    ) {
        let model: Model = entries
            .into_iter()
            .map(|(k, (s, v))| (k, (s, v.map_or(Entry::Tombstone, Entry::Value))))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let opts = SsTableOptions { block_size, restart_interval, bloom_bits_per_key: 10 };
        write_table(&path, &model, opts);
        let t = SsTable::open(&path).unwrap();
        for k in model.keys().chain(probes.iter()) {
            let want = model.get(k).map(|(s, e)| (*s, e.as_ref()));
            prop_assert_eq!(t.get(k).unwrap(), want);
        }
        let mut it = t.iter();
        let mut pos = None;
        for op in &ops {
            match op {
                Op::First => it.seek_to_first().unwrap(),
                Op::Last => it.seek_to_last().unwrap(),
                Op::Seek(k) => it.seek(k).unwrap(),
                Op::SeekForPrev(k) => it.seek_for_prev(k).unwrap(),
                Op::Next => it.next().unwrap(),
                Op::Prev => it.prev().unwrap(),
            }
            pos = apply_model(&model, pos, op);
            prop_assert_eq!(current(&it), model_at(&model, pos), "after {:?}", op);
        }
    }
}
