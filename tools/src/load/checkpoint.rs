//! The checkpoint file of a load: what `--resume` continues from.
//!
//! # Format (version 1)
//!
//! Three lines of text, each ending in `\n`:
//!
//! ```text
//! SIBYL-LOAD-CHECKPOINT 1
//! {"load_id":"9f0c2b6e11d3a7c4","table":"users","format":"csv","key":"id","input":"users.csv","rows_done":120000,"digest":3735928559,"rejects_path":"users.csv.rejects.jsonl","rejects_len":512,"loaded_rows":119998,"cells":599990,"bytes":14399760,"rejects":{"malformed":2},"complete":false}
//! crc32 289343c8
//! ```
//!
//! - Line 1: the magic and the format version.
//! - Line 2: one JSON object. `load_id` (16 hex digits) is the high half of every write
//!   id of the load; `rows_done` is the watermark `W`: every item numbered `1..=W` is
//!   finished (written and acknowledged, or rejected and in the rejects file), and no
//!   item above it is known to be; `digest` is the [`ItemDigest`] after item `W`;
//!   `rejects_len` is the length of the rejects file holding exactly the rejects of items
//!   `1..=W`; `loaded_rows`, `cells`, `bytes` and `rejects` (count per kind) total items
//!   `1..=W`; `complete` is true once the whole input is finished. `table`, `format`,
//!   `key` and `input` name the load, so a resume with other settings is refused.
//! - Line 3: `crc32` and the CRC-32 (IEEE) of line 2's bytes (without its `\n`), eight
//!   lowercase hex digits.
//!
//! A file that is not exactly this (a wrong magic or version, a checksum mismatch, a
//! missing field) is refused with a typed [`CheckpointError`]; nothing is guessed.
//!
//! # Durability
//!
//! [`write_durably`] writes `PATH.tmp`, fsyncs it, renames it over `PATH` and fsyncs the
//! directory: a crash leaves the old checkpoint or the new one, never a torn one. The
//! rejects file is flushed and fsynced before the checkpoint that counts its length.
//!
//! [`ItemDigest`]: crate::load::item::ItemDigest

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first line of every checkpoint file, without the version.
pub const CHECKPOINT_MAGIC: &str = "SIBYL-LOAD-CHECKPOINT";
/// The format version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
/// The largest checkpoint file read (the JSON line is small; a larger file is not ours).
const MAX_CHECKPOINT_BYTES: u64 = 1024 * 1024;

/// The state of a load at its watermark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// High 64 bits of every write id of this load, as 16 hex digits.
    pub load_id: String,
    /// Target table.
    pub table: String,
    /// Input format name (`csv`, `long-csv`, `jsonl`).
    pub format: String,
    /// Key column or field (empty for the long form).
    pub key: String,
    /// The input as given (`-` for stdin).
    pub input: String,
    /// The watermark: items `1..=rows_done` are finished.
    pub rows_done: u64,
    /// Digest of items `1..=rows_done`.
    pub digest: u32,
    /// The rejects file.
    pub rejects_path: String,
    /// Its length holding the rejects of items `1..=rows_done`.
    pub rejects_len: u64,
    /// Rows written among items `1..=rows_done`.
    pub loaded_rows: u64,
    /// Cells written.
    pub cells: u64,
    /// Bytes of keys, names and values written.
    pub bytes: u64,
    /// Rejected items by kind name.
    pub rejects: BTreeMap<String, u64>,
    /// Whether the whole input is finished.
    pub complete: bool,
}

impl Checkpoint {
    /// The load id as a number.
    pub fn load_id(&self) -> Result<u64, CheckpointError> {
        u64::from_str_radix(&self.load_id, 16).map_err(|_| CheckpointError::Malformed {
            reason: format!("load_id {:?} is not 16 hex digits", self.load_id),
        })
    }

    /// The file's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        let json = serde_json::to_string(self).map_err(|e| CheckpointError::Malformed {
            reason: e.to_string(),
        })?;
        let crc = crc32fast::hash(json.as_bytes());
        Ok(
            format!("{CHECKPOINT_MAGIC} {CHECKPOINT_VERSION}\n{json}\ncrc32 {crc:08x}\n")
                .into_bytes(),
        )
    }

    /// Reads a file's bytes back, checking magic, version and checksum.
    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let text = std::str::from_utf8(bytes).map_err(|_| CheckpointError::Malformed {
            reason: "not UTF-8 text".into(),
        })?;
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default();
        let version = first
            .strip_prefix(CHECKPOINT_MAGIC)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(CheckpointError::BadMagic)?;
        let version: u32 = version.parse().map_err(|_| CheckpointError::BadMagic)?;
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::UnsupportedVersion { found: version });
        }
        let json = lines.next().unwrap_or_default();
        let crc_line = lines.next().unwrap_or_default();
        let rest: Vec<&str> = lines.collect();
        if rest != [""] {
            return Err(CheckpointError::Malformed {
                reason: "expected exactly three lines".into(),
            });
        }
        let expected = crc_line
            .strip_prefix("crc32 ")
            .filter(|h| h.len() == 8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| CheckpointError::Malformed {
                reason: format!("third line {crc_line:?} is not `crc32` and 8 hex digits"),
            })?;
        let got = crc32fast::hash(json.as_bytes());
        if got != expected {
            return Err(CheckpointError::ChecksumMismatch { expected, got });
        }
        let cp: Checkpoint =
            serde_json::from_str(json).map_err(|e| CheckpointError::Malformed {
                reason: e.to_string(),
            })?;
        cp.load_id()?;
        Ok(cp)
    }

    /// Reads the checkpoint at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path, e)),
        };
        if meta.len() > MAX_CHECKPOINT_BYTES {
            return Err(CheckpointError::Malformed {
                reason: format!("{} bytes is too large for a checkpoint", meta.len()),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        Checkpoint::decode(&bytes).map(Some)
    }

    /// Writes the checkpoint at `path` durably ([`write_durably`]).
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        write_durably(path, &self.encode()?).map_err(|e| io_error(path, e))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one: a
/// temporary file beside it, fsynced, renamed over it, then the directory fsynced.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// Fsyncs the directory holding `path` (a created or renamed file's entry is durable
/// only then).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// A checkpoint that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The first line is not `SIBYL-LOAD-CHECKPOINT <version>`.
    #[error("not a sibyl-load checkpoint (bad magic line)")]
    BadMagic,
    /// A version this build does not read.
    #[error("checkpoint format version {found} is not supported (this build reads {CHECKPOINT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// The JSON line does not match its checksum: the file is damaged.
    #[error("checkpoint checksum mismatch: expected {expected:08x}, got {got:08x} (the file is damaged)")]
    ChecksumMismatch {
        /// The checksum in the file.
        expected: u32,
        /// The checksum of the JSON line.
        got: u32,
    },
    /// The content is not a checkpoint.
    #[error("malformed checkpoint: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            load_id: "9f0c2b6e11d3a7c4".into(),
            table: "users".into(),
            format: "csv".into(),
            key: "id".into(),
            input: "users.csv".into(),
            rows_done: 120_000,
            digest: 0xdead_beef,
            rejects_path: "users.csv.rejects.jsonl".into(),
            rejects_len: 512,
            loaded_rows: 119_998,
            cells: 599_990,
            bytes: 14_399_760,
            rejects: BTreeMap::from([("malformed".to_owned(), 2)]),
            complete: false,
        }
    }

    #[test]
    fn checkpoint_round_trips_and_matches_the_documented_example() {
        let cp = sample();
        let bytes = cp.encode().unwrap();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), cp);
        let text = String::from_utf8(bytes).unwrap();
        let doc = include_str!("checkpoint.rs");
        for line in text.lines() {
            assert!(
                doc.contains(&format!("//! {line}")),
                "module doc lacks {line:?}"
            );
        }
        assert_eq!(cp.load_id().unwrap(), 0x9f0c_2b6e_11d3_a7c4);
    }

    #[test]
    fn checkpoint_decode_refuses_damage() {
        let good = String::from_utf8(sample().encode().unwrap()).unwrap();
        let flipped = good.replace("\"rows_done\":120000", "\"rows_done\":120001");
        assert!(matches!(
            Checkpoint::decode(flipped.as_bytes()),
            Err(CheckpointError::ChecksumMismatch { .. })
        ));
        assert!(matches!(
            Checkpoint::decode(good.replace("CHECKPOINT 1", "CHECKPOINT 2").as_bytes()),
            Err(CheckpointError::UnsupportedVersion { found: 2 })
        ));
        assert!(matches!(
            Checkpoint::decode(good.replace("SIBYL", "OTHER").as_bytes()),
            Err(CheckpointError::BadMagic)
        ));
        let torn = &good.as_bytes()[..good.len() - 5];
        assert!(Checkpoint::decode(torn).is_err());
        assert!(Checkpoint::decode(b"").is_err());
    }

    #[test]
    fn checkpoint_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("load.checkpoint");
        assert_eq!(Checkpoint::read(&path).unwrap(), None);
        let mut cp = sample();
        cp.write(&path).unwrap();
        cp.rows_done += 1;
        cp.write(&path).unwrap();
        assert_eq!(Checkpoint::read(&path).unwrap(), Some(cp));
        assert!(!dir.path().join("load.checkpoint.tmp").exists());
    }
}
