//! The hash of one stored cell as the anti-entropy tree counts it.
//!
//! A leaf of the tree is the XOR of [`cell_hash`] over its keys, so the hash must be a
//! function of the cell's *replicated state* only, equal on two replicas that received
//! the same writes whatever each has compacted since. Compaction of a replicated table
//! (`crate::versioning::policy`) changes stored bytes without the replica seeing it: it
//! drops expired causal siblings and siblings a row tombstone covers (counters kept),
//! turns an expired lww value into a tombstone at the same timestamp, and removes an lww
//! cell a row tombstone covers. The hashed *form* is therefore:
//!
//! ```text
//! form = "C" (actor:12 counter:u64be)*   causal cell: its version vector (the join),
//!                                        actors in order. Which siblings survive is a
//!                                        function of the writes seen, which the join
//!                                        names; compaction keeps every counter.
//!      | "L" ts:i64be 01 value           lww cell, live and without TTL
//!      | "L" ts:i64be 00                 lww tombstone or value with a TTL (it becomes a
//!                                        tombstone at the same timestamp)
//!      | "R" stored                      row tombstone (merges by join, never rewritten)
//!      | "X" stored                      undecodable bytes (kept as they are)
//! cell_hash = h1 xor h2 of murmur3_x64_128(key_len:u32be key form, seed 0x5eb1)
//! ```
//!
//! Absent cells (and engine tombstones) hash to 0: they are not in the leaf. What the
//! form does not see is never repaired by the tree: two lww versions that are both mortal
//! (a tombstone, or a value with a TTL) written in the same microsecond look alike (reads
//! still reconcile them by the lww rule); two causal cells with equal joins but
//! different superseded write-id lists (read repair reconciles those), and an lww cell a
//! row tombstone covers once one replica compacted it away and rebuilt its tree (the
//! exchange then ships the covered cell back, harmlessly, and the next compaction drops
//! it again).
//!
//! Pure functions; no threading concerns.

use sibyl_protocol::ConflictMode;
use sibyl_storage::EntryRef;

use crate::versioning::row_tombstone::is_row_tombstone;
use crate::versioning::{decode_causal_cell, LwwCell};

/// The seed of the cell hash (any constant; all nodes must agree).
const SEED: u64 = 0x5eb1;

/// The hash of the cell stored at `key` (0 when nothing is stored).
pub fn cell_hash(mode: ConflictMode, key: &[u8], entry: EntryRef<'_>) -> u64 {
    cell_hash_mortal(mode, key, entry).0
}

/// [`cell_hash`], and whether the cell may become purgeable by compaction (an lww
/// tombstone or value with a TTL; a causal cell of tombstones only, or with a value that
/// has a TTL), for the tombstone watermark (`super::watermark`).
pub fn cell_hash_mortal(mode: ConflictMode, key: &[u8], entry: EntryRef<'_>) -> (u64, bool) {
    let EntryRef::Value(stored) = entry else {
        return (0, false);
    };
    let mut buf = Vec::with_capacity(4 + key.len() + 64);
    buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
    buf.extend_from_slice(key);
    let mortal = push_form(&mut buf, mode, stored);
    let (h1, h2) = sibyl_protocol::token::cassandra_x64_128(&buf, SEED);
    ((h1 ^ h2) as u64, mortal)
}

/// Appends the form; returns whether the cell is mortal (see [`cell_hash_mortal`]).
fn push_form(buf: &mut Vec<u8>, mode: ConflictMode, stored: &[u8]) -> bool {
    if is_row_tombstone(stored) {
        buf.push(b'R');
        buf.extend_from_slice(stored);
        return false;
    }
    match mode {
        ConflictMode::Causal => match decode_causal_cell(stored) {
            Ok(dvv) => {
                buf.push(b'C');
                for (actor, counter) in dvv.join().entries() {
                    actor.encode_to(buf);
                    buf.extend_from_slice(&counter.to_be_bytes());
                }
                dvv.siblings()
                    .all(|(_, s)| s.is_tombstone() || s.expires_at_secs.is_some())
            }
            Err(_) => undecodable(buf, stored),
        },
        ConflictMode::Lww => match LwwCell::decode(stored) {
            Ok(cell) => {
                buf.push(b'L');
                buf.extend_from_slice(&cell.timestamp_micros.to_be_bytes());
                match (&cell.value, cell.expires_at_secs) {
                    (Some(v), None) => {
                        buf.push(1);
                        buf.extend_from_slice(v);
                        false
                    }
                    _ => {
                        buf.push(0);
                        true
                    }
                }
            }
            Err(_) => undecodable(buf, stored),
        },
    }
}

fn undecodable(buf: &mut Vec<u8>, stored: &[u8]) -> bool {
    buf.push(b'X');
    buf.extend_from_slice(stored);
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::dvv::{Dvv, Sibling};
    use crate::versioning::vv::VersionVector;
    use crate::versioning::{encode_causal_cell, Actor};

    const A: Actor = Actor::new(1, 1);
    const B: Actor = Actor::new(2, 1);

    fn causal(d: &Dvv) -> Vec<u8> {
        encode_causal_cell(d)
    }

    #[test]
    fn cell_hash_ignores_what_compaction_rewrites() {
        // An expired causal sibling dropped (counters kept) hashes the same.
        let d = Dvv::new()
            .update(
                &VersionVector::new(),
                Sibling::value(b"x".to_vec(), 1).with_expiry(100),
                A,
            )
            .update(&VersionVector::new(), Sibling::value(b"y".to_vec(), 2), B);
        let compacted = d.without_expired(1_000);
        assert_ne!(causal(&d), causal(&compacted));
        let k = b"key";
        assert_eq!(
            cell_hash(ConflictMode::Causal, k, EntryRef::Value(&causal(&d))),
            cell_hash(
                ConflictMode::Causal,
                k,
                EntryRef::Value(&causal(&compacted))
            )
        );
        // An lww value with a TTL and the tombstone it expires into hash the same.
        let ttl = LwwCell::value(b"v".to_vec(), 7).with_expiry(100).encode();
        let tomb = LwwCell::tombstone(7).encode();
        assert_eq!(
            cell_hash(ConflictMode::Lww, k, EntryRef::Value(&ttl)),
            cell_hash(ConflictMode::Lww, k, EntryRef::Value(&tomb))
        );
    }

    #[test]
    fn cell_hash_tells_replicated_states_apart() {
        let k = b"key";
        let a = Dvv::new().update(&VersionVector::new(), Sibling::value(b"x".to_vec(), 1), A);
        let ab = a.update(&VersionVector::new(), Sibling::value(b"y".to_vec(), 2), B);
        let h = |v: &[u8]| cell_hash(ConflictMode::Causal, k, EntryRef::Value(v));
        assert_ne!(h(&causal(&a)), h(&causal(&ab)));
        assert_ne!(
            h(&causal(&a)),
            cell_hash(ConflictMode::Causal, b"kez", EntryRef::Value(&causal(&a)))
        );
        let l = |v: &[u8]| cell_hash(ConflictMode::Lww, k, EntryRef::Value(v));
        assert_ne!(
            l(&LwwCell::value(b"v".to_vec(), 7).encode()),
            l(&LwwCell::value(b"w".to_vec(), 7).encode())
        );
        assert_ne!(
            l(&LwwCell::value(b"v".to_vec(), 7).encode()),
            l(&LwwCell::tombstone(7).encode())
        );
        assert_eq!(cell_hash(ConflictMode::Lww, k, EntryRef::Tombstone), 0);
    }
}
