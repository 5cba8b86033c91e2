//! The token of a partition key: the hash a client needs to route a request to the node
//! that owns the key, exactly as the nodes compute it (`doc/wire_format.md`, section
//! "Routing: token of a key").
//!
//! - `murmur3` (the default partitioner, Cassandra's `Murmur3Partitioner`): `h1` of
//!   Cassandra's variant of MurmurHash3 x64_128 with seed 0 ([`cassandra_x64_128`]), as a
//!   signed 64-bit value; `i64::MIN` becomes `i64::MAX` (the minimum token belongs to no
//!   key) and the empty key maps to `i64::MIN` ([`murmur3_token`]).
//! - `md5` (Cassandra's `RandomPartitioner`): the absolute value of the MD5 digest read as
//!   a signed 128-bit big-endian integer, in `0..=2^127`; the empty key maps to `0`
//!   ([`md5_token`]).
//!
//! [`token_of`] gives either as the `i128` the TOPOLOGY response carries node tokens in, so
//! a key's token and a node's token compare as plain integers. [`TokenFunction`] is the
//! same choice as a value.
//!
//! Pure functions; no state.

use md5::{Digest, Md5};

/// Seed of the murmur3 partitioner's hash.
pub const MURMUR3_SEED: u64 = 0;

/// Name of the murmur3 partitioner in the topology.
pub const MURMUR3: &str = "murmur3";
/// Name of the md5 partitioner in the topology.
pub const MD5: &str = "md5";

/// Largest md5 token, `2^127` (the absolute value of `i128::MIN`).
pub const MD5_MAX_TOKEN: u128 = 1u128 << 127;

const C1: u64 = 0x87c3_7b91_1142_53d5;
const C2: u64 = 0x4cf5_ad43_2745_937f;

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

fn mix_k1(k1: u64) -> u64 {
    k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2)
}

fn mix_k2(k2: u64) -> u64 {
    k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1)
}

/// Cassandra's `MurmurHash.hash3_x64_128(key, seed)`: returns `(h1, h2)` as signed 64-bit
/// values. The murmur3 partitioner uses `h1` with seed [`MURMUR3_SEED`].
///
/// Cassandra reads the 1..15 tail bytes of the key as *signed* Java bytes, so a tail byte
/// `>= 0x80` is sign-extended to 64 bits before it is shifted into place; the reference
/// MurmurHash3 reads them unsigned. The two agree on every key whose length is a multiple
/// of 16 or whose tail bytes are all below `0x80`, and differ otherwise. This is the
/// Cassandra variant (16-byte blocks are read unsigned little-endian, as in both).
pub fn cassandra_x64_128(key: &[u8], seed: u64) -> (i64, i64) {
    let mut h1 = seed;
    let mut h2 = seed;
    let mut blocks = key.chunks_exact(16);
    for block in &mut blocks {
        let (lo, hi) = block.split_at(8);
        let k1 = u64::from_le_bytes(lo.try_into().unwrap_or([0; 8]));
        let k2 = u64::from_le_bytes(hi.try_into().unwrap_or([0; 8]));
        h1 ^= mix_k1(k1);
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let mut k1: u64 = 0;
    let mut k2: u64 = 0;
    for (i, &b) in tail.iter().enumerate() {
        // The Cassandra quirk: `(long) byte` sign-extends.
        let signed = b as i8 as i64 as u64;
        if i < 8 {
            k1 ^= signed << (8 * i);
        } else {
            k2 ^= signed << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        h2 ^= mix_k2(k2);
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(k1);
    }
    let len = key.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1 as i64, h2 as i64)
}

/// The murmur3 partitioner's token of `key`: `h1` of [`cassandra_x64_128`] with seed 0,
/// `i64::MIN` normalised to `i64::MAX`; the empty key maps to `i64::MIN`.
pub fn murmur3_token(key: &[u8]) -> i64 {
    if key.is_empty() {
        return i64::MIN;
    }
    let h1 = cassandra_x64_128(key, MURMUR3_SEED).0;
    if h1 == i64::MIN {
        i64::MAX
    } else {
        h1
    }
}

/// The md5 partitioner's token of `key`: the absolute value of the MD5 digest read as a
/// signed 128-bit big-endian integer (so `0..=2^127`); the empty key maps to `0`.
pub fn md5_token(key: &[u8]) -> u128 {
    if key.is_empty() {
        return 0;
    }
    let digest: [u8; 16] = Md5::digest(key).into();
    let v = u128::from_be_bytes(digest);
    // abs() of the two's-complement value; 0x80..00 becomes 2^127.
    if v & MD5_MAX_TOKEN != 0 {
        (!v).wrapping_add(1)
    } else {
        v
    }
}

/// The hash of one partitioner, chosen by its topology name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenFunction {
    /// `murmur3`: [`murmur3_token`], tokens `i64::MIN..=i64::MAX`.
    Murmur3,
    /// `md5`: [`md5_token`], tokens `0..=2^127`.
    Md5,
}

impl TokenFunction {
    /// The function of a partitioner named as in the topology (`murmur3` or `md5`); `None`
    /// for any other name.
    pub fn from_name(name: &str) -> Option<TokenFunction> {
        match name {
            MURMUR3 => Some(TokenFunction::Murmur3),
            MD5 => Some(TokenFunction::Md5),
            _ => None,
        }
    }

    /// The partitioner's name in the topology.
    pub fn name(self) -> &'static str {
        match self {
            TokenFunction::Murmur3 => MURMUR3,
            TokenFunction::Md5 => MD5,
        }
    }

    /// The token of `key` in the topology's `i128` encoding (murmur3 sign-extended, md5 as
    /// is).
    pub fn token(self, key: &[u8]) -> i128 {
        match self {
            TokenFunction::Murmur3 => i128::from(murmur3_token(key)),
            TokenFunction::Md5 => md5_token_as_i128(md5_token(key)),
        }
    }
}

/// An md5 token as the topology's `i128`. Every md5 token but `2^127` fits; `2^127` (one
/// past `i128::MAX`) saturates to `i128::MAX`, exactly as the nodes encode their own
/// tokens in the topology, so keys and node tokens stay comparable.
fn md5_token_as_i128(t: u128) -> i128 {
    i128::try_from(t).unwrap_or(i128::MAX)
}

/// The token of `key` under the partitioner named `partitioner` in the topology
/// (`"murmur3"` or `"md5"`), as the topology's `i128`; `None` for an unknown name.
pub fn token_of(partitioner: &str, key: &[u8]) -> Option<i128> {
    TokenFunction::from_name(partitioner).map(|f| f.token(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_murmur3_matches_cassandra_vectors() {
        // h1 values Cassandra computes (DataStax C# and elixir-cassandra driver suites).
        let cases: Vec<(Vec<u8>, i64)> = vec![
            (b"123".to_vec(), -7468325962851647638),
            (vec![0xfe; 8], -8927430733708461935),
            (vec![0x00; 16], 5457549051747178710),
            (vec![0xff; 16], -2824192546314762522),
            (vec![0xe2, 0xe7], -8582699461035929883),
            (vec![0xfe; 17], -1672437813826982685),
        ];
        for (key, want) in cases {
            assert_eq!(cassandra_x64_128(&key, 0).0, want, "key {key:02x?}");
            assert_eq!(murmur3_token(&key), want, "key {key:02x?}");
        }
    }

    #[test]
    fn token_empty_key_maps_to_the_minimum() {
        assert_eq!(murmur3_token(b""), i64::MIN);
        assert_eq!(md5_token(b""), 0);
        assert_eq!(token_of("murmur3", b""), Some(i128::from(i64::MIN)));
        assert_eq!(token_of("md5", b""), Some(0));
    }

    #[test]
    fn token_md5_is_abs_of_the_signed_digest() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661 (top bit clear).
        assert_eq!(md5_token(b"a"), 0x0cc175b9c0f1b6a831c399e269772661);
        // md5("b") = 92eb5ffee6ae2fec3ad71c777531578f (top bit set).
        let raw: u128 = 0x92eb5ffee6ae2fec3ad71c777531578f;
        assert_eq!(md5_token(b"b"), (!raw).wrapping_add(1));
        assert_eq!(token_of("md5", b"b"), Some((!raw).wrapping_add(1) as i128));
    }

    #[test]
    fn token_md5_maximum_is_carried_as_i128_max() {
        assert_eq!(md5_token_as_i128(MD5_MAX_TOKEN), i128::MAX);
        assert_eq!(md5_token_as_i128(MD5_MAX_TOKEN - 1), i128::MAX);
        assert_eq!(md5_token_as_i128(7), 7);
    }

    #[test]
    fn token_of_names_and_sign_extension() {
        assert_eq!(token_of("murmur3", b"123"), Some(-7468325962851647638i128));
        assert_eq!(token_of("Murmur3", b"123"), None);
        assert_eq!(token_of("sha1", b"123"), None);
        assert_eq!(TokenFunction::from_name("md5"), Some(TokenFunction::Md5));
        assert_eq!(TokenFunction::Murmur3.name(), "murmur3");
    }
}
