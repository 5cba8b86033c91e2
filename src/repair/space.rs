//! The token space as anti-entropy sees it: every engine key has a point `x` in
//! `[0, 2^128)`, and the hash tree's buckets are aligned prefixes of that space.
//!
//! # Points
//! `x` of a key is its token's ring position, left-aligned in 128 bits: murmur3 tokens
//! (64 bits) are shifted up by 64, md5 tokens (128 bits) are taken as they are. Because
//! engine keys start with the token's sortable bytes (`crate::replica::keys`), `x` is the
//! key's first 8 (murmur3) or 16 (md5) bytes read big-endian and left-aligned: key order is
//! `x` order. The *unit* is the distance between two adjacent tokens (2^64 or 1).
//!
//! # Buckets
//! A bucket at depth `bits` (0..=[`MAX_BITS`]) with prefix `p` holds the points whose top
//! `bits` bits are `p`; depth 0 is the whole space. The hash tree keeps its leaves at one
//! depth ([`super::tree`]); deeper buckets are computed by scanning a leaf. Depths stay
//! at most 64, so every bucket bound is a multiple of the murmur3 unit and maps exactly
//! onto engine-key bounds.
//!
//! # Ranges
//! A ring range `(start, end]` is one or two inclusive point intervals ([`intervals`]).
//! Every set of points here is a list of inclusive intervals `[lo, hi]`; `hi` inclusive
//! avoids 2^128, which does not fit in a u128.
//!
//! Pure functions; no threading concerns.

use crate::replica::keys::token_len;
use crate::replica::range::KeySpan;
use crate::replica::TokenRange;
use crate::ring::Partitioner;

/// The deepest bucket depth (bits of prefix).
pub const MAX_BITS: u32 = 64;

/// An inclusive interval of points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The first point.
    pub lo: u128,
    /// The last point (inclusive).
    pub hi: u128,
}

impl Interval {
    /// The intersection of two intervals, if any.
    pub fn meet(self, other: Interval) -> Option<Interval> {
        let lo = self.lo.max(other.lo);
        let hi = self.hi.min(other.hi);
        (lo <= hi).then_some(Interval { lo, hi })
    }

    /// True when `self` lies inside `other`.
    pub fn within(self, other: Interval) -> bool {
        other.lo <= self.lo && self.hi <= other.hi
    }

    /// The engine-key span of the interval's points under `partitioner`: keys whose
    /// token point is in `[lo, hi]`. Both bounds must be multiples of the partitioner's
    /// unit (bucket and range bounds are).
    pub fn key_span(self, partitioner: Partitioner) -> KeySpan {
        let n = token_len(partitioner);
        let bytes = |x: u128| x.to_be_bytes()[..n].to_vec();
        KeySpan {
            lower: Some(bytes(self.lo)),
            upper: self.hi.checked_add(1).map(bytes),
        }
    }
}

/// The distance between adjacent token points.
pub fn unit(partitioner: Partitioner) -> u128 {
    match partitioner {
        Partitioner::Murmur3 => 1 << 64,
        Partitioner::Md5 => 1,
    }
}

/// The point of an engine key (its leading token bytes, left-aligned); 0 for a key too
/// short to hold a token (never stored: apply checks every key).
pub fn point_of_key(partitioner: Partitioner, key: &[u8]) -> u128 {
    let n = token_len(partitioner);
    let Some(token) = key.get(..n) else {
        return 0;
    };
    let mut buf = [0u8; 16];
    buf[..n].copy_from_slice(token);
    u128::from_be_bytes(buf)
}

/// The point of a token.
fn point_of_token(partitioner: Partitioner, token: &crate::ring::Token) -> u128 {
    let pos = Partitioner::position(token);
    match partitioner {
        Partitioner::Murmur3 => pos << 64,
        Partitioner::Md5 => pos,
    }
}

/// The points of the ring range `(start, end]`, in ring order from `start`: one interval,
/// or two for a range that wraps (`start >= end`; `start == end` is the whole ring).
pub fn intervals(partitioner: Partitioner, range: TokenRange) -> Vec<Interval> {
    let u = unit(partitioner);
    let s = point_of_token(partitioner, &range.start);
    let e = point_of_token(partitioner, &range.end);
    // The last point of token `e`'s unit: e + u - 1 never overflows (e <= 2^128 - u).
    let end_hi = e + (u - 1);
    if s < e {
        return vec![Interval {
            lo: s + u,
            hi: end_hi,
        }];
    }
    let mut out = Vec::with_capacity(2);
    if let Some(lo) = s.checked_add(u) {
        out.push(Interval { lo, hi: u128::MAX });
    }
    out.push(Interval { lo: 0, hi: end_hi });
    out
}

/// The points of the bucket `prefix` at depth `bits` (`bits <= 128`).
pub fn bucket(bits: u32, prefix: u128) -> Interval {
    if bits == 0 {
        return Interval {
            lo: 0,
            hi: u128::MAX,
        };
    }
    let shift = 128 - bits;
    let lo = prefix << shift;
    let span = if shift == 0 { 0 } else { (1u128 << shift) - 1 };
    Interval { lo, hi: lo | span }
}

/// The prefix at depth `bits` of point `x`.
pub fn prefix_of(x: u128, bits: u32) -> u128 {
    if bits == 0 {
        0
    } else {
        x >> (128 - bits)
    }
}

/// The parts of `within` that lie in any of `set`.
pub fn clip(within: Interval, set: &[Interval]) -> Vec<Interval> {
    set.iter().filter_map(|i| i.meet(within)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::keys::token_prefix;
    use crate::ring::Token;

    fn m3(v: i64) -> Token {
        Token::Murmur3(v)
    }

    fn point(t: i64) -> u128 {
        point_of_key(Partitioner::Murmur3, &token_prefix(m3(t)))
    }

    #[test]
    fn key_points_follow_token_order() {
        let ts = [i64::MIN, -5, -1, 0, 1, 99, i64::MAX];
        for w in ts.windows(2) {
            assert!(point(w[0]) < point(w[1]));
        }
        assert_eq!(point(i64::MIN), 0);
        assert_eq!(point(i64::MAX), u128::MAX - ((1 << 64) - 1));
    }

    #[test]
    fn range_intervals_hold_exactly_the_range_tokens() {
        let p = Partitioner::Murmur3;
        let ranges = [
            (-5, 10),
            (10, -5),
            (i64::MAX, 0),
            (0, i64::MAX),
            (7, 7),
            (i64::MIN, i64::MAX),
        ];
        let probes = [
            i64::MIN,
            i64::MIN + 1,
            -6,
            -5,
            -4,
            0,
            7,
            9,
            10,
            11,
            i64::MAX,
        ];
        for (s, e) in ranges {
            let r = TokenRange {
                start: m3(s),
                end: m3(e),
            };
            let set = intervals(p, r);
            for t in probes {
                let x = point(t);
                let inside = set.iter().any(|i| i.lo <= x && x <= i.hi);
                assert_eq!(inside, r.contains(m3(t)), "({s}, {e}] token {t}");
            }
        }
    }

    #[test]
    fn bucket_key_spans_bound_the_bucket_keys() {
        let p = Partitioner::Murmur3;
        for bits in [1u32, 8, 16, 24, 64] {
            for t in [i64::MIN, -77, 0, 12345, i64::MAX] {
                let x = point(t);
                let b = bucket(bits, prefix_of(x, bits));
                assert!(b.lo <= x && x <= b.hi);
                let span = b.key_span(p);
                let mut key = token_prefix(m3(t));
                key.extend_from_slice(&[0, 1, b'k', b'c']);
                assert!(span.lower.as_deref().is_none_or(|l| l <= key.as_slice()));
                assert!(span.upper.as_deref().is_none_or(|u| key.as_slice() < u));
            }
        }
        assert_eq!(bucket(0, 0).hi, u128::MAX);
        assert!(bucket(64, u64::MAX as u128).key_span(p).upper.is_none());
    }
}
