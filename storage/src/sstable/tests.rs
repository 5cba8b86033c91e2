//! Tests of the table as a whole: builder -> file -> reader and iterator, the model test
//! against a `BTreeMap`, and corrupt / truncated / foreign files.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use rand::{Rng, RngCore, SeedableRng};

use super::format::{FOOTER_LEN, HANDLE_LEN, HEADER_LEN};
use super::{SsTable, SsTableBuilder, SsTableIter, SsTableOptions};
use crate::error::Error;
use crate::fault::Faults;
use crate::types::{Entry, EntryRef, SeqNo};

type Model = BTreeMap<Vec<u8>, (SeqNo, Entry)>;

fn write_table(path: &Path, model: &Model, opts: SsTableOptions) -> super::SsTableInfo {
    let mut b = SsTableBuilder::create(path, opts, Arc::new(Faults::default())).unwrap();
    for (k, (s, e)) in model {
        b.add(k, *s, e.as_ref()).unwrap();
    }
    assert_eq!(b.entries(), model.len() as u64);
    b.finish().unwrap()
}

fn key(i: u32) -> Vec<u8> {
    format!("key{:08}", i * 2).into_bytes()
}

/// Keys key00000000, key00000002, ... (even numbers, so odd ones fall between), with
/// values of varied length and a tombstone every 7th key.
fn sample(n: u32) -> Model {
    (0..n)
        .map(|i| {
            let e = if i % 7 == 3 {
                Entry::Tombstone
            } else {
                Entry::Value(vec![b'a' + (i % 26) as u8; (i % 50) as usize])
            };
            (key(i), (u64::from(i) + 100, e))
        })
        .collect()
}

fn small_blocks() -> SsTableOptions {
    SsTableOptions {
        block_size: 512,
        restart_interval: 4,
        bloom_bits_per_key: 10,
    }
}

fn build(n: u32, opts: SsTableOptions) -> (tempfile::TempDir, PathBuf, Model, Arc<SsTable>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let model = sample(n);
    write_table(&path, &model, opts);
    let t = SsTable::open(&path).unwrap();
    (dir, path, model, t)
}

fn current(it: &SsTableIter) -> Option<(Vec<u8>, SeqNo, Entry)> {
    it.valid()
        .then(|| (it.key().to_vec(), it.seqno(), it.entry().to_owned()))
}

fn model_at(model: &Model, i: Option<usize>) -> Option<(Vec<u8>, SeqNo, Entry)> {
    let (k, (s, e)) = model.iter().nth(i?)?;
    Some((k.clone(), *s, e.clone()))
}

#[test]
fn sstable_round_trips_many_keys_with_point_lookups() {
    let (_d, _p, model, t) = build(5000, SsTableOptions::default());
    assert!(t.num_blocks() > 10, "only {} blocks", t.num_blocks());
    for (k, (s, e)) in &model {
        let got = t.get(k).unwrap();
        assert_eq!(got, Some((*s, e.as_ref())), "key {k:?}");
    }
}

#[test]
fn sstable_get_misses_absent_keys() {
    let (_d, _p, _model, t) = build(5000, SsTableOptions::default());
    for i in 0..5000u32 {
        let between = format!("key{:08}", i * 2 + 1).into_bytes();
        assert_eq!(t.get(&between).unwrap(), None);
    }
    for k in [
        &b""[..],
        b"a",
        b"key",
        b"key0000000",
        b"key99999999",
        b"zzz",
    ] {
        assert_eq!(t.get(k).unwrap(), None, "{k:?}");
    }
}

#[test]
fn sstable_info_is_read_back_from_properties() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let model = sample(1000);
    let written = write_table(&path, &model, small_blocks());
    let t = SsTable::open(&path).unwrap();
    assert_eq!(t.info(), &written);
    assert_eq!(t.path(), path.as_path());
    let info = t.info();
    assert_eq!(info.entries, 1000);
    assert_eq!(
        info.tombstones,
        model
            .values()
            .filter(|(_, e)| *e == Entry::Tombstone)
            .count() as u64
    );
    assert_eq!(info.smallest, key(0));
    assert_eq!(info.largest, key(999));
    assert_eq!((info.min_seqno, info.max_seqno), (100, 1099));
    assert_eq!(info.file_size, std::fs::metadata(&path).unwrap().len());
}

#[test]
fn sstable_iterates_forward_and_backward_across_blocks() {
    let (_d, _p, model, t) = build(2000, small_blocks());
    let mut it = t.iter();
    assert!(!it.valid());
    it.seek_to_first().unwrap();
    let mut fwd = Vec::new();
    while let Some(c) = current(&it) {
        fwd.push(c);
        it.next().unwrap();
    }
    let expect: Vec<_> = (0..model.len())
        .map(|i| model_at(&model, Some(i)).unwrap())
        .collect();
    assert_eq!(fwd, expect);

    it.seek_to_last().unwrap();
    let mut back = Vec::new();
    while let Some(c) = current(&it) {
        back.push(c);
        it.prev().unwrap();
    }
    back.reverse();
    assert_eq!(back, expect);
}

#[test]
fn sstable_iterator_alternates_next_and_prev_at_block_boundaries() {
    let (_d, _p, model, t) = build(600, small_blocks());
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    let mut it = t.iter();
    it.seek_to_first().unwrap();
    for i in 0..keys.len() - 1 {
        assert_eq!(it.key(), keys[i].as_slice());
        it.next().unwrap();
        assert_eq!(it.key(), keys[i + 1].as_slice());
        it.prev().unwrap();
        assert_eq!(it.key(), keys[i].as_slice());
        it.next().unwrap();
    }
    it.next().unwrap();
    assert!(!it.valid());
}

#[test]
fn sstable_seek_at_between_before_and_after() {
    let (_d, _p, _model, t) = build(3000, small_blocks());
    let mut it = t.iter();
    for i in [0u32, 1, 17, 500, 1499, 2998, 2999] {
        it.seek(&key(i)).unwrap();
        assert_eq!(it.key(), key(i).as_slice());
        let between = format!("key{:08}", i * 2 + 1).into_bytes();
        it.seek(&between).unwrap();
        if i == 2999 {
            assert!(!it.valid());
        } else {
            assert_eq!(it.key(), key(i + 1).as_slice());
        }
    }
    it.seek(b"").unwrap();
    assert_eq!(it.key(), key(0).as_slice());
    it.seek(b"zzz").unwrap();
    assert!(!it.valid());
}

#[test]
fn sstable_seek_for_prev_at_between_before_and_after() {
    let (_d, _p, _model, t) = build(3000, small_blocks());
    let mut it = t.iter();
    for i in [0u32, 1, 17, 500, 1499, 2998, 2999] {
        it.seek_for_prev(&key(i)).unwrap();
        assert_eq!(it.key(), key(i).as_slice());
        let between = format!("key{:08}", i * 2 + 1).into_bytes();
        it.seek_for_prev(&between).unwrap();
        assert_eq!(it.key(), key(i).as_slice());
    }
    it.seek_for_prev(b"a").unwrap();
    assert!(!it.valid());
    it.seek_for_prev(b"zzz").unwrap();
    assert_eq!(it.key(), key(2999).as_slice());
}

#[test]
fn sstable_tombstones_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let mut model = Model::new();
    model.insert(b"a".to_vec(), (1, Entry::Tombstone));
    model.insert(b"b".to_vec(), (2, Entry::Value(Vec::new())));
    model.insert(b"c".to_vec(), (3, Entry::Tombstone));
    let info = write_table(&path, &model, SsTableOptions::default());
    assert_eq!(info.tombstones, 2);
    let t = SsTable::open(&path).unwrap();
    assert_eq!(t.get(b"a").unwrap(), Some((1, EntryRef::Tombstone)));
    assert_eq!(t.get(b"b").unwrap(), Some((2, EntryRef::Value(b""))));
    assert_eq!(t.get(b"c").unwrap(), Some((3, EntryRef::Tombstone)));
    let mut it = t.iter();
    it.seek_to_last().unwrap();
    assert!(it.entry().is_tombstone());
}

#[test]
fn sstable_empty_key_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let mut model = Model::new();
    model.insert(Vec::new(), (7, Entry::Value(b"empty".to_vec())));
    model.insert(b"x".to_vec(), (8, Entry::Value(b"x".to_vec())));
    write_table(&path, &model, SsTableOptions::default());
    let t = SsTable::open(&path).unwrap();
    assert_eq!(t.get(b"").unwrap(), Some((7, EntryRef::Value(b"empty"))));
    let mut it = t.iter();
    it.seek_for_prev(b"a").unwrap();
    assert_eq!(it.key(), b"");
    assert_eq!(t.info().smallest, b"");
}

#[test]
fn sstable_large_values_exceed_block_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let model: Model = (0..20u32)
        .map(|i| {
            (
                key(i),
                (1, Entry::Value(vec![i as u8; 10_000 + i as usize * 1000])),
            )
        })
        .collect();
    write_table(&path, &model, SsTableOptions::default());
    let t = SsTable::open(&path).unwrap();
    for (k, (s, e)) in &model {
        assert_eq!(t.get(k).unwrap(), Some((*s, e.as_ref())));
    }
    let mut it = t.iter();
    it.seek_to_last().unwrap();
    let mut n = 0;
    while it.valid() {
        n += 1;
        it.prev().unwrap();
    }
    assert_eq!(n, 20);
}

#[test]
fn sstable_empty_table_opens_and_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let info = write_table(&path, &Model::new(), SsTableOptions::default());
    assert_eq!(info.entries, 0);
    let t = SsTable::open(&path).unwrap();
    assert_eq!(t.get(b"a").unwrap(), None);
    let mut it = t.iter();
    it.seek_to_first().unwrap();
    assert!(!it.valid());
    it.seek_to_last().unwrap();
    assert!(!it.valid());
    it.seek_for_prev(b"z").unwrap();
    assert!(!it.valid());
}

#[test]
fn sstable_bloom_false_positive_rate_is_under_two_percent() {
    let (_d, _p, _model, t) = build(10_000, SsTableOptions::default());
    let fp = (0..10_000u32)
        .filter(|i| t.may_contain(format!("key{:08}", i * 2 + 1).as_bytes()))
        .count();
    assert!(fp < 200, "false positives: {fp} of 10000");
    assert!((0..10_000).all(|i| t.may_contain(&key(i))));
}

#[test]
fn sstable_builder_rejects_unordered_and_duplicate_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = SsTableBuilder::create(
        &dir.path().join("t.sst"),
        SsTableOptions::default(),
        Arc::new(Faults::default()),
    )
    .unwrap();
    b.add(b"b", 1, EntryRef::Value(b"1")).unwrap();
    assert!(matches!(
        b.add(b"b", 2, EntryRef::Tombstone),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.add(b"a", 2, EntryRef::Tombstone),
        Err(Error::InvalidArgument(_))
    ));
    b.add(b"c", 3, EntryRef::Tombstone).unwrap();
    assert_eq!(b.entries(), 2);
}

#[test]
fn sstable_abandon_removes_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let mut b = SsTableBuilder::create(
        &path,
        SsTableOptions::default(),
        Arc::new(Faults::default()),
    )
    .unwrap();
    b.add(b"a", 1, EntryRef::Value(b"1")).unwrap();
    assert!(b.estimated_size() > 0);
    assert!(path.exists());
    b.abandon();
    assert!(!path.exists());
}

#[test]
fn sstable_injected_write_failure_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let faults = Arc::new(Faults::default());
    let mut b = SsTableBuilder::create(&path, small_blocks(), faults.clone()).unwrap();
    faults.set_fail_write(true);
    let mut res = Ok(());
    for i in 0..1000 {
        res = b.add(&key(i), 1, EntryRef::Value(b"v"));
        if res.is_err() {
            break;
        }
    }
    assert!(matches!(res, Err(Error::Io { .. })), "{res:?}");
    drop(b);
    assert!(!path.exists());
}

#[test]
fn sstable_injected_fsync_failure_fails_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let faults = Arc::new(Faults::default());
    let mut b = SsTableBuilder::create(&path, small_blocks(), faults.clone()).unwrap();
    b.add(b"a", 1, EntryRef::Value(b"v")).unwrap();
    faults.set_fail_fsync(true);
    assert!(matches!(b.finish(), Err(Error::Io { .. })));
}

// ---- corruption ----

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn sstable_bit_flip_in_data_block_fails_get_with_checksum_mismatch() {
    let (_d, path, _model, _t) = build(2000, small_blocks());
    drop(_t);
    flip(&path, HEADER_LEN + 40);
    let t = SsTable::open(&path).unwrap();
    match t.get(&key(0)) {
        Err(Error::ChecksumMismatch {
            path: p, offset, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, HEADER_LEN as u64);
        }
        other => panic!("expected checksum mismatch, got {other:?}"),
    }
    // Other blocks still read.
    assert!(t.get(&key(1999)).unwrap().is_some());
}

#[test]
fn sstable_bit_flip_in_data_block_fails_iteration_with_checksum_mismatch() {
    let (_d, path, _model, _t) = build(2000, small_blocks());
    drop(_t);
    flip(&path, HEADER_LEN + 40);
    let t = SsTable::open(&path).unwrap();
    let mut it = t.iter();
    assert!(matches!(
        it.seek_to_first(),
        Err(Error::ChecksumMismatch { .. })
    ));
    assert!(!it.valid());
    // Walking backwards from the end reaches the bad block and fails there.
    it.seek_to_last().unwrap();
    let err = loop {
        match it.prev() {
            Ok(()) => assert!(it.valid(), "iteration ended without reaching the bad block"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
}

#[test]
fn sstable_bit_flip_in_index_fails_open() {
    let (_d, path, _model, _t) = build(500, small_blocks());
    drop(_t);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let bytes = std::fs::read(&path).unwrap();
    let footer = super::format::Footer::decode(&bytes[len - FOOTER_LEN..]).unwrap();
    flip(&path, footer.index.offset as usize + 3);
    assert!(
        matches!(SsTable::open(&path), Err(Error::ChecksumMismatch { offset, .. }) if offset == footer.index.offset)
    );
}

#[test]
fn sstable_truncated_file_fails_open_with_typed_error() {
    let (_d, path, _model, _t) = build(500, small_blocks());
    drop(_t);
    let bytes = std::fs::read(&path).unwrap();
    for cut in [
        0,
        5,
        HEADER_LEN,
        FOOTER_LEN + HEADER_LEN - 1,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match SsTable::open(&path) {
            Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
            other => panic!("cut at {cut}: expected corruption, got {other:?}"),
        }
    }
}

#[test]
fn sstable_bad_magic_fails_open_with_corruption() {
    let (_d, path, _model, _t) = build(10, small_blocks());
    drop(_t);
    flip(&path, 0);
    assert!(matches!(
        SsTable::open(&path),
        Err(Error::Corruption { offset: 0, .. })
    ));
}

#[test]
fn sstable_unknown_version_fails_open() {
    let (_d, path, _model, _t) = build(10, small_blocks());
    drop(_t);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    flip(&path, len - FOOTER_LEN + 3 * HANDLE_LEN + 4);
    assert!(matches!(
        SsTable::open(&path),
        Err(Error::UnsupportedVersion { version: 5, .. })
    ));
}

#[test]
fn sstable_random_garbage_never_panics_open() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.sst");
    for _ in 0..300 {
        let len = rng.gen_range(0..400);
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut b);
        // Half the time, make it look like a table at both ends.
        if rng.gen_bool(0.5) && len >= FOOTER_LEN + HEADER_LEN {
            b[..8].copy_from_slice(&super::format::MAGIC);
            b[len - 8..].copy_from_slice(&super::format::MAGIC);
        }
        std::fs::write(&path, &b).unwrap();
        assert!(SsTable::open(&path).is_err(), "seed {seed}: garbage opened");
    }
}

/// Damages random bytes of a valid table and reads everything: errors are fine, panics
/// are not. Half the time the damaged block's crc is recomputed, so that the decoders'
/// own bounds checks (not the crc) must catch the damage.
#[test]
fn sstable_damaged_tables_never_panic_readers() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let model = sample(300);
    write_table(&path, &model, small_blocks());
    let good = std::fs::read(&path).unwrap();
    let footer = super::format::Footer::decode(&good[good.len() - FOOTER_LEN..]).unwrap();
    let mut blocks: Vec<(usize, usize)> = {
        let t = SsTable::open(&path).unwrap();
        (0..t.num_blocks())
            .map(|i| t.data_block_range(i).unwrap())
            .collect()
    };
    for h in [footer.bloom, footer.index, footer.properties] {
        blocks.push((h.offset as usize, h.size as usize));
    }
    let mut opened = 0;
    for _ in 0..400 {
        let mut b = good.clone();
        let (start, size) = blocks[rng.gen_range(0..blocks.len())];
        if size == 0 {
            continue;
        }
        for _ in 0..rng.gen_range(1..4) {
            let at = start + rng.gen_range(0..size);
            b[at] = rng.gen();
        }
        if rng.gen_bool(0.5) {
            let crc = crc32fast::hash(&b[start..start + size]);
            b[start + size..start + size + 4].copy_from_slice(&crc.to_le_bytes());
        }
        std::fs::write(&path, &b).unwrap();
        let Ok(t) = SsTable::open(&path) else {
            continue;
        };
        opened += 1;
        for k in model.keys().step_by(7) {
            let _ = t.get(k);
        }
        let mut it = t.iter();
        let _ = it.seek_to_first();
        let mut steps = 0;
        while it.valid() && it.next().is_ok() {
            steps += 1;
            assert!(
                steps <= 10 * model.len(),
                "seed {seed}: forward scan does not end"
            );
        }
        let _ = it.seek_to_last();
        while it.valid() && it.prev().is_ok() {
            steps += 1;
            assert!(
                steps <= 20 * model.len(),
                "seed {seed}: backward scan does not end"
            );
        }
        let _ = it.seek(b"key00000301");
        let _ = it.seek_for_prev(b"key00000301");
    }
    assert!(
        opened > 0,
        "seed {seed}: no damaged table opened; test exercised nothing"
    );
}

/// The worked example of `storage/doc/sstable_format.md`, byte for byte: a format change
/// must show up here (and needs a new version and an updated spec).
#[test]
fn sstable_format_matches_documented_example() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let mut model = Model::new();
    model.insert(b"apple".to_vec(), (1, Entry::Value(b"red".to_vec())));
    model.insert(b"apricot".to_vec(), (2, Entry::Tombstone));
    model.insert(b"banana".to_vec(), (3, Entry::Value(b"yellow".to_vec())));
    let opts = SsTableOptions {
        block_size: 4096,
        restart_interval: 2,
        bloom_bits_per_key: 10,
    };
    write_table(&path, &model, opts);
    let hex = "
        53 69 62 79 6c 53 53 54 01 00 00 00 00 05 03 00
        01 61 70 70 6c 65 72 65 64 02 05 00 01 02 72 69
        63 6f 74 00 06 06 00 03 62 61 6e 61 6e 61 79 65
        6c 6c 6f 77 00 00 00 00 17 00 00 00 02 00 00 00
        4e ff 30 6a 82 84 18 44 d1 60 88 84 07 aa 0e 3d
        18 06 62 61 6e 61 6e 61 0c 34 01 00 00 00 94 cf
        eb 0d 03 01 01 01 03 05 61 70 70 6c 65 06 62 61
        6e 61 6e 61 e8 dd bf 34 44 00 00 00 00 00 00 00
        09 00 00 00 00 00 00 00 51 00 00 00 00 00 00 00
        0d 00 00 00 00 00 00 00 62 00 00 00 00 00 00 00
        12 00 00 00 00 00 00 00 87 99 4d 9e 01 00 00 00
        53 69 62 79 6c 53 53 54";
    let expect: Vec<u8> = hex
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(std::fs::read(&path).unwrap(), expect);
    let t = SsTable::open(&path).unwrap();
    assert_eq!(t.get(b"apricot").unwrap(), Some((2, EntryRef::Tombstone)));
}

// ---- model test ----

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

#[test]
fn sstable_types_are_send_and_sync_as_documented() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<SsTable>();
    send::<SsTableIter>();
    send::<SsTableBuilder>();
}

#[test]
fn sstable_estimated_size_tracks_final_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sst");
    let mut b = SsTableBuilder::create(
        &path,
        SsTableOptions::default(),
        Arc::new(Faults::default()),
    )
    .unwrap();
    let mut last = 0;
    for (k, (s, e)) in &sample(5000) {
        b.add(k, *s, e.as_ref()).unwrap();
        assert!(b.estimated_size() >= last);
        last = b.estimated_size();
    }
    let info = b.finish().unwrap();
    let diff = info.file_size.abs_diff(last);
    assert!(
        diff * 20 < info.file_size,
        "estimate {last}, actual {}",
        info.file_size
    );
}
