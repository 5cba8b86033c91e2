//! What one replica computes about one ring range of one table during an exchange: the
//! range's root hash, the child hashes of buckets, and the keys of buckets with their
//! hashes. Both sides of an exchange compute the same functions (the initiator locally,
//! the peer in [`super::peer`]), so equal data gives equal answers.
//!
//! A bucket's hash restricted to the range is the XOR of the tree's leaves that lie
//! wholly inside both, plus the hash of the keys of the leaves cut by a bound, which is
//! scanned (a range starts and ends in at most two leaves). Buckets deeper than the
//! tree's leaves are always scanned: one leaf holds about 1/65536 of the table.
//!
//! Blocking: engine scans. No lock is held across calls.

use sibyl_storage::{Direction, EntryRef};

use super::hash::cell_hash;
use super::messages::{ChildHash, CHILD_BITS};
use super::space::{bucket, clip, intervals, prefix_of, Interval};
use super::tree::TableTree;
use crate::replica::{Replica, ReplicaError, TokenRange};

/// Why a view cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A leaf the answer needs is still building.
    #[error("the table's hash tree is still building")]
    NotReady,
    /// The engine failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

impl From<sibyl_storage::Error> for ViewError {
    fn from(e: sibyl_storage::Error) -> Self {
        ViewError::Replica(ReplicaError::Storage(e))
    }
}

/// One table's range at this replica.
#[derive(Debug)]
pub struct RangeView<'a> {
    replica: &'a Replica,
    table: &'a str,
    tree: &'a TableTree,
    range: Vec<Interval>,
}

impl<'a> RangeView<'a> {
    /// The view of `range` in `table`, whose tree is `tree`.
    pub fn new(
        replica: &'a Replica,
        table: &'a str,
        tree: &'a TableTree,
        range: TokenRange,
    ) -> RangeView<'a> {
        RangeView {
            replica,
            table,
            tree,
            range: intervals(replica.partitioner(), range),
        }
    }

    /// The hash of the whole range.
    pub fn root(&self) -> Result<u64, ViewError> {
        self.hash_of(bucket(0, 0))
    }

    /// The non-zero hashes of the children (depth `bits + 8`) of each bucket of depth
    /// `bits` named in `prefixes`.
    pub fn children(&self, bits: u32, prefixes: &[u64]) -> Result<Vec<ChildHash>, ViewError> {
        let child_bits = bits + CHILD_BITS;
        let mut out = Vec::new();
        for (i, &p) in prefixes.iter().enumerate() {
            let parent = i as u32;
            if child_bits <= self.tree.leaf_bits() {
                for c in 0..=u8::MAX {
                    let prefix = (u128::from(p) << CHILD_BITS) | u128::from(c);
                    let hash = self.hash_of(bucket(child_bits, prefix))?;
                    if hash != 0 {
                        out.push(ChildHash {
                            parent,
                            child: c,
                            hash,
                        });
                    }
                }
            } else {
                let mut acc = [0u64; 256];
                self.scan(bucket(bits, u128::from(p)), |key, hash| {
                    let x = crate::repair::space::point_of_key(self.replica.partitioner(), key);
                    acc[(prefix_of(x, child_bits) & 0xff) as usize] ^= hash;
                })?;
                for (c, &hash) in acc.iter().enumerate() {
                    if hash != 0 {
                        out.push(ChildHash {
                            parent,
                            child: c as u8,
                            hash,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every key of the buckets of depth `bits` named in `prefixes`, within the range,
    /// with its hash, in key order per bucket.
    pub fn keys(&self, bits: u32, prefixes: &[u64]) -> Result<Vec<(Vec<u8>, u64)>, ViewError> {
        let mut out = Vec::new();
        for &p in prefixes {
            self.scan(bucket(bits, u128::from(p)), |key, hash| {
                out.push((key.to_vec(), hash));
            })?;
        }
        Ok(out)
    }

    /// The hash of the keys of `within` that are in the range.
    fn hash_of(&self, within: Interval) -> Result<u64, ViewError> {
        let bits = self.tree.leaf_bits();
        let mut h = 0u64;
        for part in clip(within, &self.range) {
            let first = prefix_of(part.lo, bits) as usize;
            let last = prefix_of(part.hi, bits) as usize;
            // Leaves wholly inside `part` come from the tree; the (at most two) cut
            // ones are scanned.
            let whole = |leaf: usize| self.tree.leaf_interval(leaf).within(part);
            let mut lo = first;
            let mut hi = last;
            if !whole(first) {
                h ^= self.scan_hash(self.cut(first, part))?;
                lo = first + 1;
            }
            if hi >= lo && !whole(last) {
                h ^= self.scan_hash(self.cut(last, part))?;
                hi = last.saturating_sub(1);
            }
            if lo <= hi && hi != usize::MAX {
                let leaves = self.tree.leaves(lo, hi).ok_or(ViewError::NotReady)?;
                h = leaves.iter().fold(h, |a, l| a ^ l);
            }
        }
        Ok(h)
    }

    fn cut(&self, leaf: usize, part: Interval) -> Interval {
        self.tree
            .leaf_interval(leaf)
            .meet(part)
            .unwrap_or(Interval { lo: 1, hi: 0 })
    }

    /// The XOR of the hashes of the keys of `within` in the range (empty: 0).
    fn scan_hash(&self, within: Interval) -> Result<u64, ViewError> {
        let mut h = 0u64;
        self.scan(within, |_, x| h ^= x)?;
        Ok(h)
    }

    /// Calls `f(key, hash)` for every key of `within` in the range, in key order.
    fn scan(&self, within: Interval, mut f: impl FnMut(&[u8], u64)) -> Result<(), ViewError> {
        for part in clip(within, &self.range) {
            let span = part.key_span(self.replica.partitioner());
            let mut scan = self.replica.engine().scan(
                self.table,
                span.lower_bound(),
                span.upper_bound(),
                Direction::Forward,
            )?;
            while let Some((key, value)) = scan.next_merged()? {
                f(
                    key,
                    cell_hash(self.tree.mode(), key, EntryRef::Value(value)),
                );
            }
        }
        Ok(())
    }
}
