//! The commit-log byte format: the constants and the encoders/decoders that both the
//! writer ([`super::writer`]) and the replayer ([`super::reader`]) use. The spec is
//! `storage/doc/commitlog_format.md`; change both together.
//!
//! ```text
//! segment       := segment_header record*
//! segment_header:= magic[8] "SBYLCLOG" | version u32 | segment_id u64 | crc u32      (24 bytes)
//! record        := crc u32 | length u32 | seqno u64 | payload[length]   (16-byte header)
//! ```
//! All integers are little-endian. A record's crc is crc32 (Castagnoli is not used; it is
//! the IEEE polynomial of `crc32fast`) over `length | seqno | payload`.
//!
//! Pure functions only: no I/O, no panics on any input.

use crate::types::SeqNo;
use sibyl_coding::{put_u32_le, put_u64_le, u32_le_at, u64_le_at};

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SBYLCLOG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header: magic (8) + version (4) + segment id (8) + crc (4).
pub const SEGMENT_HEADER_LEN: usize = 24;
/// Size of a record header: crc (4) + length (4) + seqno (8).
pub const RECORD_HEADER_LEN: usize = 16;
/// Largest payload accepted by `append` and believed by replay: 256 MiB. Replay never
/// allocates from a length field; the cap bounds what a corrupt length can make it trust.
pub const MAX_RECORD_LEN: u32 = 256 << 20;
/// Segment file names are `commitlog-<id, 20 decimal digits>.log`, so that lexical order
/// is numeric order and any u64 fits.
pub const SEGMENT_PREFIX: &str = "commitlog-";
/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_ID_DIGITS: usize = 20;

/// The file name of segment `id`.
pub fn segment_file_name(id: u64) -> String {
    format!("{SEGMENT_PREFIX}{id:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its id; `None` for any other file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes the header of segment `id`.
pub fn encode_segment_header(id: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(SEGMENT_HEADER_LEN);
    buf.extend_from_slice(&SEGMENT_MAGIC);
    put_u32_le(&mut buf, FORMAT_VERSION);
    put_u64_le(&mut buf, id);
    let crc = crc32fast::hash(&buf);
    put_u32_le(&mut buf, crc);
    buf
}

/// Why a segment header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short,
    /// The first 8 bytes are not [`SEGMENT_MAGIC`].
    BadMagic,
    /// A version this build does not read.
    Version(u32),
    /// The header crc does not match.
    Checksum {
        /// Stored crc.
        expected: u32,
        /// Computed crc.
        got: u32,
    },
}

/// Decodes a segment header from the start of `buf` and returns the segment id.
/// Checks, in order: length, magic, version, crc.
pub fn decode_segment_header(buf: &[u8]) -> Result<u64, HeaderError> {
    let head = buf.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?;
    if head.get(..8) != Some(&SEGMENT_MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    let version = u32_le_at(head, 8).ok_or(HeaderError::Short)?;
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let id = u64_le_at(head, 12).ok_or(HeaderError::Short)?;
    let expected = u32_le_at(head, 20).ok_or(HeaderError::Short)?;
    let got = crc32fast::hash(head.get(..20).ok_or(HeaderError::Short)?);
    if got != expected {
        return Err(HeaderError::Checksum { expected, got });
    }
    Ok(id)
}

/// Appends one record (header and payload) to `buf`. The caller has checked
/// `payload.len() <= MAX_RECORD_LEN`.
pub fn encode_record(buf: &mut Vec<u8>, seqno: SeqNo, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let start = buf.len();
    put_u32_le(buf, 0); // crc, patched below
    put_u32_le(buf, len);
    put_u64_le(buf, seqno);
    buf.extend_from_slice(payload);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(buf.get(start + 4..).unwrap_or_default());
    let crc = hasher.finalize().to_le_bytes();
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&crc);
    }
}

/// A record header as read from disk, not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Stored crc over `length | seqno | payload`.
    pub crc: u32,
    /// Payload length.
    pub length: u32,
    /// Sequence number.
    pub seqno: SeqNo,
}

/// Reads the record header at `pos`; `None` if fewer than [`RECORD_HEADER_LEN`] bytes remain.
pub fn decode_record_header(buf: &[u8], pos: usize) -> Option<RecordHeader> {
    Some(RecordHeader {
        crc: u32_le_at(buf, pos)?,
        length: u32_le_at(buf, pos.checked_add(4)?)?,
        seqno: u64_le_at(buf, pos.checked_add(8)?)?,
    })
}

/// The crc a record with this header and payload should carry.
pub fn record_crc(length: u32, seqno: SeqNo, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length.to_le_bytes());
    hasher.update(&seqno.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_file_name_round_trips() {
        for id in [0, 1, 42, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(id)), Some(id));
        }
        assert_eq!(segment_file_name(7), "commitlog-00000000000000000007.log");
        assert_eq!(parse_segment_file_name("commitlog-7.log"), None);
        assert_eq!(parse_segment_file_name("MANIFEST"), None);
        assert_eq!(
            parse_segment_file_name("commitlog-0000000000000000000x.log"),
            None
        );
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = encode_segment_header(9);
        assert_eq!(h.len(), SEGMENT_HEADER_LEN);
        assert_eq!(decode_segment_header(&h), Ok(9));
        assert_eq!(decode_segment_header(&h[..23]), Err(HeaderError::Short));
        let mut bad = h.clone();
        bad[0] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadMagic));
        let mut bad = h.clone();
        bad[8] = 2;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::Version(2)));
        let mut bad = h;
        bad[12] ^= 1;
        assert!(matches!(
            decode_segment_header(&bad),
            Err(HeaderError::Checksum { .. })
        ));
    }

    #[test]
    fn record_encoding_matches_spec_example() {
        // The worked example of doc/commitlog_format.md.
        let mut buf = Vec::new();
        encode_record(&mut buf, 5, b"hi");
        let h = decode_record_header(&buf, 0).expect("header");
        assert_eq!(h.length, 2);
        assert_eq!(h.seqno, 5);
        assert_eq!(h.crc, record_crc(2, 5, b"hi"));
        assert_eq!(&buf[4..], &[2, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']);
        assert_eq!(buf.len(), RECORD_HEADER_LEN + 2);
        assert_eq!(&buf[..4], &[0x7d, 0x4e, 0xb6, 0x4f]);
        assert_eq!(
            encode_segment_header(1),
            [
                0x53, 0x42, 0x59, 0x4c, 0x43, 0x4c, 0x4f, 0x47, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x06, 0xe9, 0xe0
            ]
        );
    }
}
