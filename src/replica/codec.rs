//! [`RawCell`]: a stored cell as one replica ships it to another (table, engine key,
//! stored bytes), and its byte encoding for peer messages.
//!
//! # Format (version 1)
//! ```text
//! cells       = version:u8 (0x01) count:varint cell{count}
//! cell        = table:bytes key:bytes value:bytes
//! bytes       = len:varint byte{len}
//! ```
//! Limits checked by the decoder (a violation is a [`CodecError`], never a panic, and
//! nothing is allocated beyond what the input holds): table 1..=255 bytes of UTF-8 (the
//! engine's table name limit); key 1..=[`MAX_RAW_KEY_LEN`]; value at most
//! [`MAX_RAW_VALUE_LEN`]; at most [`MAX_RAW_CELLS`] cells; no trailing bytes. The key and
//! value are opaque here: [`super::Replica::apply`] checks them against the partitioner
//! and the table's conflict mode.
//!
//! Worked example: one cell of table `t`, key `01 02`, value `d1 00 ..` (an lww cell):
//! `01 01 01 74 02 01 02 <len> d1 00 ..`.
// Bytes from the network: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use sibyl_coding::{put_varint, put_varint_prefixed, ByteReader};

/// Format version byte of an encoded cell list.
pub const RAW_CELLS_V1: u8 = 0x01;
/// Longest engine key carried (the engine's own key cap, 64 KiB).
pub const MAX_RAW_KEY_LEN: usize = 64 * 1024;
/// Largest stored value carried: a causal cell is capped at 6 MiB
/// (`versioning::MAX_CELL_BYTES`); the rest is headroom for an lww cell's header.
pub const MAX_RAW_VALUE_LEN: usize = 8 << 20;
/// Most cells in one encoded list (a peer message stays bounded).
pub const MAX_RAW_CELLS: usize = 100_000;
/// Longest table name (the engine's limit).
const MAX_TABLE_LEN: usize = 255;
/// Smallest encoding of one cell: three one-byte lengths, a table byte and a key byte.
const MIN_CELL_LEN: usize = 5;

/// One stored cell, as shipped between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawCell {
    /// The engine table.
    pub table: String,
    /// The engine key ([`super::keys`]): a cell, or the row tombstone (empty column).
    pub key: Vec<u8>,
    /// The stored bytes: an encoded causal or lww cell, or a row tombstone.
    pub value: Vec<u8>,
}

/// An encoded cell list that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The version byte is not one this node reads.
    #[error("raw cells: unknown format version {version:#04x}")]
    UnknownVersion {
        /// The byte found.
        version: u8,
    },
    /// The bytes break the format.
    #[error("raw cells: {reason} (at byte {offset})")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
        /// Where the decoder stopped.
        offset: usize,
    },
}

impl RawCell {
    /// Bytes this cell adds to an encoded list (upper bound).
    pub fn encoded_len(&self) -> usize {
        3 * 10 + self.table.len() + self.key.len() + self.value.len()
    }
}

/// Encodes `cells` (format above). The caller keeps within the limits; the decoder
/// refuses what breaks them.
pub fn encode_raw_cells(cells: &[RawCell], out: &mut Vec<u8>) {
    out.reserve(1 + 10 + cells.iter().map(RawCell::encoded_len).sum::<usize>());
    out.push(RAW_CELLS_V1);
    put_varint(out, cells.len() as u64);
    for c in cells {
        put_varint_prefixed(out, c.table.as_bytes());
        put_varint_prefixed(out, &c.key);
        put_varint_prefixed(out, &c.value);
    }
}

/// Decodes what [`encode_raw_cells`] wrote, checking every limit.
pub fn decode_raw_cells(bytes: &[u8]) -> Result<Vec<RawCell>, CodecError> {
    let mut r = ByteReader::new(bytes);
    let malformed = |reason, r: &ByteReader<'_>| CodecError::Malformed {
        reason,
        offset: r.position(),
    };
    let version = r.u8().ok_or_else(|| malformed("empty", &r))?;
    if version != RAW_CELLS_V1 {
        return Err(CodecError::UnknownVersion { version });
    }
    let count = r
        .varint()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| malformed("truncated count", &r))?;
    if count > MAX_RAW_CELLS {
        return Err(malformed("too many cells", &r));
    }
    if count.saturating_mul(MIN_CELL_LEN) > r.remaining() {
        return Err(malformed("count exceeds the input", &r));
    }
    let mut cells = Vec::with_capacity(count);
    for _ in 0..count {
        let table = r
            .varint_prefixed()
            .ok_or_else(|| malformed("truncated table", &r))?;
        if table.is_empty() || table.len() > MAX_TABLE_LEN {
            return Err(malformed("table name length out of range", &r));
        }
        let table = std::str::from_utf8(table).map_err(|_| malformed("table not UTF-8", &r))?;
        let key = r
            .varint_prefixed()
            .ok_or_else(|| malformed("truncated key", &r))?;
        if key.is_empty() || key.len() > MAX_RAW_KEY_LEN {
            return Err(malformed("key length out of range", &r));
        }
        let value = r
            .varint_prefixed()
            .ok_or_else(|| malformed("truncated value", &r))?;
        if value.len() > MAX_RAW_VALUE_LEN {
            return Err(malformed("value too large", &r));
        }
        cells.push(RawCell {
            table: table.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        });
    }
    if !r.is_empty() {
        return Err(malformed("trailing bytes", &r));
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<RawCell> {
        vec![
            RawCell {
                table: "t".into(),
                key: vec![1, 2],
                value: vec![0xd1, 0],
            },
            RawCell {
                table: "users".into(),
                key: vec![9; 300],
                value: Vec::new(),
            },
        ]
    }

    #[test]
    fn raw_cells_round_trip() {
        let mut buf = Vec::new();
        encode_raw_cells(&sample(), &mut buf);
        assert_eq!(decode_raw_cells(&buf).unwrap(), sample());
        let mut empty = Vec::new();
        encode_raw_cells(&[], &mut empty);
        assert_eq!(decode_raw_cells(&empty).unwrap(), Vec::new());
    }

    #[test]
    fn raw_cells_match_documented_example() {
        let mut buf = Vec::new();
        encode_raw_cells(&sample()[..1], &mut buf);
        assert_eq!(buf, [0x01, 0x01, 0x01, b't', 0x02, 1, 2, 0x02, 0xd1, 0]);
    }

    #[test]
    fn raw_cells_decoder_rejects_every_truncation_and_trailing_bytes() {
        let mut buf = Vec::new();
        encode_raw_cells(&sample(), &mut buf);
        for n in 0..buf.len() {
            assert!(decode_raw_cells(&buf[..n]).is_err(), "prefix {n}");
        }
        buf.push(0);
        assert!(matches!(
            decode_raw_cells(&buf),
            Err(CodecError::Malformed {
                reason: "trailing bytes",
                ..
            })
        ));
    }

    #[test]
    fn raw_cells_decoder_refuses_bad_limits_without_allocating() {
        assert_eq!(
            decode_raw_cells(&[0x02, 0]),
            Err(CodecError::UnknownVersion { version: 2 })
        );
        let mut huge = vec![RAW_CELLS_V1];
        put_varint(&mut huge, u64::MAX);
        assert!(decode_raw_cells(&huge).is_err());
        let mut many = vec![RAW_CELLS_V1];
        put_varint(&mut many, 50_000);
        assert!(matches!(
            decode_raw_cells(&many),
            Err(CodecError::Malformed {
                reason: "count exceeds the input",
                ..
            })
        ));
        // An empty table name and an empty key are refused.
        assert!(decode_raw_cells(&[1, 1, 0, 1, 1, 0]).is_err());
        assert!(decode_raw_cells(&[1, 1, 1, b't', 0, 0]).is_err());
        // A table name that is not UTF-8.
        assert!(decode_raw_cells(&[1, 1, 1, 0xff, 1, 1, 0]).is_err());
    }
}
