//! Reading stored cells raw, and digests of them.
//!
//! - [`Replica::read_raw`]: the merged stored bytes of a key (every version the engine
//!   holds folded by the table's merge policy), expired versions included: what a
//!   coordinator reconciles and what read repair ships.
//! - [`canonical_cell`]: the form two replicas with the same merged state agree on at a
//!   given second: a causal cell without its expired siblings (counters kept), an expired
//!   lww value as the tombstone compaction would turn it into. Compaction only ever moves
//!   a cell towards its canonical form, so a replica that compacted and one that did not
//!   give the same digest.
//! - [`cell_digest`]: MD5 (Cassandra's digest hash) of
//!   `key_len:u32be key canonical_len:u32be canonical`; binding the key means a digest of
//!   a range or row can be a plain fold of its cells' digests.
//!
//! An undecodable stored value has itself as canonical form (it is never rewritten). A
//! row tombstone is its own canonical form. A cell's digest does not apply its row's
//! tombstone: until both have compacted, a replica whose compaction already removed the
//! covered siblings of a cell digests it differently from one that has not, though both
//! read the same; a row-level digest that filters by the tombstone first is for the read
//! repair issue to add if it compares rows.

use std::borrow::Cow;
use std::ops::Bound;

use md5::{Digest, Md5};
use sibyl_protocol::ConflictMode;
use sibyl_storage::{Direction, Entry, ScanIter};

use super::{Replica, ReplicaError};
use crate::versioning::{decode_causal_cell, encode_causal_cell, LwwCell};

/// A 16-byte MD5 digest of a cell's canonical form.
pub type CellDigest = [u8; 16];

/// The canonical form of a stored cell at `now_secs` (see the module doc).
pub fn canonical_cell(mode: ConflictMode, stored: &[u8], now_secs: u64) -> Cow<'_, [u8]> {
    match mode {
        ConflictMode::Causal => match decode_causal_cell(stored) {
            Ok(dvv) if dvv.has_expired(now_secs) => {
                Cow::Owned(encode_causal_cell(&dvv.without_expired(now_secs)))
            }
            _ => Cow::Borrowed(stored),
        },
        ConflictMode::Lww => match LwwCell::decode(stored) {
            Ok(c) if !c.is_tombstone() && c.is_expired(now_secs) => {
                Cow::Owned(LwwCell::tombstone(c.timestamp_micros).encode())
            }
            _ => Cow::Borrowed(stored),
        },
    }
}

/// The digest of the cell at `key` (see the module doc).
pub fn cell_digest(mode: ConflictMode, key: &[u8], stored: &[u8], now_secs: u64) -> CellDigest {
    let canonical = canonical_cell(mode, stored, now_secs);
    let mut h = Md5::new();
    h.update((key.len() as u32).to_be_bytes());
    h.update(key);
    h.update((canonical.len() as u32).to_be_bytes());
    h.update(&canonical);
    h.finalize().into()
}

impl Replica {
    /// The merged stored bytes at `key`, or `None` when the engine holds nothing there.
    pub fn read_raw(&self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, ReplicaError> {
        Ok(match self.engine.get_entry(table, key)? {
            Some(Entry::Value(v)) => Some(v),
            Some(Entry::Tombstone) | None => None,
        })
    }

    /// The digest of the cell at `key` now, or `None` when nothing is stored there.
    pub fn digest(
        &self,
        table: &str,
        mode: ConflictMode,
        key: &[u8],
    ) -> Result<Option<CellDigest>, ReplicaError> {
        let now = self.clock.now_secs();
        Ok(self
            .read_raw(table, key)?
            .map(|v| cell_digest(mode, key, &v, now)))
    }

    /// An ordered scan of engine keys within the bounds, as the merge policy's read
    /// returns them (a causal cell without its expired siblings; expired and deleted lww
    /// cells hidden).
    pub fn scan(
        &self,
        table: &str,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
    ) -> Result<ScanIter, ReplicaError> {
        Ok(self.engine.scan(table, lower, upper, Direction::Forward)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::{Actor, Dvv, Sibling, VersionVector};

    #[test]
    fn canonical_cell_drops_expired_causal_siblings_and_keeps_counters() {
        let a = Actor::new(1, 1);
        let d = Dvv::new().update(
            &VersionVector::new(),
            Sibling::value(b"x".to_vec(), 1).with_expiry(10),
            a,
        );
        let stored = encode_causal_cell(&d);
        assert_eq!(
            canonical_cell(ConflictMode::Causal, &stored, 9),
            &stored[..]
        );
        let c = canonical_cell(ConflictMode::Causal, &stored, 10);
        let back = decode_causal_cell(&c).unwrap();
        assert_eq!(back.sibling_count(), 0);
        assert_eq!(back.join(), d.join());
    }

    #[test]
    fn canonical_cell_turns_expired_lww_into_its_compacted_tombstone() {
        let v = LwwCell::value(b"v".to_vec(), 7).with_expiry(10).encode();
        assert_eq!(canonical_cell(ConflictMode::Lww, &v, 9), &v[..]);
        assert_eq!(
            canonical_cell(ConflictMode::Lww, &v, 10).into_owned(),
            LwwCell::tombstone(7).encode()
        );
    }

    #[test]
    fn cell_digest_binds_key_and_canonical_bytes() {
        let v = LwwCell::value(b"v".to_vec(), 7).encode();
        let d = cell_digest(ConflictMode::Lww, b"k", &v, 0);
        assert_eq!(d, cell_digest(ConflictMode::Lww, b"k", &v, 0));
        assert_ne!(d, cell_digest(ConflictMode::Lww, b"j", &v, 0));
        let w = LwwCell::value(b"w".to_vec(), 7).encode();
        assert_ne!(d, cell_digest(ConflictMode::Lww, b"k", &w, 0));
    }
}
