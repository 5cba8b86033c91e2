//! The bloom filter of a table: one filter over every key of the file, built from the
//! 64-bit [`key_hash`] of each key with double hashing (Kirsch & Mitzenmacher, "Less
//! Hashing, Same Performance"): probe `i` tests bit `range(h1 + i*h2)`.
//!
//! The block contents are the bit array followed by one byte holding the probe count, so
//! a reader needs no parameters besides the block. An empty block means "no filter": it
//! answers "maybe" to every key. The hash is part of the format: changing it changes
//! which bits are set and needs a new format version.
//!
//! Everything here is pure and thread-safe.

use super::format::MAX_BLOOM_PROBES;

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

/// 64x64 -> 128 bit multiply, folded by xor: every input bit reaches many output bits.
#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Murmur3's 64-bit finaliser: full avalanche of the state.
#[inline]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The stable 64-bit hash of a key used by the filter (a small wyhash-style hash: 8-byte
/// words folded in with a 128-bit multiply, the tail padded, the length mixed in).
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h = P0 ^ (key.len() as u64).wrapping_mul(P1);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = folded_mul(u64::from_le_bytes(w) ^ P1, h ^ P2);
    }
    let rest = chunks.remainder();
    let mut w = [0u8; 8];
    if let Some(dst) = w.get_mut(..rest.len()) {
        dst.copy_from_slice(rest);
    }
    h = folded_mul(u64::from_le_bytes(w) ^ P2, h ^ P0);
    fmix64(h)
}

/// Number of probes for `bits_per_key`: `bits_per_key * ln 2` minimises the false
/// positive rate, capped to `1..=MAX_BLOOM_PROBES`.
pub fn probes_for(bits_per_key: usize) -> u8 {
    let k = (bits_per_key as f64 * std::f64::consts::LN_2).round();
    k.clamp(1.0, f64::from(MAX_BLOOM_PROBES)) as u8
}

/// Maps a 64-bit value onto `0..n` without a division (Lemire's fast range).
#[inline]
fn range(x: u64, n: u64) -> u64 {
    ((u128::from(x) * u128::from(n)) >> 64) as u64
}

#[inline]
fn probe_start(hash: u64) -> (u64, u64) {
    // The second hash must be odd-ish and differ from the first; rotating mixes the
    // high half (which `range` favours) into the step.
    (hash, hash.rotate_left(32) | 1)
}

/// Builds the filter block contents for keys with these hashes. `bits_per_key == 0`
/// builds an empty block (no filter).
pub fn build(hashes: &[u64], bits_per_key: usize) -> Vec<u8> {
    if bits_per_key == 0 {
        return Vec::new();
    }
    let probes = probes_for(bits_per_key);
    // At least 64 bits so that tiny tables do not get a useless filter.
    let nbits = hashes.len().saturating_mul(bits_per_key).max(64);
    let nbytes = nbits.div_ceil(8);
    let nbits = (nbytes * 8) as u64;
    let mut out = vec![0u8; nbytes + 1];
    for &h in hashes {
        let (mut x, step) = probe_start(h);
        for _ in 0..probes {
            let bit = range(x, nbits);
            if let Some(b) = out.get_mut((bit / 8) as usize) {
                *b |= 1 << (bit % 8);
            }
            x = x.wrapping_add(step);
        }
    }
    if let Some(last) = out.last_mut() {
        *last = probes;
    }
    out
}

/// Checks a filter block's shape: empty, or at least one byte of bits and a probe count in
/// `1..=MAX_BLOOM_PROBES`.
pub fn is_well_formed(block: &[u8]) -> bool {
    match block.split_last() {
        None => true,
        Some((&probes, bits)) => !bits.is_empty() && (1..=MAX_BLOOM_PROBES).contains(&probes),
    }
}

/// False only if the key with this hash was certainly not added. `block` must satisfy
/// [`is_well_formed`]; a malformed block answers "maybe".
#[inline]
pub fn may_contain(block: &[u8], hash: u64) -> bool {
    let Some((&probes, bits)) = block.split_last() else {
        return true;
    };
    if bits.is_empty() {
        return true;
    }
    let nbits = (bits.len() * 8) as u64;
    let (mut x, step) = probe_start(hash);
    for _ in 0..probes {
        let bit = range(x, nbits);
        match bits.get((bit / 8) as usize) {
            Some(b) if b & (1 << (bit % 8)) != 0 => {}
            _ => return false,
        }
        x = x.wrapping_add(step);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_finds_every_added_key() {
        let keys: Vec<Vec<u8>> = (0..5000u32)
            .map(|i| format!("key{i}").into_bytes())
            .collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
        let f = build(&hashes, 10);
        assert!(is_well_formed(&f));
        assert!(keys.iter().all(|k| may_contain(&f, key_hash(k))));
    }

    #[test]
    fn bloom_false_positive_rate_is_near_one_percent() {
        let hashes: Vec<u64> = (0..10_000u32)
            .map(|i| key_hash(format!("present-{i:08}").as_bytes()))
            .collect();
        let f = build(&hashes, 10);
        let fp = (0..10_000u32)
            .filter(|i| may_contain(&f, key_hash(format!("absent-{i:08}").as_bytes())))
            .count();
        assert!(fp < 200, "false positives: {fp} of 10000");
    }

    #[test]
    fn bloom_empty_block_answers_maybe() {
        assert!(may_contain(&[], key_hash(b"x")));
        assert!(build(&[1, 2, 3], 0).is_empty());
    }

    #[test]
    fn bloom_of_no_keys_rejects_keys() {
        let f = build(&[], 10);
        assert!(!may_contain(&f, key_hash(b"anything")));
    }

    #[test]
    fn key_hash_distinguishes_length_and_tail() {
        assert_ne!(key_hash(b""), key_hash(b"\0"));
        assert_ne!(key_hash(b"\0"), key_hash(b"\0\0"));
        assert_ne!(key_hash(b"abcdefgh"), key_hash(b"abcdefgh\0"));
        assert_ne!(key_hash(b"abcdefghi"), key_hash(b"abcdefghj"));
    }
}
