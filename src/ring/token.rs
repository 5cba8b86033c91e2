//! Tokens: positions on the consistent-hashing ring.
//!
//! A [`Token`] is what a partitioner maps a partition key to. Each partitioner has its own
//! token space, so the type is an enum with one variant per partitioner; a ring only ever
//! holds tokens of one variant (checked when a [`crate::ring::Ring`] is built). Within a
//! variant tokens order numerically; `Murmur3` tokens are signed (Cassandra's
//! `LongToken`), `Md5` tokens are the non-negative integers `0..=2^127` (Cassandra's
//! `BigIntegerToken` under `RandomPartitioner`).
//!
//! Tokens are plain values (`Copy`); no threading concerns.

use std::cmp::Ordering;
use std::fmt;

/// A position on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Token {
    /// A Murmur3Partitioner token: `i64::MIN` is reserved as the ring's minimum token and is
    /// never produced for a non-empty key.
    Murmur3(i64),
    /// A RandomPartitioner (MD5) token in `0..=2^127`.
    Md5(u128),
}

/// Number of bytes [`Token::to_sortable_bytes`] writes for a murmur3 token.
pub const MURMUR3_TOKEN_BYTES: usize = 8;
/// Number of bytes [`Token::to_sortable_bytes`] writes for an md5 token.
pub const MD5_TOKEN_BYTES: usize = 16;

impl Token {
    /// Bytes whose lexicographic order is the token order within one partitioner: a murmur3
    /// token is its value with the sign bit flipped, big-endian (8 bytes); an md5 token is its
    /// value big-endian (16 bytes). Storage uses this to lay data out in token order.
    pub fn to_sortable_bytes(&self) -> Vec<u8> {
        match *self {
            Token::Murmur3(v) => ((v as u64) ^ (1u64 << 63)).to_be_bytes().to_vec(),
            Token::Md5(v) => v.to_be_bytes().to_vec(),
        }
    }

    /// Inverse of [`Token::to_sortable_bytes`]; the length selects the partitioner.
    /// Returns `None` for any other length or an md5 value above `2^127`.
    pub fn from_sortable_bytes(bytes: &[u8]) -> Option<Token> {
        if let Ok(b) = <[u8; MURMUR3_TOKEN_BYTES]>::try_from(bytes) {
            let v = u64::from_be_bytes(b) ^ (1u64 << 63);
            return Some(Token::Murmur3(v as i64));
        }
        if let Ok(b) = <[u8; MD5_TOKEN_BYTES]>::try_from(bytes) {
            let v = u128::from_be_bytes(b);
            return (v <= 1u128 << 127).then_some(Token::Md5(v));
        }
        None
    }

    /// True when both tokens come from the same partitioner.
    pub fn same_space(&self, other: &Token) -> bool {
        matches!(
            (self, other),
            (Token::Murmur3(_), Token::Murmur3(_)) | (Token::Md5(_), Token::Md5(_))
        )
    }
}

impl Ord for Token {
    /// Numeric order within a partitioner; all murmur3 tokens sort before all md5 tokens
    /// (an arbitrary but total order, never used on a well-formed ring).
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Token::Murmur3(a), Token::Murmur3(b)) => a.cmp(b),
            (Token::Md5(a), Token::Md5(b)) => a.cmp(b),
            (Token::Murmur3(_), Token::Md5(_)) => Ordering::Less,
            (Token::Md5(_), Token::Murmur3(_)) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Token {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Token {
    /// The decimal value, as Cassandra prints tokens (`nodetool ring`, `token()` in CQL).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Murmur3(v) => write!(f, "{v}"),
            Token::Md5(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_bytes_preserve_murmur3_order() {
        let vals = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let encoded: Vec<Vec<u8>> = vals
            .iter()
            .map(|v| Token::Murmur3(*v).to_sortable_bytes())
            .collect();
        for w in encoded.windows(2) {
            assert!(w[0] < w[1]);
        }
        for v in vals {
            let t = Token::Murmur3(v);
            assert_eq!(Token::from_sortable_bytes(&t.to_sortable_bytes()), Some(t));
        }
    }

    #[test]
    fn sortable_bytes_roundtrip_md5_and_reject_out_of_range() {
        for v in [0u128, 1, 1 << 100, 1 << 127] {
            let t = Token::Md5(v);
            assert_eq!(Token::from_sortable_bytes(&t.to_sortable_bytes()), Some(t));
        }
        let too_big = ((1u128 << 127) + 1).to_be_bytes();
        assert_eq!(Token::from_sortable_bytes(&too_big), None);
        assert_eq!(Token::from_sortable_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn token_orders_numerically_within_space() {
        assert!(Token::Murmur3(-3) < Token::Murmur3(2));
        assert!(Token::Md5(3) < Token::Md5(1 << 126));
        assert!(!Token::Md5(1).same_space(&Token::Murmur3(1)));
    }
}
