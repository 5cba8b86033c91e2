//! The coordinator's side of a write: turning a client's value (and context) into the cell
//! that is stored locally and sent to the other replicas.
//!
//! # Causal writes are read-modify-write under a per-key lock
//! The coordinator reads its stored cell, calls [`prepare_causal_write`], and writes the
//! result, holding a per-cell lock across the three steps. Without the lock two concurrent
//! writes coordinated by the same node could read the same stored counter and mint the same
//! dot for different values; the replicas would then keep one and silently drop the other.
//! The cell returned is the whole new DVV set; the node writes it locally and sends it to
//! the other replicas, whose engine merge (DVV sync) folds it into what they hold — a
//! replica never needs the lock.
//!
//! LWW writes need no read and no lock: [`prepare_lww_write`] only encodes.

use super::actor::Actor;
use super::cell::{decode_causal_cell, encode_causal_cell};
use super::context::Context;
use super::dvv::Sibling;
use super::format::{MAX_ACTORS, SUPERSEDED_TTL_SECS};
use super::lww::LwwCell;
use super::vv::VersionVector;
use super::{count_sibling_limit_rejection, VersioningError};

/// Riak's default sibling limit (`max_siblings`), for tables that do not set one.
pub const DEFAULT_MAX_SIBLINGS: usize = 100;

/// Builds the new stored cell of a causal write.
///
/// - `existing`: the locally stored cell (the engine's `read` result), if any. A cell that
///   does not decode fails the write with [`VersioningError::CorruptCell`]: writing over it
///   as if it were empty could reuse a dot this node minted before.
/// - `context`: the context of the client's read; `None` for a blind write (it becomes a
///   sibling of whatever is there).
/// - `new`: the value, or a causal tombstone for a delete.
/// - `actor`: this node's current actor.
/// - `new.write_id`: a write id the stored cell already holds, or remembers as
///   superseded, makes the write a retry: the stored cell is returned as it is (no new
///   version).
/// - the context's write ids: every version with one of them is superseded, whichever
///   coordinator minted it, and the cell remembers the ids for
///   [`super::format::SUPERSEDED_TTL_SECS`] so a copy arriving later is dropped too.
/// - `max_siblings`: the table's limit; a write that would leave more siblings than that is
///   rejected with [`VersioningError::TooManySiblings`] and counted
///   ([`super::sibling_limit_rejections`]). Resolving siblings (writing with a context that
///   covers them) is always possible: it reduces the count.
/// - `now_secs`: expired siblings are dropped first and do not count.
pub fn prepare_causal_write(
    existing: Option<&[u8]>,
    context: Option<&Context>,
    new: Sibling,
    actor: Actor,
    max_siblings: usize,
    now_secs: u64,
) -> Result<Vec<u8>, VersioningError> {
    prepare_causal_write_above(existing, context, new, actor, 0, max_siblings, now_secs)
}

/// [`prepare_causal_write`] minting a dot counter of at least `floor` (see
/// [`super::Dvv::update_above`]); the replica's mint passes its per-node dot clock.
pub fn prepare_causal_write_above(
    existing: Option<&[u8]>,
    context: Option<&Context>,
    new: Sibling,
    actor: Actor,
    floor: u64,
    max_siblings: usize,
    now_secs: u64,
) -> Result<Vec<u8>, VersioningError> {
    let mut stored = match existing {
        Some(bytes) => decode_causal_cell(bytes)?.without_expired(now_secs),
        None => Default::default(),
    };
    // A retry of a write this replica already holds (same write id), or of one a later
    // write already superseded, is that write: the stored cell is the answer, shipped
    // again to replicas that may lack it.
    if let (Some(id), Some(bytes)) = (new.write_id, existing) {
        if stored.holds_write(id) || stored.superseded(id) {
            return Ok(bytes.to_vec());
        }
    }
    let empty = VersionVector::new();
    let ctx = context.map_or(&empty, Context::vv);
    // Every copy of a write the client saw goes, wherever it was minted: the cell
    // remembers the ids so that a copy arriving later is dropped too.
    if let Some(c) = context {
        let ids: Vec<u128> = c
            .write_ids()
            .iter()
            .copied()
            .filter(|id| Some(*id) != new.write_id)
            .collect();
        stored.supersede(&ids, now_secs.saturating_add(SUPERSEDED_TTL_SECS));
    }
    let updated = stored.update_above(ctx, new, actor, floor);
    let count = updated.sibling_count();
    if count > max_siblings {
        count_sibling_limit_rejection();
        tracing::debug!(
            count,
            limit = max_siblings,
            "write rejected: too many siblings"
        );
        return Err(VersioningError::TooManySiblings {
            count,
            limit: max_siblings,
        });
    }
    // A context claims what the client saw; it cannot be allowed to grow the cell past
    // what the cell decoder accepts (a forged context would make the cell unreadable).
    if updated.join().len() > MAX_ACTORS {
        return Err(VersioningError::InvalidContext {
            reason: "the write would give the cell more actors than a cell may hold",
        });
    }
    let encoded = encode_causal_cell(&updated);
    // A cell must stay small enough to be read back whole, or nobody could read its
    // context to resolve its siblings. Writes that shrink it (resolutions) always pass.
    let before = existing.map_or(0, <[u8]>::len);
    if encoded.len() > MAX_CELL_BYTES && encoded.len() > before {
        return Err(VersioningError::CellTooLarge {
            bytes: encoded.len(),
            limit: MAX_CELL_BYTES,
        });
    }
    Ok(encoded)
}

/// Largest encoded causal cell a write may produce: well under the node's 8 MiB response
/// budget, so the whole cell (all siblings and its context) can always be read.
pub const MAX_CELL_BYTES: usize = 6 << 20;

/// Builds the stored cell of an LWW write (`value: None` is a delete). The timestamp is the
/// client's if it sent one, else the coordinator's clock.
pub fn prepare_lww_write(
    value: Option<Vec<u8>>,
    timestamp_micros: i64,
    expires_at_secs: Option<u64>,
) -> Vec<u8> {
    LwwCell {
        value,
        timestamp_micros,
        expires_at_secs,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::{sibling_limit_rejections, Dvv};

    const A: Actor = Actor::new(1, 1);

    fn val(s: &str) -> Sibling {
        Sibling::value(s.as_bytes().to_vec(), 1)
    }

    #[test]
    fn causal_retry_with_the_same_write_id_mints_nothing_and_copies_read_as_one() {
        const B: Actor = Actor::new(2, 1);
        let w = |s: &str| val(s).with_write_id(Some(42));
        let first = prepare_causal_write(None, None, w("a"), A, 10, 0).unwrap();
        // The same coordinator again: the cell is returned as it is.
        let again = prepare_causal_write(Some(&first), None, w("a"), A, 10, 0).unwrap();
        assert_eq!(again, first);
        // A write without an id, or with another, is a new version.
        let other = prepare_causal_write(Some(&first), None, val("a"), A, 10, 0).unwrap();
        assert_eq!(decode_causal_cell(&other).unwrap().sibling_count(), 2);
        // Another coordinator that had not seen it mints its own copy; once the copies
        // meet, both dots stay (the join is untouched) and a reader is shown one.
        let elsewhere = prepare_causal_write(None, None, w("a"), B, 10, 0).unwrap();
        let met = decode_causal_cell(&first)
            .unwrap()
            .sync(&decode_causal_cell(&elsewhere).unwrap());
        assert_eq!(met.sibling_count(), 2);
        assert_eq!(met.shown_values().len(), 1);
        assert!(met.holds_write(42) && !met.holds_write(43));
        // The codec keeps the id.
        let round = decode_causal_cell(&encode_causal_cell(&met)).unwrap();
        assert_eq!(round, met);
        // A write with the context of that read supersedes both copies.
        let ctx = Context::of(&met);
        let resolved = prepare_causal_write(
            Some(&encode_causal_cell(&met)),
            Some(&ctx),
            val("b"),
            A,
            10,
            0,
        )
        .unwrap();
        let resolved = decode_causal_cell(&resolved).unwrap();
        assert_eq!(resolved.sibling_count(), 1);
        assert_eq!(resolved.values()[0].value.as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn causal_write_with_a_forged_huge_context_is_refused() {
        let c1 = prepare_causal_write(None, None, val("a"), A, 10, 0).unwrap();
        let vv =
            VersionVector::from_pairs((0..MAX_ACTORS as u64).map(|i| (Actor::new(1000 + i, 1), 1)));
        let ctx = Context::from_vv(vv);
        let r = prepare_causal_write(Some(&c1), Some(&ctx), val("b"), A, 10, 0);
        assert!(
            matches!(r, Err(VersioningError::InvalidContext { .. })),
            "{r:?}"
        );
    }

    #[test]
    fn causal_write_refuses_to_grow_a_cell_past_the_byte_cap_but_accepts_resolution() {
        let big = vec![7u8; 1 << 20];
        let mut cell =
            prepare_causal_write(None, None, Sibling::value(big.clone(), 1), A, 100, 0).unwrap();
        let mut refused = false;
        for _ in 0..10 {
            match prepare_causal_write(Some(&cell), None, Sibling::value(big.clone(), 1), A, 100, 0)
            {
                Ok(c) => cell = c,
                Err(VersioningError::CellTooLarge { bytes, limit }) => {
                    assert!(bytes > limit);
                    refused = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(refused, "the cell grew past the cap");
        // A write with the cell's context replaces every sibling: accepted.
        let ctx = Context::of(&decode_causal_cell(&cell).unwrap());
        let resolved =
            prepare_causal_write(Some(&cell), Some(&ctx), val("small"), A, 100, 0).unwrap();
        assert!(resolved.len() < 1024);
    }

    #[test]
    fn causal_write_blind_adds_sibling() {
        let c1 = prepare_causal_write(None, None, val("a"), A, 10, 0).unwrap();
        let c2 = prepare_causal_write(Some(&c1), None, val("b"), A, 10, 0).unwrap();
        assert_eq!(decode_causal_cell(&c2).unwrap().sibling_count(), 2);
    }

    #[test]
    fn causal_write_with_context_replaces() {
        let c1 = prepare_causal_write(None, None, val("a"), A, 10, 0).unwrap();
        let ctx = Context::of(&decode_causal_cell(&c1).unwrap());
        let c2 = prepare_causal_write(Some(&c1), Some(&ctx), val("b"), A, 10, 0).unwrap();
        let d = decode_causal_cell(&c2).unwrap();
        assert_eq!(d.values(), [&val("b")]);
    }

    #[test]
    fn causal_write_over_limit_is_rejected_and_counted() {
        let mut cell = prepare_causal_write(None, None, val("0"), A, 3, 0).unwrap();
        for i in 1..3 {
            cell = prepare_causal_write(Some(&cell), None, val(&i.to_string()), A, 3, 0).unwrap();
        }
        let before = sibling_limit_rejections();
        let err = prepare_causal_write(Some(&cell), None, val("x"), A, 3, 0).unwrap_err();
        assert!(matches!(
            err,
            VersioningError::TooManySiblings { count: 4, limit: 3 }
        ));
        assert!(sibling_limit_rejections() > before);
        // A write that resolves the siblings is still accepted.
        let ctx = Context::of(&decode_causal_cell(&cell).unwrap());
        let resolved = prepare_causal_write(Some(&cell), Some(&ctx), val("r"), A, 3, 0).unwrap();
        assert_eq!(decode_causal_cell(&resolved).unwrap().sibling_count(), 1);
    }

    #[test]
    fn causal_write_expired_siblings_do_not_count() {
        let ttl = val("t").with_expiry(50);
        let cell = prepare_causal_write(None, None, ttl, A, 1, 0).unwrap();
        assert!(prepare_causal_write(Some(&cell), None, val("x"), A, 1, 10).is_err());
        let after = prepare_causal_write(Some(&cell), None, val("x"), A, 1, 50).unwrap();
        assert_eq!(decode_causal_cell(&after).unwrap().values(), [&val("x")]);
    }

    #[test]
    fn causal_write_over_corrupt_cell_fails() {
        let err = prepare_causal_write(Some(b"garbage"), None, val("a"), A, 10, 0).unwrap_err();
        assert!(matches!(err, VersioningError::CorruptCell { .. }));
    }

    #[test]
    fn causal_delete_is_a_tombstone_sibling() {
        let c1 = prepare_causal_write(None, None, val("a"), A, 10, 0).unwrap();
        let d1: Dvv = decode_causal_cell(&c1).unwrap();
        let c2 = prepare_causal_write(
            Some(&c1),
            Some(&Context::of(&d1)),
            Sibling::tombstone(2),
            A,
            10,
            0,
        )
        .unwrap();
        let d2 = decode_causal_cell(&c2).unwrap();
        assert!(d2.is_all_tombstones() && d2.sibling_count() == 1);
        assert!(d2.dominates(&d1));
    }

    #[test]
    fn lww_write_encodes_cell() {
        let bytes = prepare_lww_write(Some(b"v".to_vec()), 9, Some(100));
        assert_eq!(
            LwwCell::decode(&bytes).unwrap(),
            LwwCell::value(b"v".to_vec(), 9).with_expiry(100)
        );
    }

    #[test]
    fn causal_retry_of_a_superseded_write_mints_nothing() {
        let w = |s: &str| val(s).with_write_id(Some(42));
        let first = prepare_causal_write(None, None, w("x"), A, 10, 0).unwrap();
        let ctx = Context::of(&decode_causal_cell(&first).unwrap());
        assert_eq!(ctx.write_ids(), [42]);
        let deleted =
            prepare_causal_write(Some(&first), Some(&ctx), Sibling::tombstone(2), A, 10, 0)
                .unwrap();
        // The retry of write 42 arrives after the delete: nothing comes back.
        let again = prepare_causal_write(Some(&deleted), None, w("x"), A, 10, 0).unwrap();
        assert_eq!(again, deleted);
        assert!(decode_causal_cell(&again).unwrap().is_all_tombstones());
    }
}
