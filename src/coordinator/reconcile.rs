//! Reconciling what several replicas returned for one read: the merge of their stored
//! cells (the engine's own merge policy: DVV sync for causal tables, the highest
//! timestamp for lww ones; siblings survive, dominated versions go), where a slice read
//! may stop when some replica stopped early, and which cells each replica lacks (its read
//! repair).
//!
//! Every replica answer is normalised to a map from engine key to stored bytes
//! ([`ReplicaAnswer`]): the row tombstone under the row's key, each column under its cell
//! key. Engine keys of one row sort as their columns do, the tombstone first.
//!
//! Slices: a replica that stopped before the end of the range (`more`) has not said what
//! it holds past its last key, so the reconciled page ends at the smallest such last key
//! ([`cut`]); cells past it come in the next page. Repairs are computed up to the same
//! point only.

use std::collections::BTreeMap;

use sibyl_protocol::ConflictMode;
use sibyl_storage::{Entry, EntryRef, MergePolicy};

use crate::replica::keys::RowPrefix;
use crate::replica::read::cell_digest;
use crate::replica::row_read::RowCells;
use crate::replica::RawCell;

/// One replica's answer to a read, by engine key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaAnswer {
    /// Stored bytes by engine key.
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The last engine key returned, when the replica stopped before the end of the
    /// range asked for.
    pub stopped_at: Option<Vec<u8>>,
}

impl ReplicaAnswer {
    /// The answer to a read of named keys (`Found`).
    pub fn of_cells(cells: Vec<RawCell>) -> ReplicaAnswer {
        ReplicaAnswer {
            entries: cells.into_iter().map(|c| (c.key, c.value)).collect(),
            stopped_at: None,
        }
    }

    /// The answer to a row slice (`Row`) of the row `prefix`.
    pub fn of_row(prefix: &RowPrefix, row: RowCells) -> ReplicaAnswer {
        let mut entries = BTreeMap::new();
        if let Some(t) = row.tombstone {
            entries.insert(prefix.as_bytes().to_vec(), t);
        }
        let mut last = None;
        for (column, stored) in row.cells {
            let key = prefix.cell_key(&column);
            last = Some(key.clone());
            entries.insert(key, stored);
        }
        ReplicaAnswer {
            entries,
            stopped_at: if row.more { last } else { None },
        }
    }
}

/// Where a reconciled page ends: the smallest last key of the answers that stopped early
/// (`None`: every answer reached the end of the range).
pub fn cut(answers: &[&ReplicaAnswer]) -> Option<Vec<u8>> {
    answers
        .iter()
        .filter_map(|a| a.stopped_at.as_ref())
        .min()
        .cloned()
}

/// The merge of `answers` up to `cut` (inclusive).
pub fn merge(
    policy: &dyn MergePolicy,
    answers: &[&ReplicaAnswer],
    cut: Option<&[u8]>,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for answer in answers {
        for (key, stored) in &answer.entries {
            if cut.is_some_and(|c| key.as_slice() > c) {
                break;
            }
            match merged.get_mut(key) {
                None => {
                    merged.insert(key.clone(), stored.clone());
                }
                Some(have) => {
                    if let Entry::Value(v) =
                        policy.merge(key, EntryRef::Value(have), EntryRef::Value(stored))
                    {
                        *have = v;
                    }
                }
            }
        }
    }
    merged
}

/// The cells of `merged` that `answer` does not hold as merged (its canonical digest
/// differs, or it has nothing), as `(engine key, stored)`: what read repair sends it.
pub fn repairs(
    mode: ConflictMode,
    merged: &BTreeMap<Vec<u8>, Vec<u8>>,
    answer: &ReplicaAnswer,
    now_secs: u64,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    merged
        .iter()
        .filter(|(key, stored)| match answer.entries.get(*key) {
            Some(mine) => {
                cell_digest(mode, key, mine, now_secs) != cell_digest(mode, key, stored, now_secs)
            }
            None => true,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ring::Partitioner;
    use crate::versioning::{Actor, CausalMerge, LwwCell, LwwMerge, ManualClock};

    fn prefix() -> RowPrefix {
        RowPrefix::new(Partitioner::Murmur3, b"row")
    }

    fn lww(ts: i64, v: &str) -> Vec<u8> {
        LwwCell::value(v.as_bytes().to_vec(), ts).encode()
    }

    fn row(cells: &[(&str, Vec<u8>)], more: bool) -> RowCells {
        RowCells {
            tombstone: None,
            cells: cells
                .iter()
                .map(|(c, v)| (c.as_bytes().to_vec(), v.clone()))
                .collect(),
            more,
        }
    }

    #[test]
    fn lww_merge_keeps_the_newest_and_repairs_only_the_stale_replica() {
        let p = prefix();
        let policy = LwwMerge::replicated(Arc::new(ManualClock::at_secs(1_700_000_000)));
        let fresh =
            ReplicaAnswer::of_row(&p, row(&[("a", lww(2, "new")), ("b", lww(1, "b"))], false));
        let stale = ReplicaAnswer::of_row(&p, row(&[("a", lww(1, "old"))], false));
        let answers = [&fresh, &stale];
        assert_eq!(cut(&answers), None);
        let merged = merge(&policy, &answers, None);
        assert_eq!(merged.get(&p.cell_key(b"a")), Some(&lww(2, "new")));
        assert_eq!(merged.len(), 2);
        assert!(repairs(ConflictMode::Lww, &merged, &fresh, 0).is_empty());
        let fix = repairs(ConflictMode::Lww, &merged, &stale, 0);
        assert_eq!(
            fix,
            vec![
                (p.cell_key(b"a"), lww(2, "new")),
                (p.cell_key(b"b"), lww(1, "b"))
            ]
        );
    }

    #[test]
    fn a_replica_that_stopped_early_cuts_the_page_and_its_repairs() {
        let p = prefix();
        let policy = LwwMerge::replicated(Arc::new(ManualClock::at_secs(1_700_000_000)));
        let short = ReplicaAnswer::of_row(&p, row(&[("a", lww(1, "a")), ("c", lww(1, "c"))], true));
        let long = ReplicaAnswer::of_row(
            &p,
            row(
                &[("a", lww(1, "a")), ("b", lww(1, "b")), ("d", lww(1, "d"))],
                false,
            ),
        );
        let answers = [&short, &long];
        let c = cut(&answers).unwrap();
        assert_eq!(c, p.cell_key(b"c"));
        let merged = merge(&policy, &answers, Some(&c));
        let columns: Vec<&[u8]> = merged.keys().filter_map(|k| p.column_of(k)).collect();
        assert_eq!(columns, vec![&b"a"[..], b"b", b"c"]);
        // "d" lies past the cut: not repaired on the short replica from this page.
        let fix = repairs(ConflictMode::Lww, &merged, &short, 0);
        assert_eq!(fix, vec![(p.cell_key(b"b"), lww(1, "b"))]);
        let fix = repairs(ConflictMode::Lww, &merged, &long, 0);
        assert_eq!(fix, vec![(p.cell_key(b"c"), lww(1, "c"))]);
    }

    #[test]
    fn causal_merge_keeps_concurrent_siblings() {
        use crate::versioning::{encode_causal_cell, Dvv, Sibling, VersionVector};
        let clock: Arc<dyn crate::versioning::Clock> =
            Arc::new(ManualClock::at_secs(1_700_000_000));
        let policy = CausalMerge::replicated(clock);
        let p = prefix();
        let empty = VersionVector::default();
        let a = Dvv::new().update(&empty, Sibling::value(b"x".to_vec(), 10), Actor::new(1, 1));
        let b = Dvv::new().update(&empty, Sibling::value(b"y".to_vec(), 11), Actor::new(2, 1));
        let k = p.cell_key(b"c");
        let one = ReplicaAnswer::of_cells(vec![RawCell {
            table: "t".into(),
            key: k.clone(),
            value: encode_causal_cell(&a),
        }]);
        let two = ReplicaAnswer::of_cells(vec![RawCell {
            table: "t".into(),
            key: k.clone(),
            value: encode_causal_cell(&b),
        }]);
        let merged = merge(&policy, &[&one, &two], None);
        let dvv = crate::versioning::decode_causal_cell(&merged[&k]).unwrap();
        assert_eq!(dvv.values().len(), 2);
        assert_eq!(repairs(ConflictMode::Causal, &merged, &one, 0).len(), 1);
        assert_eq!(repairs(ConflictMode::Causal, &merged, &two, 0).len(), 1);
    }
}
