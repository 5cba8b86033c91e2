//! The SSTable byte format's constants and its fixed-layout pieces (block handles, the
//! footer, the properties block), shared by [`super::builder`] and [`super::table`].
//! The format is specified in `storage/doc/sstable_format.md`; a change here is a change
//! there, and a change to existing bytes needs a new [`FORMAT_VERSION`].
//!
//! Decoders here never panic: they return `None` on malformed input and the reader turns
//! that into [`crate::Error::Corruption`] naming the file and offset.

use crate::types::SeqNo;
use sibyl_coding::ByteReader;

/// The 8 bytes every table file starts and ends with.
pub const MAGIC: [u8; 8] = *b"SibylSST";

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Header: magic (8 bytes) then version (u32 LE).
pub const HEADER_LEN: usize = MAGIC.len() + 4;

/// Every block (data, bloom, index, properties) is followed by a crc32 of its contents.
pub const BLOCK_TRAILER_LEN: usize = 4;

/// A block handle in the footer: offset (u64 LE) and contents size (u64 LE).
pub const HANDLE_LEN: usize = 16;

/// Footer: three handles (bloom, index, properties), crc32 of those 48 bytes, version
/// (u32 LE), magic (8 bytes).
pub const FOOTER_LEN: usize = 3 * HANDLE_LEN + 4 + 4 + MAGIC.len();

/// The smallest possible table file: header and footer around empty blocks.
pub const MIN_FILE_LEN: usize = HEADER_LEN + FOOTER_LEN;

/// Entry kind byte: a live value follows.
pub const KIND_VALUE: u8 = 0;

/// Entry kind byte: a tombstone; its value length must be 0.
pub const KIND_TOMBSTONE: u8 = 1;

/// Each restart point is a u32 LE offset within its block; the block ends with their
/// count (u32 LE).
pub const RESTART_LEN: usize = 4;

/// Bloom probes are capped: beyond 30 the filter gets slower without getting better at
/// any sensible bits-per-key.
pub const MAX_BLOOM_PROBES: u8 = 30;

/// Default target size of a data block, in bytes of contents (LevelDB's choice: big
/// enough to amortise the per-block crc and index entry, small enough that a point read
/// touches one or two pages).
pub const DEFAULT_BLOCK_SIZE: usize = 4096;

/// Default number of entries between restart points (LevelDB's choice).
pub const DEFAULT_RESTART_INTERVAL: usize = 16;

/// Default bloom bits per key: about 1% false positives.
pub const DEFAULT_BLOOM_BITS_PER_KEY: usize = 10;

/// Where a block lives: the offset of its first byte and the size of its contents (the
/// crc trailer follows the contents and is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// File offset of the first byte of the contents.
    pub offset: u64,
    /// Length of the contents, excluding the trailer.
    pub size: u64,
}

impl BlockHandle {
    /// The offset one past the block's trailer, or `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN as u64)
    }
}

/// The fixed-size tail of a table file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The bloom filter block.
    pub bloom: BlockHandle,
    /// The index block.
    pub index: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
}

/// Why a footer could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FooterError {
    /// Wrong length or wrong magic: not a table file.
    BadMagic,
    /// A version this build does not read.
    Version(u32),
    /// The footer's own crc does not match.
    Checksum {
        /// The crc stored in the footer.
        expected: u32,
        /// The crc of the footer's bytes.
        got: u32,
    },
}

impl Footer {
    /// Appends the [`FOOTER_LEN`] bytes of this footer.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        for h in [self.bloom, self.index, self.properties] {
            sibyl_coding::put_u64_le(buf, h.offset);
            sibyl_coding::put_u64_le(buf, h.size);
        }
        let crc = crc32fast::hash(buf.get(start..).unwrap_or_default());
        sibyl_coding::put_u32_le(buf, crc);
        sibyl_coding::put_u32_le(buf, FORMAT_VERSION);
        buf.extend_from_slice(&MAGIC);
    }

    /// Decodes the last [`FOOTER_LEN`] bytes of a file. Magic is checked first, then the
    /// version, then the crc, so that a foreign file says "not a table" rather than
    /// "checksum mismatch".
    pub fn decode(b: &[u8]) -> Result<Footer, FooterError> {
        if b.len() != FOOTER_LEN || b.get(FOOTER_LEN - MAGIC.len()..) != Some(&MAGIC[..]) {
            return Err(FooterError::BadMagic);
        }
        let version =
            sibyl_coding::u32_le_at(b, 3 * HANDLE_LEN + 4).ok_or(FooterError::BadMagic)?;
        if version != FORMAT_VERSION {
            return Err(FooterError::Version(version));
        }
        let expected = sibyl_coding::u32_le_at(b, 3 * HANDLE_LEN).ok_or(FooterError::BadMagic)?;
        let got = crc32fast::hash(b.get(..3 * HANDLE_LEN).unwrap_or_default());
        if expected != got {
            return Err(FooterError::Checksum { expected, got });
        }
        let mut r = ByteReader::new(b);
        let mut handle = || -> Option<BlockHandle> {
            Some(BlockHandle {
                offset: r.u64_le()?,
                size: r.u64_le()?,
            })
        };
        let (Some(bloom), Some(index), Some(properties)) = (handle(), handle(), handle()) else {
            return Err(FooterError::BadMagic);
        };
        Ok(Footer {
            bloom,
            index,
            properties,
        })
    }
}

/// Appends the file header: magic then version.
pub fn encode_header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&MAGIC);
    sibyl_coding::put_u32_le(buf, FORMAT_VERSION);
}

/// What the properties block records about the table, so that opening it needs no scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// Number of entries (values and tombstones).
    pub entries: u64,
    /// Number of tombstones among them.
    pub tombstones: u64,
    /// Number of data blocks; must equal the index's entry count.
    pub data_blocks: u64,
    /// Smallest sequence number (0 for an empty table).
    pub min_seqno: SeqNo,
    /// Largest sequence number (0 for an empty table).
    pub max_seqno: SeqNo,
    /// Smallest key (empty for an empty table).
    pub smallest: Vec<u8>,
    /// Largest key (empty for an empty table).
    pub largest: Vec<u8>,
}

impl Properties {
    /// Appends the properties block contents.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        sibyl_coding::put_varint(buf, self.entries);
        sibyl_coding::put_varint(buf, self.tombstones);
        sibyl_coding::put_varint(buf, self.data_blocks);
        sibyl_coding::put_varint(buf, self.min_seqno);
        sibyl_coding::put_varint(buf, self.max_seqno);
        sibyl_coding::put_varint_prefixed(buf, &self.smallest);
        sibyl_coding::put_varint_prefixed(buf, &self.largest);
    }

    /// Decodes a properties block; `None` if it is malformed, has trailing bytes or
    /// contradicts itself.
    pub fn decode(b: &[u8]) -> Option<Properties> {
        let mut r = ByteReader::new(b);
        let p = Properties {
            entries: r.varint()?,
            tombstones: r.varint()?,
            data_blocks: r.varint()?,
            min_seqno: r.varint()?,
            max_seqno: r.varint()?,
            smallest: r.varint_prefixed()?.to_vec(),
            largest: r.varint_prefixed()?.to_vec(),
        };
        let consistent = r.is_empty()
            && p.tombstones <= p.entries
            && p.min_seqno <= p.max_seqno
            && p.smallest <= p.largest
            && (p.entries == 0) == (p.data_blocks == 0)
            && p.data_blocks <= p.entries;
        consistent.then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_footer() -> Footer {
        Footer {
            bloom: BlockHandle {
                offset: 100,
                size: 20,
            },
            index: BlockHandle {
                offset: 124,
                size: 30,
            },
            properties: BlockHandle {
                offset: 158,
                size: 9,
            },
        }
    }

    #[test]
    fn footer_round_trips() {
        let mut b = Vec::new();
        sample_footer().encode(&mut b);
        assert_eq!(b.len(), FOOTER_LEN);
        assert_eq!(Footer::decode(&b), Ok(sample_footer()));
    }

    #[test]
    fn footer_rejects_bit_flip_with_checksum_error() {
        let mut b = Vec::new();
        sample_footer().encode(&mut b);
        b[3] ^= 0x10;
        assert!(matches!(
            Footer::decode(&b),
            Err(FooterError::Checksum { .. })
        ));
    }

    #[test]
    fn footer_rejects_other_version() {
        let mut b = Vec::new();
        sample_footer().encode(&mut b);
        b[3 * HANDLE_LEN + 4] = 7;
        assert_eq!(Footer::decode(&b), Err(FooterError::Version(7)));
    }

    #[test]
    fn properties_round_trip_and_reject_trailing_bytes() {
        let p = Properties {
            entries: 10,
            tombstones: 2,
            data_blocks: 3,
            min_seqno: 5,
            max_seqno: 99,
            smallest: b"a".to_vec(),
            largest: b"zz".to_vec(),
        };
        let mut b = Vec::new();
        p.encode(&mut b);
        assert_eq!(Properties::decode(&b), Some(p));
        b.push(0);
        assert_eq!(Properties::decode(&b), None);
    }
}
