//! The manifest: the durable description of the engine's state that is not in the
//! commit log: the tables (column families) with their options, which SSTable files are
//! live at which level, how far each table's memtables have been flushed, and the id
//! counters.
//!
//! Every change writes a whole new snapshot and swaps it in atomically: write
//! `MANIFEST.tmp`, fsync it, rename it over `MANIFEST`, fsync the directory. A crash at any
//! point leaves either the old or the new snapshot as `MANIFEST`; a leftover
//! `MANIFEST.tmp` is garbage and [`load`] removes it. Spec:
//! `storage/doc/manifest_format.md`.
//!
//! Threading: [`load`] and [`store`] are plain functions; the engine serialises calls to
//! `store` (one writer of the directory's manifest at a time).

use std::fs;
use std::io;
use std::path::Path;

use crate::atomic_file;
use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::types::SeqNo;
use sibyl_coding::{put_u32_le, put_varint, put_varint_prefixed, u32_le_at, ByteReader};

/// Name of the manifest file in the data directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Name of the snapshot being written; renamed over [`MANIFEST_FILE`] once durable.
/// The temporary snapshot [`store`] writes (the name `atomic_file` gives it).
pub const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
/// First 8 bytes of the manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"SBYLMANI";
/// The format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// magic (8) + version (4).
const PREFIX_LEN: usize = 12;
/// Trailing crc32 (4).
const CRC_LEN: usize = 4;

/// One live SSTable of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsTableEntry {
    /// The file id (the SSTable's file name is derived from it by the engine).
    pub file_id: u64,
    /// The LSM level (0 for freshly flushed tables; tiered compaction uses 0 only).
    pub level: u32,
}

/// One table (column family).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableManifest {
    /// Table id, unique in the engine, never reused.
    pub id: u32,
    /// Table name.
    pub name: String,
    /// The table's options, encoded by the engine; opaque here.
    pub options: Vec<u8>,
    /// Every write with a seqno `<=` this is in the table's SSTables; replay skips those.
    pub flushed_seqno: SeqNo,
    /// The live SSTables.
    pub sstables: Vec<SsTableEntry>,
}

/// The whole manifest snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The next SSTable file id to hand out.
    pub next_file_id: u64,
    /// The next table id to hand out.
    pub next_table_id: u32,
    /// The highest seqno known to have been assigned when this snapshot was written.
    pub last_seqno: SeqNo,
    /// The tables.
    pub tables: Vec<TableManifest>,
}

/// Reads `dir/MANIFEST`. `Ok(None)` when it does not exist (a fresh directory). A bad
/// magic or a malformed body is [`Error::Corruption`], an unknown version
/// [`Error::UnsupportedVersion`], a bad crc [`Error::ChecksumMismatch`]. A leftover
/// `MANIFEST.tmp` (from a crash during [`store`]) is removed.
pub fn load(dir: &Path) -> Result<Option<Manifest>> {
    let tmp = dir.join(MANIFEST_TMP_FILE);
    match fs::remove_file(&tmp) {
        Ok(()) => tracing::info!(path = %tmp.display(), "removed leftover manifest snapshot"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&tmp, e)),
    }
    let path = dir.join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    decode(&bytes).map(Some).map_err(|e| e.into_error(&path))
}

/// Replaces `dir/MANIFEST` with `m` atomically: writes `MANIFEST.tmp`, fsyncs it, renames
/// it over `MANIFEST`, fsyncs the directory, all through `faults`. On an error before the
/// rename the old manifest is untouched (and the temporary file is removed, best effort);
/// on an error of the final directory fsync the new manifest may or may not survive a
/// crash. So the caller must treat any error as fatal (poison) except
/// [`Error::DiskFull`]: the file system was full while the temporary file was written,
/// nothing was fsynced and the old manifest stands, so the change may be tried again.
pub fn store(dir: &Path, m: &Manifest, faults: &Faults) -> Result<()> {
    let bytes = encode(m);
    atomic_file::replace(dir, MANIFEST_FILE, &bytes, faults).map_err(|e| {
        if e.is_disk_full() {
            Error::DiskFull {
                path: e.path,
                needed: bytes.len() as u64,
                free: faults.free_bytes(dir).unwrap_or(0),
                reserve: 0,
            }
        } else {
            Error::io(&e.path, e.source)
        }
    })
}

/// Encodes a snapshot: `magic | version | body | crc32(all before)`.
pub fn encode(m: &Manifest) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + m.tables.len() * 64);
    buf.extend_from_slice(&MANIFEST_MAGIC);
    put_u32_le(&mut buf, MANIFEST_VERSION);
    put_varint(&mut buf, m.next_file_id);
    put_varint(&mut buf, u64::from(m.next_table_id));
    put_varint(&mut buf, m.last_seqno);
    put_varint(&mut buf, m.tables.len() as u64);
    for t in &m.tables {
        put_varint(&mut buf, u64::from(t.id));
        put_varint_prefixed(&mut buf, t.name.as_bytes());
        put_varint_prefixed(&mut buf, &t.options);
        put_varint(&mut buf, t.flushed_seqno);
        put_varint(&mut buf, t.sstables.len() as u64);
        for s in &t.sstables {
            put_varint(&mut buf, s.file_id);
            put_varint(&mut buf, u64::from(s.level));
        }
    }
    let crc = crc32fast::hash(&buf);
    put_u32_le(&mut buf, crc);
    buf
}

/// A decode failure, before the file path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Malformed bytes at `offset`.
    Corrupt {
        /// Byte offset in the file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An unknown format version.
    Version(u32),
    /// The trailing crc does not match.
    Checksum {
        /// Stored crc.
        expected: u32,
        /// Computed crc.
        got: u32,
        /// Offset of the stored crc.
        offset: u64,
    },
}

impl DecodeError {
    fn into_error(self, path: &Path) -> Error {
        match self {
            DecodeError::Corrupt { offset, reason } => Error::corruption(path, offset, reason),
            DecodeError::Version(version) => Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            },
            DecodeError::Checksum {
                expected,
                got,
                offset,
            } => Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset,
                expected,
                got,
            },
        }
    }
}

fn corrupt(offset: usize, reason: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt {
        offset: offset as u64,
        reason: reason.into(),
    }
}

/// Decodes a snapshot. Checks, in order: length, magic, version, crc, body; never panics.
pub fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
    if bytes.len() < PREFIX_LEN + CRC_LEN {
        return Err(corrupt(0, "manifest shorter than magic, version and crc"));
    }
    if bytes.get(..8) != Some(&MANIFEST_MAGIC[..]) {
        return Err(corrupt(0, "bad manifest magic"));
    }
    let version = u32_le_at(bytes, 8).ok_or_else(|| corrupt(8, "short version"))?;
    if version != MANIFEST_VERSION {
        return Err(DecodeError::Version(version));
    }
    let crc_at = bytes.len() - CRC_LEN;
    let expected = u32_le_at(bytes, crc_at).ok_or_else(|| corrupt(crc_at, "short crc"))?;
    let covered = bytes.get(..crc_at).unwrap_or_default();
    let got = crc32fast::hash(covered);
    if got != expected {
        return Err(DecodeError::Checksum {
            expected,
            got,
            offset: crc_at as u64,
        });
    }
    let body = covered.get(PREFIX_LEN..).unwrap_or_default();
    decode_body(body).map_err(|(pos, reason)| corrupt(PREFIX_LEN + pos, reason))
}

/// Decodes the body; errors carry the offset within the body.
fn decode_body(body: &[u8]) -> Result<Manifest, (usize, String)> {
    let mut r = ByteReader::new(body);
    let err = |r: &ByteReader<'_>, what: &str| (r.position(), format!("bad or truncated {what}"));
    let next_file_id = r.varint().ok_or_else(|| err(&r, "next_file_id"))?;
    let next_table_id = varint_u32(&mut r).ok_or_else(|| err(&r, "next_table_id"))?;
    let last_seqno = r.varint().ok_or_else(|| err(&r, "last_seqno"))?;
    let table_count = r.varint().ok_or_else(|| err(&r, "table count"))?;
    // Every element takes at least one byte, so a count beyond what is left is corrupt;
    // checking it first bounds the allocation.
    let mut tables = Vec::with_capacity(bounded(table_count, r.remaining())?);
    for _ in 0..table_count {
        let id = varint_u32(&mut r).ok_or_else(|| err(&r, "table id"))?;
        let name_at = r.position();
        let name = r.varint_prefixed().ok_or_else(|| err(&r, "table name"))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| (name_at, "table name is not UTF-8".to_owned()))?
            .to_owned();
        let options = r
            .varint_prefixed()
            .ok_or_else(|| err(&r, "table options"))?
            .to_vec();
        let flushed_seqno = r.varint().ok_or_else(|| err(&r, "flushed_seqno"))?;
        let sstable_count = r.varint().ok_or_else(|| err(&r, "sstable count"))?;
        let mut sstables = Vec::with_capacity(bounded(sstable_count, r.remaining())?);
        for _ in 0..sstable_count {
            let file_id = r.varint().ok_or_else(|| err(&r, "sstable file id"))?;
            let level = varint_u32(&mut r).ok_or_else(|| err(&r, "sstable level"))?;
            sstables.push(SsTableEntry { file_id, level });
        }
        tables.push(TableManifest {
            id,
            name,
            options,
            flushed_seqno,
            sstables,
        });
    }
    if !r.is_empty() {
        return Err((r.position(), format!("{} trailing bytes", r.remaining())));
    }
    Ok(Manifest {
        next_file_id,
        next_table_id,
        last_seqno,
        tables,
    })
}

fn varint_u32(r: &mut ByteReader<'_>) -> Option<u32> {
    u32::try_from(r.varint()?).ok()
}

/// A count read from disk, as a capacity no larger than the bytes left (each element
/// takes at least one byte).
fn bounded(count: u64, remaining: usize) -> Result<usize, (usize, String)> {
    usize::try_from(count)
        .ok()
        .filter(|&n| n <= remaining)
        .ok_or((
            0,
            format!("count {count} exceeds the {remaining} bytes left"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            next_file_id: 12,
            next_table_id: 3,
            last_seqno: 1_000_000,
            tables: vec![
                TableManifest {
                    id: 1,
                    name: "users".into(),
                    options: vec![1, 2, 3],
                    flushed_seqno: 999_000,
                    sstables: vec![
                        SsTableEntry {
                            file_id: 7,
                            level: 0,
                        },
                        SsTableEntry {
                            file_id: 11,
                            level: 2,
                        },
                    ],
                },
                TableManifest {
                    id: 2,
                    name: "événements".into(),
                    options: vec![],
                    flushed_seqno: 0,
                    sstables: vec![],
                },
            ],
        }
    }

    #[test]
    fn manifest_tmp_name_is_the_one_atomic_file_writes() {
        assert_eq!(MANIFEST_TMP_FILE, atomic_file::tmp_name(MANIFEST_FILE));
    }

    #[test]
    fn manifest_round_trips() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faults = Faults::default();
        store(tmp.path(), &sample(), &faults).expect("store");
        assert_eq!(load(tmp.path()).expect("load"), Some(sample()));
        let mut next = sample();
        next.tables.pop();
        next.next_file_id = 13;
        store(tmp.path(), &next, &faults).expect("store");
        assert_eq!(load(tmp.path()).expect("load"), Some(next));
        assert!(!tmp.path().join(MANIFEST_TMP_FILE).exists());
    }

    #[test]
    fn manifest_empty_round_trips() {
        let bytes = encode(&Manifest::default());
        assert_eq!(decode(&bytes), Ok(Manifest::default()));
    }

    #[test]
    fn manifest_missing_loads_as_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(tmp.path()).expect("load"), None);
    }

    #[test]
    fn manifest_corrupt_byte_is_checksum_mismatch() {
        let tmp = tempfile::tempdir().expect("tempdir");
        store(tmp.path(), &sample(), &Faults::default()).expect("store");
        let path = tmp.path().join(MANIFEST_FILE);
        let mut bytes = fs::read(&path).expect("read");
        bytes[20] ^= 0x01;
        fs::write(&path, &bytes).expect("write");
        match load(tmp.path()) {
            Err(Error::ChecksumMismatch { path: p, .. }) => assert_eq!(p, path),
            other => panic!("expected ChecksumMismatch, got {other:?}"),
        }
    }

    #[test]
    fn manifest_every_single_byte_flip_is_a_typed_error() {
        let good = encode(&sample());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} went unnoticed");
        }
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "truncation to {len}");
        }
    }

    #[test]
    fn manifest_bad_magic_and_version_are_typed() {
        let good = encode(&sample());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::Corrupt { offset: 0, .. })
        ));
        let mut bad = good;
        bad[8] = 9;
        assert_eq!(decode(&bad), Err(DecodeError::Version(9)));
    }

    #[test]
    fn manifest_body_with_valid_crc_but_huge_count_is_corruption() {
        // A well-checksummed body that lies about its table count must not allocate.
        let mut buf = MANIFEST_MAGIC.to_vec();
        put_u32_le(&mut buf, MANIFEST_VERSION);
        put_varint(&mut buf, 1);
        put_varint(&mut buf, 1);
        put_varint(&mut buf, 1);
        put_varint(&mut buf, u64::MAX);
        let crc = crc32fast::hash(&buf);
        put_u32_le(&mut buf, crc);
        assert!(matches!(decode(&buf), Err(DecodeError::Corrupt { .. })));
    }

    #[test]
    fn manifest_leftover_tmp_is_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        store(tmp.path(), &sample(), &Faults::default()).expect("store");
        let leftover = tmp.path().join(MANIFEST_TMP_FILE);
        fs::write(&leftover, b"half a snapshot").expect("write");
        assert_eq!(load(tmp.path()).expect("load"), Some(sample()));
        assert!(!leftover.exists());
    }

    #[test]
    fn manifest_fsync_failure_keeps_old_manifest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faults = Faults::default();
        store(tmp.path(), &sample(), &faults).expect("store");
        faults.set_fail_fsync(true);
        let newer = Manifest {
            next_file_id: 99,
            ..Manifest::default()
        };
        assert!(matches!(
            store(tmp.path(), &newer, &faults),
            Err(Error::Io { .. })
        ));
        faults.set_fail_fsync(false);
        assert_eq!(load(tmp.path()).expect("load"), Some(sample()));
    }

    #[test]
    fn manifest_write_failure_keeps_old_manifest() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let faults = Faults::default();
        store(tmp.path(), &sample(), &faults).expect("store");
        faults.set_fail_write(true);
        assert!(store(tmp.path(), &Manifest::default(), &faults).is_err());
        faults.set_fail_write(false);
        assert_eq!(load(tmp.path()).expect("load"), Some(sample()));
    }

    #[test]
    fn manifest_encoding_matches_spec_example() {
        // The worked example of doc/manifest_format.md.
        let m = Manifest {
            next_file_id: 3,
            next_table_id: 2,
            last_seqno: 300,
            tables: vec![TableManifest {
                id: 1,
                name: "t".into(),
                options: vec![0xAA],
                flushed_seqno: 200,
                sstables: vec![SsTableEntry {
                    file_id: 2,
                    level: 0,
                }],
            }],
        };
        let bytes = encode(&m);
        let body = [
            0x03, 0x02, 0xAC, 0x02, 0x01, 0x01, 0x01, b't', 0x01, 0xAA, 0xC8, 0x01, 0x01, 0x02,
            0x00,
        ];
        assert_eq!(&bytes[..8], b"SBYLMANI");
        assert_eq!(&bytes[8..12], &[1, 0, 0, 0]);
        assert_eq!(&bytes[12..bytes.len() - 4], &body);
        let crc = crc32fast::hash(&bytes[..bytes.len() - 4]);
        assert_eq!(&bytes[bytes.len() - 4..], &crc.to_le_bytes());
        assert_eq!(&bytes[bytes.len() - 4..], &[0xd8, 0x43, 0x00, 0xc5]);
        assert_eq!(decode(&bytes), Ok(m));
    }
}
