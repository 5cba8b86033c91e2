//! Builder -> file -> reader round trips: point lookups, iteration, seeks, edge cases,
//! builder errors and injected I/O faults.

use std::sync::Arc;

use super::*;
use crate::error::Error;
use crate::types::EntryRef;

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
