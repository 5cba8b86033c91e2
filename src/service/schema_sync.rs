//! Cluster-wide schema: per-table stamps (last-writer-wins), the schema export a node
//! pushes to a peer, and the schema version gossip compares (spec: `doc/node-files.md`).
//!
//! Every table name the node has seen carries a [`Stamp`]: the time (µs since the epoch)
//! of the create or drop that set its present state, and whether it is dropped. A merge
//! keeps, per name, the greater `(micros, dropped, metadata)` — a newer create or drop
//! replaces an older one, ties break the same way on every node. Dropped tables stay as
//! small tombstones (name + stamp) so a peer that missed the drop cannot bring the table
//! back. The schema version is a hash of the export, so two nodes agree on it exactly
//! when they hold the same tables, options, stamps and tombstones.
//!
//! # Stamps file `schema-stamps` (version 1)
//! ```text
//! file    = magic version count stamp* crc
//! magic   = "SSCK"     version = 0x01     count = u32be
//! stamp   = name_len u8, name, micros u64be, dropped u8 (0 live, 1 dropped)
//! crc     = CRC-32 (IEEE) of magic..stamps, u32be
//! ```
//! # Export (the body of a peer `SchemaPush`, version 1)
//! ```text
//! export  = magic version count entry* crc
//! magic   = "SSCX"     version = 0x01     count = u32be
//! entry   = name_len u8, name, micros u64be, dropped u8,
//!           [meta_len u16be, meta]        (live tables only; meta = the table's stored
//!                                          metadata, see [`super::schema`])
//! crc     = CRC-32 (IEEE) of magic..entries, u32be
//! ```
//! Entries are sorted by name, so equal schemas export equal bytes. Example: one live
//! table `t` stamped 1 µs with metadata `M` = `53 53 43 58 01 00 00 00 01 | 01 74 |
//! 00 00 00 00 00 00 00 01 | 00 | 00 xx M | crc`.
//!
//! Decoding never panics: lengths are checked before slicing, the entry count is capped
//! by the bytes present, trailing bytes are refused. Pure values; the service keeps its
//! [`Stamps`] under its DDL mutex.

use sibyl_coding::ByteReader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::schema::{TableSchema, MAX_TABLE_NAME_LEN};
use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

/// File name in the data directory.
pub const STAMPS_FILE: &str = "schema-stamps";
const STAMPS_MAGIC: [u8; 4] = *b"SSCK";
const EXPORT_MAGIC: [u8; 4] = *b"SSCX";
const VERSION: u8 = 1;
/// Smallest encoded entry: name_len, 1-byte name, micros, dropped.
const MIN_ENTRY_LEN: usize = 1 + 1 + 8 + 1;

/// When and how a table name last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Time of the create or drop, µs since the epoch (0 for tables older than stamps).
    pub micros: u64,
    /// True for a tombstone.
    pub dropped: bool,
}

/// Every table name's stamp.
pub type Stamps = BTreeMap<String, Stamp>;

/// One table as exported: its stamp and, when live, its metadata bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    /// Table name.
    pub name: String,
    /// Its stamp.
    pub stamp: Stamp,
    /// The stored metadata ([`TableSchema::encode_metadata`]); empty for a tombstone.
    pub metadata: Vec<u8>,
}

impl ExportEntry {
    /// The merge order: stamp, then metadata bytes (deterministic on every node).
    pub fn wins_over(&self, other: &ExportEntry) -> bool {
        (self.stamp, &self.metadata) > (other.stamp, &other.metadata)
    }
}

/// Why stamps or an export could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaSyncError {
    /// Reading or writing the stamps file failed.
    #[error("schema stamps file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes that do not decode.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// `"schema stamps file"` or `"schema export"`.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The stamp a local create or drop takes: now, but always after the name's last stamp
/// (so a re-create beats its own tombstone even if the clock stepped back).
pub fn next_stamp(previous: Option<Stamp>, now_micros: i64, dropped: bool) -> Stamp {
    let now = u64::try_from(now_micros).unwrap_or(0);
    let micros = previous.map_or(now, |p| p.micros.saturating_add(1).max(now));
    Stamp { micros, dropped }
}

/// Brings loaded stamps in line with the engine's live tables after a crash between a DDL
/// step and the stamps write: a live table without a live stamp gets one (0 for tables
/// older than stamps; just after its tombstone when a re-create's stamp was lost), a live
/// stamp without a table becomes a tombstone. Returns the stamps and whether they changed.
pub fn reconcile(mut stamps: Stamps, live: &[&str]) -> (Stamps, bool) {
    let mut changed = false;
    for name in live {
        match stamps.get(*name) {
            Some(s) if !s.dropped => {}
            other => {
                let micros = other.map_or(0, |s| s.micros.saturating_add(1));
                let live = Stamp {
                    micros,
                    dropped: false,
                };
                stamps.insert((*name).to_owned(), live);
                changed = true;
            }
        }
    }
    for (name, s) in stamps.iter_mut() {
        if !s.dropped && !live.contains(&name.as_str()) {
            *s = Stamp {
                micros: s.micros.saturating_add(1),
                dropped: true,
            };
            changed = true;
        }
    }
    (stamps, changed)
}

/// Reads the stamps file in `dir` (empty when there is none).
pub fn load_stamps(dir: &Path) -> Result<Stamps, SchemaSyncError> {
    let bytes = read_if_exists(dir, STAMPS_FILE).map_err(|source| SchemaSyncError::Io {
        path: dir.join(STAMPS_FILE),
        source,
    })?;
    match bytes {
        None => Ok(Stamps::new()),
        Some(b) => decode_entries(&b, STAMPS_MAGIC, false)
            .map(|entries| entries.into_iter().map(|e| (e.name, e.stamp)).collect())
            .map_err(|reason| SchemaSyncError::Corrupt {
                what: "schema stamps file",
                reason,
            }),
    }
}

/// Writes the stamps file in `dir` atomically.
pub fn save_stamps(dir: &Path, stamps: &Stamps) -> Result<(), SchemaSyncError> {
    let entries: Vec<ExportEntry> = stamps
        .iter()
        .map(|(name, stamp)| ExportEntry {
            name: name.clone(),
            stamp: *stamp,
            metadata: Vec::new(),
        })
        .collect();
    let bytes = encode_entries(&entries, STAMPS_MAGIC, false);
    write_atomically(dir, STAMPS_FILE, &bytes).map_err(|source| SchemaSyncError::Io {
        path: dir.join(STAMPS_FILE),
        source,
    })
}

/// The export of `stamps` with each live table's metadata from `tables`. A live stamp
/// without a table is skipped (the caller keeps both in step).
pub fn export(stamps: &Stamps, table: impl Fn(&str) -> Option<TableSchema>) -> Vec<u8> {
    export_with(stamps, table, Vec::new())
}

/// [`export`] with `extra` entries beside the tables (the users, named `user:NAME`: a
/// `:` is never in a table name, so the two never collide), all sorted by name.
pub fn export_with(
    stamps: &Stamps,
    table: impl Fn(&str) -> Option<TableSchema>,
    extra: Vec<ExportEntry>,
) -> Vec<u8> {
    let mut entries: Vec<ExportEntry> = stamps
        .iter()
        .filter_map(|(name, stamp)| {
            let metadata = if stamp.dropped {
                Vec::new()
            } else {
                table(name)?.encode_metadata()
            };
            Some(ExportEntry {
                name: name.clone(),
                stamp: *stamp,
                metadata,
            })
        })
        .collect();
    entries.extend(extra);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    encode_entries(&entries, EXPORT_MAGIC, true)
}

/// Decodes a peer's export.
pub fn decode_export(bytes: &[u8]) -> Result<Vec<ExportEntry>, SchemaSyncError> {
    decode_entries(bytes, EXPORT_MAGIC, true).map_err(|reason| SchemaSyncError::Corrupt {
        what: "schema export",
        reason,
    })
}

/// The schema version of an export: 0 for an empty schema, else a 64-bit hash of the
/// export bytes (never 0).
pub fn version_of(export: &[u8], empty: bool) -> u64 {
    if empty {
        return 0;
    }
    let (h1, _) = crate::ring::murmur3::cassandra_x64_128(export, 0);
    (h1 as u64).max(1)
}

fn encode_entries(entries: &[ExportEntry], magic: [u8; 4], with_metadata: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + entries.len() * 48);
    b.extend_from_slice(&magic);
    b.push(VERSION);
    let entries: Vec<&ExportEntry> = entries
        .iter()
        .filter(|e| !e.name.is_empty() && e.name.len() <= MAX_TABLE_NAME_LEN)
        .filter(|e| e.metadata.len() <= usize::from(u16::MAX))
        .collect();
    b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        b.push(e.name.len() as u8);
        b.extend_from_slice(e.name.as_bytes());
        b.extend_from_slice(&e.stamp.micros.to_be_bytes());
        b.push(u8::from(e.stamp.dropped));
        if with_metadata && !e.stamp.dropped {
            b.extend_from_slice(&(e.metadata.len() as u16).to_be_bytes());
            b.extend_from_slice(&e.metadata);
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

fn decode_entries(
    bytes: &[u8],
    magic: [u8; 4],
    with_metadata: bool,
) -> Result<Vec<ExportEntry>, &'static str> {
    const T: &str = "truncated";
    let body_len = bytes.len().checked_sub(4).ok_or("too short")?;
    let (body, crc) = bytes.split_at(body_len);
    if crc32fast::hash(body) != u32::from_be_bytes(<[u8; 4]>::try_from(crc).map_err(|_| T)?) {
        return Err("checksum mismatch");
    }
    let mut r = ByteReader::new(body);
    if r.take(4).ok_or(T)? != magic {
        return Err("bad magic");
    }
    if r.u8().ok_or(T)? != VERSION {
        return Err("unknown version");
    }
    let count = usize::try_from(r.u32_be().ok_or(T)?).map_err(|_| "count")?;
    if count > r.remaining() / MIN_ENTRY_LEN {
        return Err("entry count exceeds the bytes present");
    }
    let mut out: Vec<ExportEntry> = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = usize::from(r.u8().ok_or(T)?);
        if name_len == 0 || name_len > MAX_TABLE_NAME_LEN {
            return Err("table name length");
        }
        let name = std::str::from_utf8(r.take(name_len).ok_or(T)?)
            .map_err(|_| "table name is not UTF-8")?
            .to_owned();
        if out.last().is_some_and(|prev| prev.name >= name) {
            return Err("entries not sorted by name");
        }
        let micros = r.u64_be().ok_or(T)?;
        let dropped = match r.u8().ok_or(T)? {
            0 => false,
            1 => true,
            _ => return Err("dropped flag"),
        };
        let metadata = if with_metadata && !dropped {
            let len = usize::from(r.u16_be().ok_or(T)?);
            r.take(len).ok_or(T)?.to_vec()
        } else {
            Vec::new()
        };
        out.push(ExportEntry {
            name,
            stamp: Stamp { micros, dropped },
            metadata,
        });
    }
    if !r.is_empty() {
        return Err("trailing bytes");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::TableOptions;

    fn schema(name: &str, rf: u16) -> TableSchema {
        TableSchema {
            name: name.into(),
            options: TableOptions {
                replication_factor: rf,
                ..TableOptions::default()
            },
        }
    }

    fn stamps() -> Stamps {
        let mut s = Stamps::new();
        s.insert(
            "gone".into(),
            Stamp {
                micros: 9,
                dropped: true,
            },
        );
        s.insert(
            "users".into(),
            Stamp {
                micros: 5,
                dropped: false,
            },
        );
        s
    }

    #[test]
    fn schema_export_round_trips_with_tombstones() {
        let bytes = export(&stamps(), |n| Some(schema(n, 3)));
        let entries = decode_export(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "gone");
        assert!(entries[0].stamp.dropped && entries[0].metadata.is_empty());
        assert_eq!(entries[1].metadata, schema("users", 3).encode_metadata());
    }

    #[test]
    fn schema_export_matches_documented_example() {
        let mut s = Stamps::new();
        s.insert(
            "t".into(),
            Stamp {
                micros: 1,
                dropped: false,
            },
        );
        let meta = schema("t", 1).encode_metadata();
        let bytes = export(&s, |n| Some(schema(n, 1)));
        let mut head = vec![0x53, 0x53, 0x43, 0x58, 1, 0, 0, 0, 1, 1, b't'];
        head.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, meta.len() as u8]);
        head.extend_from_slice(&meta);
        assert_eq!(&bytes[..head.len()], &head[..]);
        assert_eq!(bytes.len(), head.len() + 4);
    }

    #[test]
    fn schema_export_every_truncation_and_bit_flip_is_refused() {
        let bytes = export(&stamps(), |n| Some(schema(n, 3)));
        for n in 0..bytes.len() {
            assert!(decode_export(&bytes[..n]).is_err(), "length {n}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode_export(&b).is_err(), "bit {i}");
        }
    }

    #[test]
    fn schema_stamps_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_stamps(dir.path()).unwrap().is_empty());
        save_stamps(dir.path(), &stamps()).unwrap();
        assert_eq!(load_stamps(dir.path()).unwrap(), stamps());
    }

    #[test]
    fn schema_version_depends_on_content_and_is_zero_only_when_empty() {
        let a = export(&stamps(), |n| Some(schema(n, 3)));
        let b = export(&stamps(), |n| Some(schema(n, 2)));
        assert_ne!(version_of(&a, false), version_of(&b, false));
        assert_eq!(
            version_of(&a, false),
            version_of(&export(&stamps(), |n| Some(schema(n, 3))), false)
        );
        assert_eq!(version_of(&export(&Stamps::new(), |_| None), true), 0);
        assert_ne!(version_of(&a, false), 0);
    }

    #[test]
    fn schema_newer_stamp_wins_and_drop_wins_a_tie() {
        let live = |micros| ExportEntry {
            name: "t".into(),
            stamp: Stamp {
                micros,
                dropped: false,
            },
            metadata: vec![1],
        };
        let dropped = |micros| ExportEntry {
            name: "t".into(),
            stamp: Stamp {
                micros,
                dropped: true,
            },
            metadata: Vec::new(),
        };
        assert!(live(6).wins_over(&dropped(5)));
        assert!(dropped(6).wins_over(&live(5)));
        assert!(dropped(5).wins_over(&live(5)));
        assert!(!live(5).wins_over(&live(5)));
    }

    #[test]
    fn schema_reconcile_matches_stamps_to_live_tables() {
        // "users" live in the engine with a live stamp; "gone" re-created after its
        // tombstone; "old" live without a stamp; "lost" stamped live but not in the engine.
        let mut s = stamps();
        s.insert(
            "lost".into(),
            Stamp {
                micros: 3,
                dropped: false,
            },
        );
        let (out, changed) = reconcile(s, &["users", "gone", "old"]);
        assert!(changed);
        let live = |micros| Stamp {
            micros,
            dropped: false,
        };
        assert_eq!(out["users"], live(5));
        assert_eq!(out["gone"], live(10));
        assert_eq!(out["old"], live(0));
        assert_eq!(
            out["lost"],
            Stamp {
                micros: 4,
                dropped: true
            }
        );
        assert!(!reconcile(out, &["users", "gone", "old"]).1);
    }

    #[test]
    fn schema_next_stamp_follows_the_previous_one() {
        let prev = Stamp {
            micros: 100,
            dropped: true,
        };
        assert_eq!(next_stamp(Some(prev), 50, false).micros, 101);
        assert_eq!(next_stamp(Some(prev), 500, false).micros, 500);
        assert_eq!(next_stamp(None, 7, true).micros, 7);
    }
}
