//! The byte layout of one stored hint: its engine key (owner, hint id) and its value (a
//! versioned, checksummed record of the cells the owner missed).
//!
//! # Format (version 1; integers big-endian)
//! ```text
//! key     = owner:u64 id:u64                       16 bytes: hints of one owner are
//!                                                  contiguous, oldest id first
//! record  = version:u8 (0x01) written:i64 cells crc:u32
//! cells   = the raw cell list of crate::replica::codec (its own version byte first)
//! crc     = CRC-32 (IEEE, crc32fast) of every byte before it
//! ```
//! `written` is the hint holder's clock when the hint was stored (µs since the epoch).
//! Worked example: written 1 µs, one cell of table `t`, key `ab`, value `01`:
//! `01 00 00 00 00 00 00 00 01 01 01 01 74 01 ab 01 01 <crc:4>`.
//!
//! Decoding never panics: a wrong version, a checksum mismatch, a truncation or a bad
//! cell list is a [`RecordError`].
// Bytes from disk: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use sibyl_coding::ByteReader;

use super::HintId;
use crate::replica::codec::{decode_raw_cells, encode_raw_cells, CodecError};
use crate::replica::RawCell;
use crate::ring::NodeId;

/// Format version of a hint record.
pub const RECORD_V1: u8 = 0x01;
/// Length of a hint's engine key.
pub const KEY_LEN: usize = 16;
/// Bytes a record adds around its cell list (version, written time, crc).
pub const RECORD_OVERHEAD: usize = 1 + 8 + 4;

/// A stored hint record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is shorter than its fixed fields.
    #[error("hint record: truncated ({len} bytes)")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The version byte is not one this node reads.
    #[error("hint record: unknown format version {version:#04x}")]
    UnknownVersion {
        /// The byte found.
        version: u8,
    },
    /// The checksum does not match the content.
    #[error("hint record: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The checksum stored.
        stored: u32,
        /// The checksum of the content.
        computed: u32,
    },
    /// The embedded cell list does not decode.
    #[error("hint record: {0}")]
    Cells(#[from] CodecError),
    /// The engine key is not 16 bytes.
    #[error("hint key: {len} bytes, expected 16")]
    BadKey {
        /// Its length.
        len: usize,
    },
}

/// The engine key of hint `id` for `owner`.
pub fn encode_key(owner: NodeId, id: HintId) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    let (o, i) = k.split_at_mut(8);
    o.copy_from_slice(&owner.0.to_be_bytes());
    i.copy_from_slice(&id.0.to_be_bytes());
    k
}

/// The first key of `owner`'s hints (inclusive) and the first key past them (`None`
/// for the largest owner id: unbounded).
pub fn owner_bounds(owner: NodeId) -> ([u8; KEY_LEN], Option<[u8; KEY_LEN]>) {
    let start = encode_key(owner, HintId(0));
    let end = owner
        .0
        .checked_add(1)
        .map(|next| encode_key(NodeId(next), HintId(0)));
    (start, end)
}

/// The owner and hint id of an engine key.
pub fn decode_key(key: &[u8]) -> Result<(NodeId, HintId), RecordError> {
    let mut r = ByteReader::new(key);
    match (r.u64_be(), r.u64_be(), r.is_empty()) {
        (Some(owner), Some(id), true) => Ok((NodeId(owner), HintId(id))),
        _ => Err(RecordError::BadKey { len: key.len() }),
    }
}

/// Encodes a record of `cells` written at `written_micros`.
pub fn encode_record(written_micros: i64, cells: &[RawCell]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        RECORD_OVERHEAD + 11 + cells.iter().map(RawCell::encoded_len).sum::<usize>(),
    );
    out.push(RECORD_V1);
    out.extend_from_slice(&written_micros.to_be_bytes());
    encode_raw_cells(cells, &mut out);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Checks a record's version and checksum; returns its written time and the bytes of
/// its cell list (not decoded).
pub fn check_record(bytes: &[u8]) -> Result<(i64, &[u8]), RecordError> {
    let truncated = RecordError::Truncated { len: bytes.len() };
    let body_len = bytes
        .len()
        .checked_sub(4)
        .filter(|&n| n >= 9)
        .ok_or(truncated.clone())?;
    let (body, crc) = bytes.split_at_checked(body_len).ok_or(truncated.clone())?;
    let stored = ByteReader::new(crc).u32_be().ok_or(truncated.clone())?;
    let mut r = ByteReader::new(body);
    let version = r.u8().ok_or(truncated.clone())?;
    if version != RECORD_V1 {
        return Err(RecordError::UnknownVersion { version });
    }
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Err(RecordError::Checksum { stored, computed });
    }
    let written = r.i64_be().ok_or(truncated)?;
    Ok((written, r.rest()))
}

/// Decodes a record: its written time and its cells.
pub fn decode_record(bytes: &[u8]) -> Result<(i64, Vec<RawCell>), RecordError> {
    let (written, cells) = check_record(bytes)?;
    Ok((written, decode_raw_cells(cells)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> RawCell {
        RawCell {
            table: "t".into(),
            key: vec![0xab],
            value: vec![0x01],
        }
    }

    #[test]
    fn hint_record_round_trips_and_matches_the_documented_example() {
        let rec = encode_record(1, &[cell()]);
        let crc = crc32fast::hash(&rec[..rec.len() - 4]).to_be_bytes();
        let mut want = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, b't', 1, 0xab, 1, 1];
        want.extend_from_slice(&crc);
        assert_eq!(rec, want);
        assert_eq!(decode_record(&rec).unwrap(), (1, vec![cell()]));
    }

    #[test]
    fn hint_record_refuses_every_truncation_and_every_bit_flip() {
        let rec = encode_record(-7, &[cell(), cell()]);
        for n in 0..rec.len() {
            assert!(decode_record(&rec[..n]).is_err(), "prefix {n}");
        }
        for i in 0..rec.len() {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[i] ^= 1 << bit;
                assert!(decode_record(&bad).is_err(), "flip byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn hint_keys_round_trip_and_sort_by_owner_then_id() {
        let k = encode_key(NodeId(3), HintId(9));
        assert_eq!(decode_key(&k).unwrap(), (NodeId(3), HintId(9)));
        assert!(encode_key(NodeId(3), HintId(u64::MAX)) < encode_key(NodeId(4), HintId(0)));
        assert!(decode_key(&k[..15]).is_err());
        let (start, end) = owner_bounds(NodeId(u64::MAX));
        assert_eq!(start, encode_key(NodeId(u64::MAX), HintId(0)));
        assert_eq!(end, None);
    }

    proptest::proptest! {
        #[test]
        fn hint_record_decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            let _ = decode_record(&bytes);
            let _ = decode_key(&bytes);
        }
    }
}
