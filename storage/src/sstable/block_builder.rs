//! Builds the contents of one data block: prefix-compressed entries, then the restart
//! array, then the restart count (see `storage/doc/sstable_format.md`, "Data block").
//!
//! Invariants: keys are added in strictly increasing order (the table builder checks);
//! every `restart_interval`-th entry is a restart point and stores its whole key
//! (`shared == 0`). Single-threaded; owned by the [`super::SsTableBuilder`].

use super::format::{KIND_TOMBSTONE, KIND_VALUE, RESTART_LEN};
use crate::types::{EntryRef, SeqNo};

/// Accumulates the entries of one data block.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    since_restart: usize,
    restart_interval: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// An empty block; `restart_interval` is clamped to at least 1.
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            since_restart: 0,
            restart_interval: restart_interval.max(1),
            last_key: Vec::new(),
        }
    }

    /// True when no entry has been added since the last [`BlockBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }

    /// The size the block contents would have if finished now.
    pub fn size_estimate(&self) -> usize {
        self.buf.len() + (self.restarts.len() + 1) * RESTART_LEN
    }

    /// The last key added (empty if none).
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends an entry. The caller guarantees `key` sorts after the previous key and
    /// that the block stays below 4 GiB (restart offsets are u32).
    pub fn add(&mut self, key: &[u8], seqno: SeqNo, entry: EntryRef<'_>) {
        let shared = if self.since_restart == self.restart_interval || self.is_empty() {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            common_prefix(&self.last_key, key)
        };
        let (kind, value): (u8, &[u8]) = match entry {
            EntryRef::Value(v) => (KIND_VALUE, v),
            EntryRef::Tombstone => (KIND_TOMBSTONE, &[]),
        };
        let delta = key.get(shared..).unwrap_or_default();
        sibyl_coding::put_varint(&mut self.buf, shared as u64);
        sibyl_coding::put_varint(&mut self.buf, delta.len() as u64);
        sibyl_coding::put_varint(&mut self.buf, value.len() as u64);
        self.buf.push(kind);
        sibyl_coding::put_varint(&mut self.buf, seqno);
        self.buf.extend_from_slice(delta);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(delta);
        self.since_restart += 1;
    }

    /// Appends the restart array and count and returns the finished contents; the
    /// builder is empty again afterwards (its buffers are reused).
    pub fn finish(&mut self) -> &[u8] {
        for r in &self.restarts {
            sibyl_coding::put_u32_le(&mut self.buf, *r);
        }
        sibyl_coding::put_u32_le(&mut self.buf, self.restarts.len() as u32);
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        &self.buf
    }

    /// Forgets the finished contents, ready for the next block.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
    }
}

/// Length of the longest common prefix of `a` and `b`.
#[inline]
pub fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let (Some(x), Some(y)) = (a.get(i..i + 8), b.get(i..i + 8)) else {
            break;
        };
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        let diff = u64::from_le_bytes(wx) ^ u64::from_le_bytes(wy);
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a.get(i) == b.get(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_handles_word_and_tail_differences() {
        assert_eq!(common_prefix(b"", b"abc"), 0);
        assert_eq!(common_prefix(b"abc", b"abd"), 2);
        assert_eq!(common_prefix(b"abcdefghijk", b"abcdefghijk"), 11);
        assert_eq!(common_prefix(b"abcdefghijk", b"abcdefghiXk"), 9);
        assert_eq!(common_prefix(b"abcdeXghijk", b"abcdefghijk"), 5);
        assert_eq!(common_prefix(b"abcdefgh", b"abcdefghij"), 8);
    }

    #[test]
    fn block_builder_places_restarts_every_interval() {
        let mut b = BlockBuilder::new(2);
        for k in [&b"a"[..], b"ab", b"abc", b"b", b"c"] {
            b.add(k, 1, EntryRef::Tombstone);
        }
        let data = b.finish().to_vec();
        let n = sibyl_coding::u32_le_at(&data, data.len() - 4);
        assert_eq!(n, Some(3));
    }
}
