//! Engine key encoding: one storage-engine key per cell.
//!
//! # Format (version 1)
//! ```text
//! engine key  = token partition_key_len partition_key column_name
//! token       = 8 bytes: the murmur3 token (i64) with its sign bit flipped, big-endian
//!               (Token::to_sortable_bytes), so byte order = token order
//! partition_key_len = u16 big-endian
//! partition_key     = partition_key_len bytes
//! column_name       = the remaining bytes (never empty)
//! ```
//! Worked example: partition key `b"k"` (murmur3 token `t`), column `b"c"`:
//! `sortable(t)[8] 00 01 6b 63` (12 bytes).
//!
//! Why: a row (all columns of one partition key) is then the contiguous key range that
//! starts with `token | len | key` ([`RowPrefix`]); its columns come out sorted by name,
//! so a column slice is one bounded scan, and a token range of the ring is a contiguous
//! range of engine keys (streaming and Merkle trees read sequentially). The length prefix
//! keeps two keys with the same token apart (`"ab"`+`"c"` vs `"a"`+`"bc"`).
//!
//! Pure functions; no threading concerns.

use crate::ring::{Partitioner, Token};

/// Longest partition key accepted (bytes). Fits the u16 length; leaves room in the
/// engine's 64 KiB key cap for the token and a column name.
pub const MAX_PARTITION_KEY_LEN: usize = 16 * 1024;
/// Longest column name accepted (bytes).
pub const MAX_COLUMN_NAME_LEN: usize = 16 * 1024;

/// Length of the token part for the murmur3 partitioner.
pub(crate) const TOKEN_LEN: usize = 8;

/// The engine-key prefix shared by every cell of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPrefix {
    bytes: Vec<u8>,
}

impl RowPrefix {
    /// The prefix of `partition_key`'s row. The caller has checked the key's length
    /// against [`MAX_PARTITION_KEY_LEN`].
    pub fn new(partition_key: &[u8]) -> RowPrefix {
        let token = Partitioner::Murmur3.token(partition_key);
        let mut bytes = Vec::with_capacity(TOKEN_LEN + 2 + partition_key.len() + 16);
        match token {
            Token::Murmur3(v) => {
                bytes.extend_from_slice(&((v as u64) ^ (1u64 << 63)).to_be_bytes())
            }
            other => bytes.extend_from_slice(&other.to_sortable_bytes()),
        }
        let len = u16::try_from(partition_key.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(partition_key);
        RowPrefix { bytes }
    }

    /// The prefix bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The engine key of `column` in this row.
    pub fn cell_key(&self, column: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.bytes.len() + column.len());
        k.extend_from_slice(&self.bytes);
        k.extend_from_slice(column);
        k
    }

    /// The column name of an engine key inside this row, `None` if the key is not in it.
    pub fn column_of<'a>(&self, engine_key: &'a [u8]) -> Option<&'a [u8]> {
        engine_key
            .strip_prefix(self.bytes.as_slice())
            .filter(|c| !c.is_empty())
    }

    /// The smallest key greater than every key of this row (exclusive scan bound), or
    /// `None` when no such key exists (the prefix is all `0xFF`).
    pub fn upper_bound(&self) -> Option<Vec<u8>> {
        let mut end = self.bytes.clone();
        while let Some(last) = end.pop() {
            if last != u8::MAX {
                end.push(last + 1);
                return Some(end);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_row_cells_share_prefix_and_sort_by_column() {
        let p = RowPrefix::new(b"alice");
        let a = p.cell_key(b"a");
        let b = p.cell_key(b"b");
        assert!(a < b);
        assert_eq!(p.column_of(&a), Some(&b"a"[..]));
        assert!(p
            .upper_bound()
            .is_some_and(|u| b < u && a.starts_with(p.as_bytes())));
    }

    #[test]
    fn keys_length_prefix_separates_rows() {
        let p1 = RowPrefix::new(b"ab");
        let p2 = RowPrefix::new(b"a");
        assert_eq!(p1.column_of(&p2.cell_key(b"bc")), None);
    }

    #[test]
    fn keys_match_documented_example() {
        let p = RowPrefix::new(b"k");
        let key = p.cell_key(b"c");
        assert_eq!(key.len(), 12);
        assert_eq!(
            &key[..8],
            Partitioner::Murmur3
                .token(b"k")
                .to_sortable_bytes()
                .as_slice()
        );
        assert_eq!(&key[8..], &[0x00, 0x01, b'k', b'c']);
    }

    #[test]
    fn keys_upper_bound_carries_over_ff() {
        let p = RowPrefix {
            bytes: vec![1, 0xff, 0xff],
        };
        assert_eq!(p.upper_bound(), Some(vec![2]));
        let all = RowPrefix {
            bytes: vec![0xff, 0xff],
        };
        assert_eq!(all.upper_bound(), None);
    }

    #[test]
    fn keys_rows_order_by_token() {
        let keys: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"e"];
        let mut by_prefix: Vec<(Vec<u8>, Token)> = keys
            .iter()
            .map(|k| (RowPrefix::new(k).bytes, Partitioner::Murmur3.token(k)))
            .collect();
        by_prefix.sort();
        assert!(by_prefix.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
