//! LWW cells: a timestamp per cell, the last write wins (Cassandra's rule). Concurrent
//! updates to one cell are lost by design; tables that cannot afford that use `causal`.
//!
//! Which of two cells wins is a total order ([`LwwCell::wins_over`]): the higher timestamp;
//! on equal timestamps a tombstone beats a value, a value with an expiry beats one
//! without, the earlier expiry beats the later; then the greater value bytes. Being a
//! total order, "keep the winner" is commutative, associative and idempotent, so replicas
//! and compactions agree whatever order they meet the versions in.
//!
//! Why expiring values rank between tombstones and plain values, earliest expiry first:
//! compaction rewrites an expired value as a tombstone of its timestamp
//! ([`super::policy`]), which beats every value of that timestamp. So an expired value
//! must already beat every value its tombstone would beat, or a replica's outcome would
//! depend on whether it had compacted (a later-expiring or never-expiring value of the
//! same timestamp would survive on one replica and be deleted on another).
//!
//! Format in [`super::format`].

use std::cmp::Ordering;

use sibyl_coding::ByteReader;

use super::format::{LWW_CELL_V1, LWW_FLAGS_KNOWN, LWW_HAS_EXPIRY, LWW_TOMBSTONE};
use super::VersioningError;

/// One LWW cell: a value or a tombstone, with its write timestamp and optional expiry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LwwCell {
    /// The value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Write timestamp, microseconds since the Unix epoch (client- or coordinator-chosen).
    pub timestamp_micros: i64,
    /// The second from which the cell is expired, if it has a TTL. Ignored on tombstones
    /// by the read path, kept for ordering.
    pub expires_at_secs: Option<u64>,
}

fn corrupt(reason: &'static str) -> VersioningError {
    VersioningError::CorruptCell {
        kind: "lww",
        reason,
    }
}

impl LwwCell {
    /// A live value.
    pub fn value(value: Vec<u8>, timestamp_micros: i64) -> Self {
        LwwCell {
            value: Some(value),
            timestamp_micros,
            expires_at_secs: None,
        }
    }

    /// A tombstone.
    pub fn tombstone(timestamp_micros: i64) -> Self {
        LwwCell {
            value: None,
            timestamp_micros,
            expires_at_secs: None,
        }
    }

    /// The same cell with an expiry.
    pub fn with_expiry(mut self, expires_at_secs: u64) -> Self {
        self.expires_at_secs = Some(expires_at_secs);
        self
    }

    /// True for a tombstone.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// True when the cell has expired at `now_secs`.
    pub fn is_expired(&self, now_secs: u64) -> bool {
        self.expires_at_secs.is_some_and(|t| now_secs >= t)
    }

    /// The LWW order (see the module documentation); `Greater` means `self` wins.
    pub fn lww_cmp(&self, other: &LwwCell) -> Ordering {
        // Expiring before never-expiring, then the earlier expiry: `Reverse` of the
        // expiry with "none" as the largest.
        let expiry = |c: &LwwCell| std::cmp::Reverse(c.expires_at_secs.map_or((1, 0), |t| (0, t)));
        self.timestamp_micros
            .cmp(&other.timestamp_micros)
            .then_with(|| self.is_tombstone().cmp(&other.is_tombstone()))
            .then_with(|| expiry(self).cmp(&expiry(other)))
            .then_with(|| self.value.cmp(&other.value))
    }

    /// True when `self` beats `other` or equals it.
    pub fn wins_over(&self, other: &LwwCell) -> bool {
        self.lww_cmp(other) != Ordering::Less
    }

    /// Encodes the cell.
    pub fn encode(&self) -> Vec<u8> {
        let len = 2 + 8 + 8 + self.value.as_ref().map_or(0, Vec::len);
        let mut buf = Vec::with_capacity(len);
        buf.push(LWW_CELL_V1);
        let mut flags = 0u8;
        if self.value.is_none() {
            flags |= LWW_TOMBSTONE;
        }
        if self.expires_at_secs.is_some() {
            flags |= LWW_HAS_EXPIRY;
        }
        buf.push(flags);
        buf.extend_from_slice(&self.timestamp_micros.to_le_bytes());
        if let Some(t) = self.expires_at_secs {
            buf.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(v) = &self.value {
            buf.extend_from_slice(v);
        }
        buf
    }

    /// Decodes a cell; never panics.
    pub fn decode(bytes: &[u8]) -> Result<LwwCell, VersioningError> {
        let mut r = ByteReader::new(bytes);
        if r.u8().ok_or(corrupt("empty"))? != LWW_CELL_V1 {
            return Err(corrupt("unknown format byte"));
        }
        let flags = r.u8().ok_or(corrupt("truncated flags"))?;
        if flags & !LWW_FLAGS_KNOWN != 0 {
            return Err(corrupt("unknown flags"));
        }
        let ts = r.u64_le().ok_or(corrupt("truncated timestamp"))? as i64;
        let expires_at_secs = if flags & LWW_HAS_EXPIRY != 0 {
            Some(r.u64_le().ok_or(corrupt("truncated expiry"))?)
        } else {
            None
        };
        let rest = r.take(r.remaining()).unwrap_or_default();
        let value = if flags & LWW_TOMBSTONE != 0 {
            if !rest.is_empty() {
                return Err(corrupt("tombstone with value bytes"));
            }
            None
        } else {
            Some(rest.to_vec())
        };
        Ok(LwwCell {
            value,
            timestamp_micros: ts,
            expires_at_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lww_cell_round_trips() {
        for c in [
            LwwCell::value(b"hi".to_vec(), 5),
            LwwCell::value(Vec::new(), -7).with_expiry(99),
            LwwCell::tombstone(i64::MAX),
            LwwCell::tombstone(0).with_expiry(1),
        ] {
            assert_eq!(LwwCell::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn lww_cell_matches_spec_example() {
        assert_eq!(
            LwwCell::value(b"hi".to_vec(), 5).encode(),
            [0xD1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x68, 0x69]
        );
    }

    #[test]
    fn lww_cell_decoder_rejects_malformed() {
        let bytes = LwwCell::value(b"x".to_vec(), 1).with_expiry(3).encode();
        // Every strict prefix shorter than the fixed part is an error.
        for n in 0..18 {
            assert!(LwwCell::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        assert!(LwwCell::decode(&[0xD1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(LwwCell::decode(&[0xD1, LWW_TOMBSTONE, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(LwwCell::decode(&[0xC1, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn lww_higher_timestamp_wins() {
        let old = LwwCell::tombstone(1);
        let new = LwwCell::value(b"a".to_vec(), 2);
        assert!(new.wins_over(&old) && !old.wins_over(&new));
    }

    #[test]
    fn lww_tie_tombstone_wins() {
        let t = LwwCell::tombstone(5);
        let v = LwwCell::value(b"zzz".to_vec(), 5);
        assert!(t.wins_over(&v) && !v.wins_over(&t));
    }

    #[test]
    fn lww_tie_greater_value_wins() {
        let a = LwwCell::value(b"abc".to_vec(), 5);
        let b = LwwCell::value(b"abd".to_vec(), 5);
        assert!(b.wins_over(&a) && !a.wins_over(&b));
    }

    #[test]
    fn lww_tie_expiring_value_wins_earliest_expiry_first() {
        let soon = LwwCell::value(b"a".to_vec(), 5).with_expiry(10);
        let late = LwwCell::value(b"z".to_vec(), 5).with_expiry(20);
        let never = LwwCell::value(b"zz".to_vec(), 5);
        let max = LwwCell::value(b"a".to_vec(), 5).with_expiry(u64::MAX);
        assert_eq!(soon.lww_cmp(&late), Ordering::Greater);
        assert_eq!(late.lww_cmp(&never), Ordering::Greater);
        assert_eq!(max.lww_cmp(&never), Ordering::Greater);
        assert_eq!(never.lww_cmp(&max), Ordering::Less);
        assert!(LwwCell::tombstone(5).wins_over(&soon));
    }
}
