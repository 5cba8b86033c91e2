//! Partitioners: the hash from a partition key to a [`Token`], and the geometry of each
//! token space (ring size, clockwise distance, positions).
//!
//! - `murmur3` (default): Cassandra's `Murmur3Partitioner`. The token is `h1` of
//!   Cassandra's murmur3 x64_128 with seed 0 (see [`super::murmur3`]), as a signed 64-bit
//!   value; `i64::MIN` is the ring's minimum token and is normalised to `i64::MAX` (as
//!   Cassandra does), so no key maps onto the minimum.
//! - `md5`: Cassandra's `RandomPartitioner` / Dynamo's MD5 ring: the absolute value of the
//!   MD5 digest read as a signed 128-bit big-endian integer, in `0..=2^127`.
//!
//! An empty key maps to the minimum token of the space (Cassandra does the same;
//! Cassandra's `RandomPartitioner` minimum is `-1`, which an unsigned `Md5` token cannot
//! express, so Sibyl uses `0`).
//!
//! Positions: every token has a ring position in `0..ring_size()` with the minimum token at
//! 0; arithmetic on the ring (ownership, midpoints) is done on positions.
//! The partitioner is chosen once per cluster and travels in every gossip SYN; a node with
//! another partitioner is refused.

use rand::Rng;
use std::fmt;
use std::str::FromStr;

use super::token::Token;

/// The hash function from partition keys to tokens. Chosen once per cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Partitioner {
    /// Cassandra's Murmur3Partitioner: 64-bit signed tokens.
    #[default]
    Murmur3,
    /// Cassandra's RandomPartitioner / Dynamo: 128-bit MD5 tokens in `0..=2^127`.
    Md5,
}

/// Error for an unknown partitioner name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("unknown partitioner {name:?} (expected murmur3 or md5)")]
pub struct UnknownPartitioner {
    /// The name that was given.
    pub name: String,
}

const MD5_MAX: u128 = sibyl_protocol::token::MD5_MAX_TOKEN;

impl Partitioner {
    /// Short name used in configuration and on the wire: `murmur3` or `md5`.
    pub fn name(&self) -> &'static str {
        match self {
            Partitioner::Murmur3 => "murmur3",
            Partitioner::Md5 => "md5",
        }
    }

    /// The token of a partition key (computed by [`sibyl_protocol::token`], which clients
    /// use to route requests).
    pub fn token(&self, key: &[u8]) -> Token {
        match self {
            Partitioner::Murmur3 => Token::Murmur3(sibyl_protocol::token::murmur3_token(key)),
            Partitioner::Md5 => Token::Md5(sibyl_protocol::token::md5_token(key)),
        }
    }

    /// The smallest token of this space (position 0).
    pub fn min_token(&self) -> Token {
        match self {
            Partitioner::Murmur3 => Token::Murmur3(i64::MIN),
            Partitioner::Md5 => Token::Md5(0),
        }
    }

    /// Number of distinct positions on the ring: `2^64` for murmur3, `2^127 + 1` for md5.
    pub fn ring_size(&self) -> u128 {
        match self {
            Partitioner::Murmur3 => 1u128 << 64,
            Partitioner::Md5 => MD5_MAX + 1,
        }
    }

    /// True when `token` belongs to this partitioner's space.
    pub fn owns_token(&self, token: &Token) -> bool {
        matches!(
            (self, token),
            (Partitioner::Murmur3, Token::Murmur3(_)) | (Partitioner::Md5, Token::Md5(_))
        )
    }

    /// The partitioner whose space `token` belongs to.
    pub fn of_token(token: &Token) -> Partitioner {
        match token {
            Token::Murmur3(_) => Partitioner::Murmur3,
            Token::Md5(_) => Partitioner::Md5,
        }
    }

    /// Ring position of a token (`0` is the minimum token). Tokens of the other space are
    /// mapped by their own space's rule; callers keep one space per ring.
    pub fn position(token: &Token) -> u128 {
        match *token {
            Token::Murmur3(v) => (i128::from(v) - i128::from(i64::MIN)) as u128,
            Token::Md5(v) => v,
        }
    }

    /// The token at ring position `pos` (taken modulo the ring size).
    pub fn token_at(&self, pos: u128) -> Token {
        let pos = pos % self.ring_size();
        match self {
            Partitioner::Murmur3 => Token::Murmur3((pos as i128 + i128::from(i64::MIN)) as i64),
            Partitioner::Md5 => Token::Md5(pos),
        }
    }

    /// Clockwise distance from `from` to `to`, in positions (`0` when equal).
    pub fn distance(&self, from: &Token, to: &Token) -> u128 {
        let (a, b) = (Self::position(from), Self::position(to));
        if b >= a {
            b - a
        } else {
            self.ring_size() - a + b
        }
    }

    /// A uniformly random token (never the minimum token for murmur3).
    pub fn random_token<R: Rng + ?Sized>(&self, rng: &mut R) -> Token {
        match self {
            Partitioner::Murmur3 => Token::Murmur3(rng.gen_range(i64::MIN + 1..=i64::MAX)),
            Partitioner::Md5 => Token::Md5(rng.gen_range(0..=MD5_MAX)),
        }
    }
}

impl fmt::Display for Partitioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Partitioner {
    type Err = UnknownPartitioner;

    /// Accepts `murmur3` / `md5` and Cassandra's class names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "murmur3" | "murmur3partitioner" | "org.apache.cassandra.dht.murmur3partitioner" => {
                Ok(Partitioner::Murmur3)
            }
            "md5"
            | "random"
            | "randompartitioner"
            | "org.apache.cassandra.dht.randompartitioner" => Ok(Partitioner::Md5),
            _ => Err(UnknownPartitioner {
                name: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioner_murmur3_token_is_h1() {
        assert_eq!(
            Partitioner::Murmur3.token(b"123"),
            Token::Murmur3(-7468325962851647638)
        );
    }

    #[test]
    fn partitioner_empty_key_maps_to_min_token() {
        assert_eq!(Partitioner::Murmur3.token(b""), Token::Murmur3(i64::MIN));
        assert_eq!(Partitioner::Md5.token(b""), Token::Md5(0));
    }

    #[test]
    fn partitioner_md5_token_is_abs_of_signed_digest() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661 (top bit clear: value as is).
        assert_eq!(
            Partitioner::Md5.token(b"a"),
            Token::Md5(0x0cc175b9c0f1b6a831c399e269772661)
        );
        // md5("b") = 92eb5ffee6ae2fec3ad71c777531578f (top bit set: two's complement abs).
        let raw: u128 = 0x92eb5ffee6ae2fec3ad71c777531578f;
        assert_eq!(
            Partitioner::Md5.token(b"b"),
            Token::Md5((!raw).wrapping_add(1))
        );
    }

    #[test]
    fn partitioner_positions_roundtrip() {
        for p in [Partitioner::Murmur3, Partitioner::Md5] {
            for pos in [0u128, 1, 12345, p.ring_size() - 1] {
                assert_eq!(Partitioner::position(&p.token_at(pos)), pos);
            }
        }
        assert_eq!(Partitioner::position(&Token::Murmur3(i64::MIN)), 0);
    }

    #[test]
    fn partitioner_distance_wraps() {
        let p = Partitioner::Murmur3;
        let a = Token::Murmur3(i64::MAX - 1);
        let b = Token::Murmur3(i64::MIN + 1);
        assert_eq!(p.distance(&a, &b), 3);
        assert_eq!(p.distance(&b, &a), p.ring_size() - 3);
    }

    #[test]
    fn partitioner_parses_names() {
        assert_eq!("murmur3".parse::<Partitioner>(), Ok(Partitioner::Murmur3));
        assert_eq!(
            "org.apache.cassandra.dht.RandomPartitioner".parse::<Partitioner>(),
            Ok(Partitioner::Md5)
        );
        assert!("sha1".parse::<Partitioner>().is_err());
    }
}
