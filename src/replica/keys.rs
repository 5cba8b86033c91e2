//! Engine key encoding: one storage-engine key per cell, one per row tombstone.
//!
//! # Format (version 1)
//! ```text
//! engine key  = token partition_key_len partition_key column_name
//! token       = the partition key's token under the cluster's partitioner, as
//!               Token::to_sortable_bytes: murmur3 = 8 bytes (the i64 with its sign bit
//!               flipped, big-endian), md5 = 16 bytes (the u128, big-endian); byte order
//!               = token order
//! partition_key_len = u16 big-endian
//! partition_key     = partition_key_len bytes
//! column_name       = the remaining bytes: a column name (never empty), or nothing for
//!                     the row's tombstone (see crate::replica::row_tombstone)
//! ```
//! Worked example (murmur3): partition key `b"k"` (token `t`), column `b"c"`:
//! `sortable(t)[8] 00 01 6b 63` (12 bytes). Under md5 the same cell is 20 bytes: the
//! 16-byte md5 token, then `00 01 6b 63`. The murmur3 layout is the one every data
//! directory written before the partitioner was configurable holds; it must not change.
//!
//! Why: a row (all columns of one partition key) is then the contiguous key range that
//! starts with `token | len | key` ([`RowPrefix`]); its columns come out sorted by name,
//! so a column slice is one bounded scan, and a token range of the ring is a contiguous
//! range of engine keys (streaming and Merkle trees read sequentially). The length prefix
//! keeps two keys with the same token apart (`"ab"`+`"c"` vs `"a"`+`"bc"`), and makes the
//! row prefix prefix-free: a key starts with a row's prefix only if it belongs to that row.
//! The row tombstone's key is the prefix itself, so it sorts before every column of its
//! row.
//!
//! A data directory holds keys of one partitioner only (the node refuses to start with a
//! partitioner other than the one its ring state file records).
//!
//! Pure functions; no threading concerns.

use crate::ring::token::{MD5_TOKEN_BYTES, MURMUR3_TOKEN_BYTES};
use crate::ring::{Partitioner, Token};

/// Longest partition key accepted (bytes). Fits the u16 length; leaves room in the
/// engine's 64 KiB key cap for the token and a column name.
pub const MAX_PARTITION_KEY_LEN: usize = 16 * 1024;
/// Longest column name accepted (bytes).
pub const MAX_COLUMN_NAME_LEN: usize = 16 * 1024;

/// Length of the token part of an engine key under `partitioner` (the memtable prefix
/// bloom is keyed on it).
pub const fn token_len(partitioner: Partitioner) -> usize {
    match partitioner {
        Partitioner::Murmur3 => MURMUR3_TOKEN_BYTES,
        Partitioner::Md5 => MD5_TOKEN_BYTES,
    }
}

/// Bytes of the partition key length field.
const KEY_LEN_BYTES: usize = 2;

/// The engine-key prefix shared by every cell of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPrefix {
    bytes: Vec<u8>,
}

/// The parts of an engine key ([`split_engine_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    /// The row's token.
    pub token: Token,
    /// The partition key.
    pub partition_key: &'a [u8],
    /// The column name; empty for the row tombstone.
    pub column: &'a [u8],
}

impl<'a> KeyParts<'a> {
    /// Length of the row prefix within the engine key.
    pub fn prefix_len(&self, partitioner: Partitioner) -> usize {
        token_len(partitioner) + KEY_LEN_BYTES + self.partition_key.len()
    }
}

/// Writes the sortable bytes of `token` without allocating.
fn push_token(out: &mut Vec<u8>, token: Token) {
    match token {
        Token::Murmur3(v) => out.extend_from_slice(&((v as u64) ^ (1u64 << 63)).to_be_bytes()),
        Token::Md5(v) => out.extend_from_slice(&v.to_be_bytes()),
    }
}

/// Splits an engine key into token, partition key and column; `None` when the bytes are
/// not a well-formed key of `partitioner` (too short, length field past the end, or a
/// token outside the space).
pub fn split_engine_key(partitioner: Partitioner, key: &[u8]) -> Option<KeyParts<'_>> {
    let tl = token_len(partitioner);
    let token = Token::from_sortable_bytes(key.get(..tl)?)?;
    let len_bytes: [u8; KEY_LEN_BYTES] = key.get(tl..tl + KEY_LEN_BYTES)?.try_into().ok()?;
    let len = usize::from(u16::from_be_bytes(len_bytes));
    let start = tl + KEY_LEN_BYTES;
    let partition_key = key.get(start..start + len)?;
    let column = key.get(start + len..)?;
    Some(KeyParts {
        token,
        partition_key,
        column,
    })
}

impl RowPrefix {
    /// The prefix of `partition_key`'s row under `partitioner`. The caller has checked the
    /// key's length against [`MAX_PARTITION_KEY_LEN`].
    pub fn new(partitioner: Partitioner, partition_key: &[u8]) -> RowPrefix {
        let token = partitioner.token(partition_key);
        let mut bytes =
            Vec::with_capacity(token_len(partitioner) + KEY_LEN_BYTES + partition_key.len() + 16);
        push_token(&mut bytes, token);
        let len = u16::try_from(partition_key.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(partition_key);
        RowPrefix { bytes }
    }

    /// The prefix bytes: also the engine key of the row's tombstone.
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

    /// The column name of an engine key inside this row, `None` if the key is not in it
    /// (or is the row tombstone).
    pub fn column_of<'a>(&self, engine_key: &'a [u8]) -> Option<&'a [u8]> {
        engine_key
            .strip_prefix(self.bytes.as_slice())
            .filter(|c| !c.is_empty())
    }

    /// The smallest key greater than every key of this row (exclusive scan bound), or
    /// `None` when no such key exists (the prefix is all `0xFF`).
    pub fn upper_bound(&self) -> Option<Vec<u8>> {
        successor_prefix(&self.bytes)
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or `None`
/// when `prefix` is all `0xFF` (nothing is greater).
pub fn successor_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The sortable bytes of `token` (the engine-key prefix of every row with that token).
pub fn token_prefix(token: Token) -> Vec<u8> {
    let mut out = Vec::with_capacity(MD5_TOKEN_BYTES);
    push_token(&mut out, token);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M3: Partitioner = Partitioner::Murmur3;

    #[test]
    fn keys_row_cells_share_prefix_and_sort_by_column() {
        let p = RowPrefix::new(M3, b"alice");
        let a = p.cell_key(b"a");
        let b = p.cell_key(b"b");
        assert!(a < b);
        assert_eq!(p.column_of(&a), Some(&b"a"[..]));
        assert_eq!(p.column_of(p.as_bytes()), None);
        assert!(p
            .upper_bound()
            .is_some_and(|u| b < u && a.starts_with(p.as_bytes())));
    }

    #[test]
    fn keys_length_prefix_separates_rows() {
        let p1 = RowPrefix::new(M3, b"ab");
        let p2 = RowPrefix::new(M3, b"a");
        assert_eq!(p1.column_of(&p2.cell_key(b"bc")), None);
    }

    #[test]
    fn keys_match_documented_example() {
        let p = RowPrefix::new(M3, b"k");
        let key = p.cell_key(b"c");
        assert_eq!(key.len(), 12);
        assert_eq!(&key[..8], M3.token(b"k").to_sortable_bytes().as_slice());
        assert_eq!(&key[8..], &[0x00, 0x01, b'k', b'c']);
        let md5 = RowPrefix::new(Partitioner::Md5, b"k").cell_key(b"c");
        assert_eq!(md5.len(), 20);
        assert_eq!(
            &md5[..16],
            Partitioner::Md5.token(b"k").to_sortable_bytes().as_slice()
        );
        assert_eq!(&md5[16..], &[0x00, 0x01, b'k', b'c']);
    }

    #[test]
    fn keys_murmur3_layout_is_unchanged() {
        // The bytes every murmur3 data directory holds: fixed, never to change.
        let key = RowPrefix::new(M3, b"alice").cell_key(b"age");
        let t = match M3.token(b"alice") {
            Token::Murmur3(v) => v,
            Token::Md5(_) => unreachable!(),
        };
        let mut expected = ((t as u64) ^ (1u64 << 63)).to_be_bytes().to_vec();
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"aliceage");
        assert_eq!(key, expected);
    }

    #[test]
    fn keys_split_inverts_the_encoding_and_refuses_garbage() {
        for p in [M3, Partitioner::Md5] {
            let row = RowPrefix::new(p, b"key");
            let k = row.cell_key(b"col");
            let parts = split_engine_key(p, &k).unwrap();
            assert_eq!(parts.token, p.token(b"key"));
            assert_eq!(parts.partition_key, b"key");
            assert_eq!(parts.column, b"col");
            assert_eq!(parts.prefix_len(p), row.as_bytes().len());
            let tomb = split_engine_key(p, row.as_bytes()).unwrap();
            assert!(tomb.column.is_empty());
            for n in 0..row.as_bytes().len() {
                assert_eq!(split_engine_key(p, &k[..n]), None, "prefix {n}");
            }
        }
        // An md5 value above 2^127 is not a token.
        let mut bad = vec![0xff; 16];
        bad.extend_from_slice(&[0, 1, b'k']);
        assert_eq!(split_engine_key(Partitioner::Md5, &bad), None);
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
        for part in [M3, Partitioner::Md5] {
            let keys: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
            let mut by_prefix: Vec<(Vec<u8>, Token)> = keys
                .iter()
                .map(|k| (RowPrefix::new(part, k).bytes, part.token(k)))
                .collect();
            by_prefix.sort();
            assert!(by_prefix.windows(2).all(|w| w[0].1 <= w[1].1), "{part}");
        }
    }
}
