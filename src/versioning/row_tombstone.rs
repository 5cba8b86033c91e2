//! Row tombstones: a delete of a whole row that also covers columns the deleting node has
//! never seen, so a row delete holds on every replica.
//!
//! A row tombstone is stored at the row's engine key with an empty column (the row prefix
//! itself; column names are never empty, so it sorts before every column of its row).
//! Its format is in [`super::format`].
//!
//! # Meaning
//! - **lww tables** (Cassandra's partition deletion): a timestamp `T`. A cell of the row
//!   whose timestamp is `<= T` is deleted, whatever column it is in and whenever it
//!   arrives; a cell with a higher timestamp survives. Two row tombstones merge to the
//!   higher timestamp.
//! - **causal tables**: a version vector `S`, what the delete saw: the contexts the client
//!   sent with it, joined with every version of every cell of the row the deleting node
//!   held, and the row tombstone it already held. A sibling with dot `(actor, c)` in any
//!   column of the row is deleted iff `c <= S[actor]`; a sibling whose dot is above `S`
//!   — a write the delete did not see — survives. Two row tombstones merge to the
//!   pointwise maximum (`S1 ∪ S2`), so the merge is commutative, associative and
//!   idempotent, like DVV sync.
//!
//!   This is exact because a dot counter is a position in its actor's history, not a
//!   per-cell count: a node mints every dot above its dot clock, which increases across
//!   all the cells it writes (`crate::replica::Replica::next_dot_floor`). So a dot
//!   `(actor, c)` with `c <= S[actor]` was minted before the write of `actor` the delete
//!   saw — it happened before the delete (by the actor's own order), even in a column the
//!   deleting node never received, and is deleted; a dot above `S[actor]` was minted
//!   after, without the delete's knowledge, and survives. So a write after the delete,
//!   at any node, survives it without that node reading (or holding) the tombstone. A
//!   read hands out `S` merged into every cell's context, so a write made with such a
//!   context also drops the covered siblings it supersedes (they are deleted anyway).
//!
//!   The dot clock never goes back, within a process or across restarts (it persists a
//!   reservation ahead of its last value; a lost reservation means a new actor epoch).
//!
//!   Cost of the exact semantics: dot counters are clock-sized (about 2^51), so each
//!   actor entry of a causal cell and of a context takes about 7 bytes more than a small
//!   per-cell count would.
//!
//! Reads and slices skip what the row tombstone covers; compaction drops it
//! ([`super::policy`]'s compaction filter). Row tombstones themselves are never purged
//! yet: purging one needs every replica to have it and no older version of the row left
//! anywhere (the repair watermark of the cluster issues, DESIGN §6); until then it costs a
//! few bytes per deleted row.

use sibyl_coding::{put_varint, ByteReader};

use super::actor::Actor;
use super::dvv::{Dvv, DvvEntry};
use super::format::{
    ACTOR_LEN, CAUSAL_ROW_TOMBSTONE_V1, LWW_ROW_TOMBSTONE_V1, MAX_ACTORS, MAX_CELL_COUNTER,
};
use super::lww::LwwCell;
use super::vv::VersionVector;
use super::VersioningError;

/// A whole-row delete. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RowTombstone {
    /// A causal table's row tombstone.
    Causal {
        /// What the delete(s) saw.
        seen: VersionVector,
        /// When the newest delete merged in was accepted, microseconds (informational).
        timestamp_micros: i64,
    },
    /// An lww table's row tombstone.
    Lww {
        /// Cells at or below this timestamp are deleted.
        timestamp_micros: i64,
    },
}

fn corrupt(reason: &'static str) -> VersioningError {
    VersioningError::CorruptCell {
        kind: "row tombstone",
        reason,
    }
}

/// True when `stored` is encoded as a row tombstone (by its first byte); a cheap test,
/// not a validation.
pub fn is_row_tombstone(stored: &[u8]) -> bool {
    matches!(
        stored.first(),
        Some(&CAUSAL_ROW_TOMBSTONE_V1) | Some(&LWW_ROW_TOMBSTONE_V1)
    )
}

impl RowTombstone {
    /// Encodes the tombstone.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            RowTombstone::Causal {
                seen,
                timestamp_micros,
            } => {
                let mut b = Vec::with_capacity(1 + 8 + 1 + seen.len() * (ACTOR_LEN + 4));
                b.push(CAUSAL_ROW_TOMBSTONE_V1);
                b.extend_from_slice(&timestamp_micros.to_le_bytes());
                put_varint(&mut b, seen.len() as u64);
                for (actor, n) in seen.entries() {
                    actor.encode_to(&mut b);
                    put_varint(&mut b, *n);
                }
                b
            }
            RowTombstone::Lww { timestamp_micros } => {
                let mut b = Vec::with_capacity(9);
                b.push(LWW_ROW_TOMBSTONE_V1);
                b.extend_from_slice(&timestamp_micros.to_le_bytes());
                b
            }
        }
    }

    /// Decodes a tombstone, checking every rule of the format; never panics.
    pub fn decode(bytes: &[u8]) -> Result<RowTombstone, VersioningError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(corrupt("empty"))?;
        let ts = r.u64_le().ok_or(corrupt("truncated timestamp"))? as i64;
        let out = match kind {
            LWW_ROW_TOMBSTONE_V1 => RowTombstone::Lww {
                timestamp_micros: ts,
            },
            CAUSAL_ROW_TOMBSTONE_V1 => {
                let n = r.varint().ok_or(corrupt("truncated count"))?;
                let n = usize::try_from(n).map_err(|_| corrupt("too many actors"))?;
                if n > MAX_ACTORS {
                    return Err(corrupt("too many actors"));
                }
                if n.saturating_mul(ACTOR_LEN + 1) > r.remaining() {
                    return Err(corrupt("count exceeds tombstone length"));
                }
                let mut entries: Vec<(Actor, u64)> = Vec::with_capacity(n);
                for _ in 0..n {
                    let a = Actor::decode_from(&mut r).ok_or(corrupt("truncated actor"))?;
                    if entries.last().is_some_and(|(p, _)| *p >= a) {
                        return Err(corrupt("actors not strictly ascending"));
                    }
                    let c = r.varint().ok_or(corrupt("truncated counter"))?;
                    if c == 0 || c > MAX_CELL_COUNTER {
                        return Err(corrupt("counter out of range"));
                    }
                    entries.push((a, c));
                }
                RowTombstone::Causal {
                    seen: VersionVector::from_sorted_unchecked(entries),
                    timestamp_micros: ts,
                }
            }
            _ => return Err(corrupt("unknown format byte")),
        };
        if !r.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(out)
    }

    /// Merges two tombstones of one row (commutative, associative, idempotent). Tombstones
    /// of different kinds cannot meet in a well-formed table; if corruption makes them,
    /// the causal one is kept, so the merge stays commutative.
    pub fn merge(&self, other: &RowTombstone) -> RowTombstone {
        match (self, other) {
            (
                RowTombstone::Causal {
                    seen: a,
                    timestamp_micros: t,
                },
                RowTombstone::Causal {
                    seen: b,
                    timestamp_micros: u,
                },
            ) => RowTombstone::Causal {
                seen: a.merge(b),
                timestamp_micros: (*t).max(*u),
            },
            (
                RowTombstone::Lww {
                    timestamp_micros: t,
                },
                RowTombstone::Lww {
                    timestamp_micros: u,
                },
            ) => RowTombstone::Lww {
                timestamp_micros: (*t).max(*u),
            },
            (c @ RowTombstone::Causal { .. }, RowTombstone::Lww { .. })
            | (RowTombstone::Lww { .. }, c @ RowTombstone::Causal { .. }) => c.clone(),
        }
    }

    /// The version vector of a causal tombstone (empty for an lww one).
    pub fn seen(&self) -> Option<&VersionVector> {
        match self {
            RowTombstone::Causal { seen, .. } => Some(seen),
            RowTombstone::Lww { .. } => None,
        }
    }

    /// True when the tombstone deletes the lww cell `cell` (its timestamp is at or below
    /// the tombstone's). A causal tombstone deletes no lww cell.
    pub fn covers_lww(&self, cell: &LwwCell) -> bool {
        match self {
            RowTombstone::Lww { timestamp_micros } => cell.timestamp_micros <= *timestamp_micros,
            RowTombstone::Causal { .. } => false,
        }
    }

    /// `dvv` without the siblings the tombstone covers (counters kept, so the delete
    /// propagates through sync like a causal tombstone); `None` when it covers none.
    pub fn remove_covered(&self, dvv: &Dvv) -> Option<Dvv> {
        let seen = self.seen()?;
        let covered = |e: &DvvEntry, c: u64| c <= seen.get(&e.actor);
        if !dvv
            .entries
            .iter()
            .any(|e| e.dots.iter().any(|(c, _)| covered(e, *c)))
        {
            return None;
        }
        Some(Dvv {
            entries: dvv
                .entries
                .iter()
                .map(|e| DvvEntry {
                    actor: e.actor,
                    counter: e.counter,
                    dots: e
                        .dots
                        .iter()
                        .filter(|(c, _)| !covered(e, *c))
                        .cloned()
                        .collect(),
                })
                .collect(),
            superseded: dvv.superseded.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::dvv::Sibling;

    const A: Actor = Actor::new(1, 1);
    const B: Actor = Actor::new(2, 1);

    fn causal(pairs: &[(Actor, u64)], ts: i64) -> RowTombstone {
        RowTombstone::Causal {
            seen: VersionVector::from_pairs(pairs.iter().copied()),
            timestamp_micros: ts,
        }
    }

    #[test]
    fn row_tombstone_round_trips_and_matches_the_spec_example() {
        for t in [
            causal(&[], 0),
            causal(&[(A, 3), (B, 1 << 40)], -7),
            RowTombstone::Lww {
                timestamp_micros: i64::MIN,
            },
        ] {
            let b = t.encode();
            assert!(is_row_tombstone(&b));
            assert_eq!(RowTombstone::decode(&b).unwrap(), t);
        }
        assert_eq!(
            RowTombstone::Lww {
                timestamp_micros: 5
            }
            .encode(),
            [0xD2, 5, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn row_tombstone_decoder_rejects_truncation_garbage_and_disorder() {
        let b = causal(&[(A, 3), (B, 4)], 1).encode();
        for n in 0..b.len() {
            assert!(RowTombstone::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(RowTombstone::decode(&trailing).is_err());
        let mut disorder = vec![CAUSAL_ROW_TOMBSTONE_V1, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        for a in [B, A] {
            a.encode_to(&mut disorder);
            disorder.push(1);
        }
        assert!(RowTombstone::decode(&disorder).is_err());
        let mut zero = vec![CAUSAL_ROW_TOMBSTONE_V1, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        A.encode_to(&mut zero);
        zero.push(0);
        assert!(RowTombstone::decode(&zero).is_err());
        let mut huge = vec![CAUSAL_ROW_TOMBSTONE_V1, 0, 0, 0, 0, 0, 0, 0, 0];
        put_varint(&mut huge, u64::MAX);
        assert!(RowTombstone::decode(&huge).is_err());
        assert!(RowTombstone::decode(&[0xC1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn row_tombstone_merge_is_a_join() {
        let x = causal(&[(A, 3)], 1);
        let y = causal(&[(A, 1), (B, 2)], 9);
        let xy = x.merge(&y);
        assert_eq!(xy, y.merge(&x));
        assert_eq!(xy, causal(&[(A, 3), (B, 2)], 9));
        assert_eq!(xy.merge(&x), xy);
        let l = RowTombstone::Lww {
            timestamp_micros: 4,
        };
        let m = RowTombstone::Lww {
            timestamp_micros: 2,
        };
        assert_eq!(l.merge(&m), l);
        assert_eq!(m.merge(&l), l);
        assert_eq!(l.merge(&x), x.merge(&l));
    }

    #[test]
    fn causal_row_tombstone_deletes_seen_dots_and_keeps_concurrent_ones() {
        let d = Dvv::new().update(&VersionVector::new(), Sibling::value(b"a".to_vec(), 0), A);
        let d = d.update(&VersionVector::new(), Sibling::value(b"b".to_vec(), 0), A);
        let d = d.update(&VersionVector::new(), Sibling::value(b"c".to_vec(), 0), B);
        // Saw A's first write only.
        let t = causal(&[(A, 1)], 0);
        let left = t.remove_covered(&d).unwrap();
        let vals: Vec<_> = left.values().iter().map(|s| s.value.clone()).collect();
        assert_eq!(vals, [Some(b"b".to_vec()), Some(b"c".to_vec())]);
        assert_eq!(left.join(), d.join());
        assert_eq!(causal(&[(B, 0)], 0).remove_covered(&d), None);
        let lww = RowTombstone::Lww {
            timestamp_micros: 5,
        };
        assert_eq!(lww.remove_covered(&d), None);
    }

    #[test]
    fn lww_row_tombstone_deletes_cells_at_or_below_its_timestamp() {
        let t = RowTombstone::Lww {
            timestamp_micros: 5,
        };
        assert!(t.covers_lww(&LwwCell::value(b"v".to_vec(), 5)));
        assert!(t.covers_lww(&LwwCell::value(b"v".to_vec(), -1)));
        assert!(!t.covers_lww(&LwwCell::value(b"v".to_vec(), 6)));
        assert!(!causal(&[(A, 9)], 9).covers_lww(&LwwCell::value(b"v".to_vec(), 1)));
    }
}
