//! Unit tests of the replica: mint, apply, raw reads, digests, range scans, over a real
//! engine in a temp dir.

use std::sync::Arc;

use sibyl_protocol::ConflictMode;
use sibyl_storage::{Engine, EngineOptions, TableOptions};

use super::codec::{decode_raw_cells, encode_raw_cells};
use super::keys::RowPrefix;
use super::*;
use crate::ring::{Partitioner, Token};
use crate::versioning::{
    decode_causal_cell, CausalMerge, Clock, Context, LwwCell, LwwMerge, ManualClock,
};

const T0: i64 = 1_700_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    replica: Replica,
}

fn fixture(node: u64, partitioner: Partitioner) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_secs(T0));
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    for (name, merge) in [
        (
            "c",
            Arc::new(CausalMerge::new(clock.clone())) as Arc<dyn sibyl_storage::MergePolicy>,
        ),
        ("l", Arc::new(LwwMerge::new(clock.clone())) as _),
    ] {
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
    let replica = Replica::new(
        Arc::new(engine),
        Actor::new(node, 1),
        clock.clone(),
        partitioner,
        DotClock::in_memory(clock),
    );
    Fixture { _dir: dir, replica }
}

fn mode_of(table: &str) -> Option<ConflictMode> {
    match table {
        "c" => Some(ConflictMode::Causal),
        "l" => Some(ConflictMode::Lww),
        _ => None,
    }
}

/// Mints one cell and returns what the sink saw.
fn mint_one(
    r: &Replica,
    table: &str,
    key: &[u8],
    column: &[u8],
    value: Option<&[u8]>,
    context: Option<Context>,
) -> Vec<RawCell> {
    let mode = mode_of(table).unwrap();
    let prefix = RowPrefix::new(r.partitioner(), key);
    let row = MintRow {
        table,
        row: prefix.clone(),
        write_id: None,
        row_delete: None,
        mode,
        max_siblings: 100,
        keys: vec![prefix.cell_key(column)],
        cells: vec![MintCell { value, context }],
        timestamp_micros: 5,
        expires_at_secs: None,
    };
    let mut minted = Vec::new();
    let mut sink = |_: usize, t: &str, k: &[u8], v: &[u8]| {
        minted.push(RawCell {
            table: t.to_owned(),
            key: k.to_vec(),
            value: v.to_vec(),
        })
    };
    let results =
        r.mint_group::<_, ReplicaErrorClone>(&[Ok(row)], |_: &MintRow<'_>| Ok(()), Some(&mut sink));
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    minted
}

/// `ReplicaError` is not `Clone` (engine errors hold I/O errors); tests keep its text.
#[derive(Debug, Clone)]
struct ReplicaErrorClone(#[allow(dead_code)] String);

impl From<ReplicaError> for ReplicaErrorClone {
    fn from(e: ReplicaError) -> Self {
        ReplicaErrorClone(e.to_string())
    }
}

#[test]
fn replica_mint_hands_the_sink_exactly_the_stored_bytes() {
    let f = fixture(1, Partitioner::Murmur3);
    let minted = mint_one(&f.replica, "c", b"k", b"col", Some(b"v"), None);
    assert_eq!(minted.len(), 1);
    let stored = f.replica.read_raw("c", &minted[0].key).unwrap();
    assert_eq!(stored.as_deref(), Some(minted[0].value.as_slice()));
    let dvv = decode_causal_cell(&minted[0].value).unwrap();
    assert_eq!(dvv.sibling_count(), 1);
    // The dot counter is the node's dot clock: at least the clock in microseconds.
    assert!(dvv.join().get(&Actor::new(1, 1)) >= (T0 * 1_000_000) as u64);
}

#[test]
fn replica_apply_folds_cells_minted_elsewhere_by_merge_in_any_order() {
    let a = fixture(1, Partitioner::Murmur3);
    let b = fixture(2, Partitioner::Murmur3);
    // Concurrent writes of one cell at two nodes: both survive as siblings.
    let x = mint_one(&a.replica, "c", b"k", b"col", Some(b"x"), None);
    let y = mint_one(&b.replica, "c", b"k", b"col", Some(b"y"), None);
    let fresh1 = fixture(3, Partitioner::Murmur3);
    let fresh2 = fixture(4, Partitioner::Murmur3);
    fresh1.replica.apply(&x, mode_of).unwrap();
    fresh1.replica.apply(&y, mode_of).unwrap();
    fresh1.replica.apply(&x, mode_of).unwrap();
    fresh2.replica.apply(&y, mode_of).unwrap();
    fresh2.replica.apply(&x, mode_of).unwrap();
    let key = &x[0].key;
    let s1 = fresh1.replica.read_raw("c", key).unwrap().unwrap();
    let s2 = fresh2.replica.read_raw("c", key).unwrap().unwrap();
    assert_eq!(s1, s2);
    assert_eq!(decode_causal_cell(&s1).unwrap().sibling_count(), 2);
    assert_eq!(
        fresh1
            .replica
            .digest("c", ConflictMode::Causal, key)
            .unwrap(),
        fresh2
            .replica
            .digest("c", ConflictMode::Causal, key)
            .unwrap()
    );
    // LWW: the higher timestamp wins wherever it lands first.
    let old = RawCell {
        table: "l".into(),
        key: RowPrefix::new(Partitioner::Murmur3, b"k").cell_key(b"c"),
        value: LwwCell::value(b"old".to_vec(), 1).encode(),
    };
    let new = RawCell {
        value: LwwCell::value(b"new".to_vec(), 2).encode(),
        ..old.clone()
    };
    fresh1
        .replica
        .apply(&[new.clone(), old.clone()], mode_of)
        .unwrap();
    fresh2.replica.apply(&[old, new.clone()], mode_of).unwrap();
    for f in [&fresh1, &fresh2] {
        assert_eq!(
            f.replica.read_raw("l", &new.key).unwrap(),
            Some(new.value.clone())
        );
    }
}

#[test]
fn replica_apply_refuses_misrouted_or_garbage_cells_and_writes_nothing() {
    let f = fixture(1, Partitioner::Murmur3);
    let good = RawCell {
        table: "l".into(),
        key: RowPrefix::new(Partitioner::Murmur3, b"k").cell_key(b"c"),
        value: LwwCell::value(b"v".to_vec(), 1).encode(),
    };
    let md5_key = RawCell {
        key: RowPrefix::new(Partitioner::Md5, b"k").cell_key(b"c"),
        ..good.clone()
    };
    let mut wrong_token = good.clone();
    wrong_token.key[0] ^= 1;
    let garbage = RawCell {
        value: vec![0xD1],
        ..good.clone()
    };
    let causal_in_lww = RawCell {
        table: "c".into(),
        ..good.clone()
    };
    let unknown = RawCell {
        table: "nope".into(),
        ..good.clone()
    };
    for bad in [md5_key, wrong_token, garbage, causal_in_lww, unknown] {
        let r = f.replica.apply(&[good.clone(), bad.clone()], mode_of);
        assert!(
            matches!(r, Err(ReplicaError::InvalidCell(_))),
            "{bad:?}: {r:?}"
        );
    }
    assert_eq!(f.replica.read_raw("l", &good.key).unwrap(), None);
}

#[test]
fn replica_minted_cells_survive_the_codec() {
    let f = fixture(1, Partitioner::Md5);
    let mut cells = mint_one(&f.replica, "c", b"k", b"a", Some(b"x"), None);
    cells.extend(mint_one(&f.replica, "l", b"k", b"b", None, None));
    let mut buf = Vec::new();
    encode_raw_cells(&cells, &mut buf);
    let back = decode_raw_cells(&buf).unwrap();
    assert_eq!(back, cells);
    let other = fixture(2, Partitioner::Md5);
    other.replica.apply(&back, mode_of).unwrap();
    for c in &cells {
        assert_eq!(
            other.replica.read_raw(&c.table, &c.key).unwrap(),
            Some(c.value.clone())
        );
    }
}

#[test]
fn replica_scan_range_returns_the_range_in_ring_order() {
    let f = fixture(1, Partitioner::Md5);
    let p = Partitioner::Md5;
    let keys: Vec<Vec<u8>> = (0..50u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for k in &keys {
        mint_one(&f.replica, "l", k, b"c", Some(b"v"), None);
    }
    let mut tokens: Vec<Token> = keys.iter().map(|k| p.token(k)).collect();
    tokens.sort();
    let range = TokenRange {
        start: tokens[40],
        end: tokens[10],
    };
    let mut scan = f.replica.scan_range("l", range).unwrap();
    let mut got = Vec::new();
    while let Some((k, _)) = scan.next_entry().unwrap() {
        got.push(super::keys::split_engine_key(p, k).unwrap().token);
    }
    let expected: Vec<Token> = tokens[41..].iter().chain(&tokens[..=10]).copied().collect();
    assert_eq!(got, expected);
}

#[test]
fn replica_apply_takes_row_tombstones_only_at_a_rows_key_and_of_the_tables_mode() {
    use crate::versioning::{RowTombstone, VersionVector};
    let f = fixture(1, Partitioner::Murmur3);
    let row = RowPrefix::new(Partitioner::Murmur3, b"k");
    let causal = RowTombstone::Causal {
        seen: VersionVector::from_pairs([(Actor::new(9, 1), 3)]),
        timestamp_micros: 1,
    }
    .encode();
    let lww = RowTombstone::Lww {
        timestamp_micros: 1,
    }
    .encode();
    let cell = |table: &str, key: &[u8], value: &[u8]| RawCell {
        table: table.into(),
        key: key.to_vec(),
        value: value.to_vec(),
    };
    f.replica
        .apply(&[cell("c", row.as_bytes(), &causal)], mode_of)
        .unwrap();
    f.replica
        .apply(&[cell("l", row.as_bytes(), &lww)], mode_of)
        .unwrap();
    for bad in [
        cell("c", row.as_bytes(), &lww),
        cell("l", row.as_bytes(), &causal),
        cell("c", &row.cell_key(b"col"), &causal),
        cell(
            "l",
            row.as_bytes(),
            &LwwCell::value(b"v".to_vec(), 1).encode(),
        ),
    ] {
        let r = f.replica.apply(std::slice::from_ref(&bad), mode_of);
        assert!(
            matches!(r, Err(ReplicaError::InvalidCell(_))),
            "{bad:?}: {r:?}"
        );
    }
    // Applying the same tombstone again, or a smaller one, changes nothing.
    let smaller = RowTombstone::Causal {
        seen: VersionVector::from_pairs([(Actor::new(9, 1), 1)]),
        timestamp_micros: 0,
    }
    .encode();
    f.replica
        .apply(
            &[
                cell("c", row.as_bytes(), &smaller),
                cell("c", row.as_bytes(), &causal),
            ],
            mode_of,
        )
        .unwrap();
    assert_eq!(
        f.replica.read_raw("c", row.as_bytes()).unwrap(),
        Some(causal.clone())
    );
}

/// Regression: a dot minted above the dot clock (a context naming a counter of this
/// node above it) did not move the clock, so the node's next dot in another cell came
/// out lower, and a row delete that saw the first cell deleted the later write.
#[test]
fn replica_write_after_a_row_delete_survives_a_context_that_outran_the_dot_clock() {
    let f = fixture(1, Partitioner::Murmur3);
    let me = Actor::new(1, 1);
    let ahead = (T0 as u64) * 1_000_000 + 3_600_000_000;
    let ctx = Context::from_vv(crate::versioning::VersionVector::from_pairs([(me, ahead)]));
    mint_one(&f.replica, "c", b"k", b"a", Some(b"old"), Some(ctx));
    let prefix = delete_row_k(&f, Vec::new());
    // Written after the delete, blind, in another column: it must survive it.
    assert_write_after_the_delete_survives(&f, &prefix);
}

/// Deletes row `k` of table `c` with `contexts` (a row delete minted at this node).
fn delete_row_k(f: &Fixture, contexts: Vec<Context>) -> RowPrefix {
    let prefix = RowPrefix::new(f.replica.partitioner(), b"k");
    let delete = MintRow {
        table: "c",
        row: prefix.clone(),
        write_id: None,
        row_delete: Some(contexts),
        mode: ConflictMode::Causal,
        max_siblings: 100,
        keys: Vec::new(),
        cells: Vec::new(),
        timestamp_micros: 6,
        expires_at_secs: None,
    };
    let r =
        f.replica
            .mint_group::<_, ReplicaErrorClone>(&[Ok(delete)], |_: &MintRow<'_>| Ok(()), None);
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    prefix
}

/// Writes column `b` of row `k` blind, after a row delete: the row tombstone must not
/// cover it.
fn assert_write_after_the_delete_survives(f: &Fixture, prefix: &RowPrefix) {
    let minted = mint_one(&f.replica, "c", b"k", b"b", Some(b"after"), None);
    let tomb = f
        .replica
        .row_tombstone("c", prefix.as_bytes())
        .unwrap()
        .unwrap();
    let dvv = decode_causal_cell(&minted[0].value).unwrap();
    let left = tomb.remove_covered(&dvv).unwrap_or(dvv);
    assert_eq!(
        left.sibling_count(),
        1,
        "the write after the delete was deleted"
    );
}

/// Regression: a row delete whose context named a counter of this node above its dot
/// clock deleted the node's later writes to the row.
#[test]
fn replica_write_after_a_row_delete_survives_a_delete_context_that_outran_the_dot_clock() {
    let f = fixture(1, Partitioner::Murmur3);
    let me = Actor::new(1, 1);
    let ahead = (T0 as u64) * 1_000_000 + 3_600_000_000;
    let ctx = Context::from_vv(crate::versioning::VersionVector::from_pairs([(me, ahead)]));
    let prefix = delete_row_k(&f, vec![ctx]);
    assert_write_after_the_delete_survives(&f, &prefix);
}

/// Regression: apply asked for the table's conflict mode before it took the stripe
/// locks, so a table dropped and re-created (with another mode) in between received
/// cells checked against the old one. A drop holds every stripe: the check must run
/// under them, as a mint's recheck does.
#[test]
fn replica_apply_checks_the_table_under_the_stripe_locks() {
    let f = fixture(1, Partitioner::Murmur3);
    let cell = mint_one(&f.replica, "l", b"k", b"a", Some(b"v"), None).remove(0);
    let stripe = f.replica.stripe_of(&cell.key);
    let held = std::cell::Cell::new(true);
    f.replica
        .apply(std::slice::from_ref(&cell), |t| {
            held.set(held.get() && f.replica.stripes[stripe].try_lock().is_err());
            mode_of(t)
        })
        .unwrap();
    assert!(
        held.get(),
        "the table's mode was read outside the stripe lock"
    );
}

/// Regression: the range scan (what streaming and handoff ship) went through the read
/// filter, which hides lww tombstones and expired values: a node streamed a range would
/// not get the delete, and an older value arriving later would come back.
#[test]
fn replica_scan_range_ships_lww_tombstones() {
    let f = fixture(1, Partitioner::Murmur3);
    let deleted = mint_one(&f.replica, "l", b"k", b"a", None, None).remove(0);
    let min = f.replica.partitioner().min_token();
    let mut scan = f
        .replica
        .scan_range(
            "l",
            TokenRange {
                start: min,
                end: min,
            },
        )
        .unwrap();
    let mut got = Vec::new();
    while let Some((k, v)) = scan.next_entry().unwrap() {
        got.push((k.to_vec(), v.to_vec()));
    }
    assert_eq!(got, [(deleted.key, deleted.value)]);
}

/// Regression: a row delete joined its contexts without a bound, so contexts naming
/// more actors together than a row tombstone may hold produced a tombstone its own
/// decoder refuses (the row became unreadable). Such a delete is refused instead.
#[test]
fn replica_row_delete_refuses_contexts_naming_more_actors_than_a_tombstone_holds() {
    use crate::versioning::format::MAX_ACTORS;
    use crate::versioning::VersionVector;
    let f = fixture(1, Partitioner::Murmur3);
    let ctx = |from: u64| {
        Context::from_vv(VersionVector::from_pairs(
            (from..from + MAX_ACTORS as u64).map(|n| (Actor::new(n + 100, 1), 1)),
        ))
    };
    let prefix = RowPrefix::new(f.replica.partitioner(), b"k");
    let delete = MintRow {
        table: "c",
        row: prefix.clone(),
        write_id: None,
        row_delete: Some(vec![ctx(0), ctx(MAX_ACTORS as u64)]),
        mode: ConflictMode::Causal,
        max_siblings: 100,
        keys: Vec::new(),
        cells: Vec::new(),
        timestamp_micros: 6,
        expires_at_secs: None,
    };
    let r =
        f.replica
            .mint_group::<_, ReplicaErrorClone>(&[Ok(delete)], |_: &MintRow<'_>| Ok(()), None);
    assert!(matches!(r.as_slice(), [Err(_)]), "{r:?}");
    assert_eq!(
        f.replica.row_tombstone("c", prefix.as_bytes()).unwrap(),
        None
    );
}

#[test]
fn replica_ingested_range_reads_and_hashes_as_the_same_pages_applied() {
    use crate::replica::ingest::RangeIngest;
    let p = Partitioner::Md5;
    let source = fixture(1, p);
    let other = fixture(4, p);
    let applied = fixture(2, p);
    let ingested = fixture(3, p);
    let keys: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for k in &keys {
        mint_one(&source.replica, "c", k, b"col", Some(b"source"), None);
    }
    // Both receivers already hold concurrent versions of some keys (and one key the
    // source lacks), and track the table's hash tree.
    let mut own = Vec::new();
    for k in keys.iter().step_by(7).chain([b"only-here".to_vec()].iter()) {
        own.extend(mint_one(
            &other.replica,
            "c",
            k,
            b"col",
            Some(b"other"),
            None,
        ));
    }
    for r in [&applied.replica, &ingested.replica] {
        r.apply(&own, mode_of).unwrap();
        r.track_tree(
            "c",
            ConflictMode::Causal,
            Arc::new(CausalMerge::new(Arc::new(ManualClock::at_secs(T0)))),
            None,
        );
        r.rebuild_trees().unwrap();
    }
    // A range that wraps, streamed in pages of a few cells.
    let mut tokens: Vec<Token> = keys.iter().map(|k| p.token(k)).collect();
    tokens.sort();
    let range = TokenRange {
        start: tokens[200],
        end: tokens[120],
    };
    let mut ingest = RangeIngest::new("c", ConflictMode::Causal);
    let (mut after, mut pages, mut sent) = (None::<Vec<u8>>, 0, 0);
    loop {
        let (more, page) = crate::stream::peer::read_page(
            &source.replica,
            ConflictMode::Causal,
            "c",
            range,
            after.as_deref(),
            400,
        )
        .unwrap();
        applied.replica.apply(&page, mode_of).unwrap();
        ingested
            .replica
            .ingest_page(&mut ingest, &page, mode_of)
            .unwrap();
        pages += 1;
        sent += page.len();
        if pages == 5 {
            // A checkpoint mid-range: one file finished, the next begins.
            ingested.replica.finish_ingest(&mut ingest).unwrap();
            assert!(!ingest.is_open());
        }
        after = page.last().map(|c| c.key.clone());
        if !more {
            break;
        }
    }
    assert!(pages > 10, "{pages} pages");
    assert_eq!(sent, 300 - 200 + 120 + 1 - 1);
    ingested.replica.finish_ingest(&mut ingest).unwrap();
    assert_eq!(ingest.cells() as usize, sent);
    let stats = ingested.replica.engine().stats("c").unwrap();
    assert!(stats.sstables >= 3, "two spans and a checkpoint: {stats:?}");
    // The ingested spans' tree groups are building until rebuilt.
    let tree = ingested.replica.trees().get("c").unwrap();
    assert!(!tree.is_ready());
    ingested.replica.rebuild_trees().unwrap();
    assert!(tree.is_ready());
    let reference = applied.replica.trees().get("c").unwrap();
    let last = tree.leaf_count() - 1;
    assert_eq!(tree.leaves(0, last), reference.leaves(0, last));
    for k in keys.iter().chain([b"only-here".to_vec()].iter()) {
        let key = RowPrefix::new(p, k).cell_key(b"col");
        assert_eq!(
            ingested.replica.read_raw("c", &key).unwrap(),
            applied.replica.read_raw("c", &key).unwrap(),
            "key {k:?}"
        );
    }
}

#[test]
fn replica_ingest_refuses_a_page_with_a_bad_cell_or_another_table_and_adds_none_of_it() {
    use crate::replica::ingest::RangeIngest;
    let f = fixture(1, Partitioner::Murmur3);
    let source = fixture(2, Partitioner::Murmur3);
    let mut good = mint_one(&source.replica, "c", b"a", b"col", Some(b"v"), None);
    good.extend(mint_one(
        &source.replica,
        "c",
        b"b",
        b"col",
        Some(b"v"),
        None,
    ));
    good.sort_by(|x, y| x.key.cmp(&y.key));
    let mut ingest = RangeIngest::new("c", ConflictMode::Causal);
    let mut bad = good.clone();
    bad[1].value = b"garbage".to_vec();
    assert!(f.replica.ingest_page(&mut ingest, &bad, mode_of).is_err());
    let lww = mint_one(&source.replica, "l", b"a", b"col", Some(b"v"), None);
    assert!(f.replica.ingest_page(&mut ingest, &lww, mode_of).is_err());
    assert!(!ingest.is_open());
    f.replica.ingest_page(&mut ingest, &good, mode_of).unwrap();
    f.replica.finish_ingest(&mut ingest).unwrap();
    assert_eq!(ingest.cells(), 2);
    for c in &good {
        assert_eq!(
            f.replica.read_raw("c", &c.key).unwrap(),
            Some(c.value.clone())
        );
    }
}
