//! [`BootstrapState`]: how far a joining node has streamed each range it gains, in the
//! file `bootstrap` of the data directory (spec: `doc/node-files.md`). The file exists
//! from the moment the node chooses its tokens until every range is streamed: a node
//! restarted with saved tokens and this file is still joining, and resumes each range
//! after the last key it applied (never from the start of a range it finished or began).
//!
//! # Format (version 2)
//! ```text
//! file    = magic version replacing:u64be count:u32be entry{count} crc
//! magic   = "SBST"                           (4 bytes)
//! version = 0x02                             (0x01: the same without `replacing`)
//! entry   = table:str range source:u64be state bytes:u64be cells:u64be
//! str     = len:u16be utf8{len}
//! range   = start:token end:token            (start, end]
//! token   = len:u8 sortable:byte{len}        8 bytes murmur3, 16 md5
//! state   = 0x00 (not begun) | 0x01 after:bytes (resume after this engine key)
//!         | 0x02 (done)
//! bytes   = len:u32be byte{len}
//! crc     = CRC-32 (IEEE) of magic..entries, u32be
//! ```
//! `replacing` is the dead node this one replaces (`--replace`; 0 for a plain join), so a
//! replacement restarted mid-stream announces itself as that node's replacement again.
//! `source` is the node the range was last streamed from (0 before the first page),
//! `bytes` and `cells` what was applied so far. A node with the file and no plan yet
//! (count 0) computes its plan once it sees the ring with its tokens pending.
//!
//! Writes are atomic ([`sibyl_storage::atomic_file`]: write, fsync, rename, fsync the
//! directory), made every [`super::StreamOptions::checkpoint_bytes`] (16 MiB) of a range
//! and at its last page, each after the commit log was synced, so a checkpoint never
//! names a key whose page a crash could lose; decoding never panics.

use std::path::{Path, PathBuf};

use sibyl_coding::ByteReader;
use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

use crate::repair::messages::{key, put_bytes, put_range, put_str, range, table, MAX_TABLE_LEN};
use crate::replica::TokenRange;
use crate::ring::NodeId;

/// File name in the data directory.
pub const BOOTSTRAP_FILE: &str = "bootstrap";
/// Name of a decommissioning node's file: the same format, each range's `source` being
/// the node it is pushed to ([`super::decommission`]).
pub const HANDOFF_FILE: &str = "handoff";
/// Name of a moving node's pull progress: the `bootstrap` format, for the ranges its new
/// tokens gain ([`super::movement`]).
pub const MOVE_PULL_FILE: &str = "move-pull";
/// Name of a moving node's push progress: the `handoff` format, for the ranges its old
/// tokens lose.
pub const MOVE_PUSH_FILE: &str = "move-push";
/// Name of the file that says a move is under way, and to which tokens ([`MoveState`]).
pub const MOVE_FILE: &str = "move";
const MAGIC: [u8; 4] = *b"SBST";
const MOVE_MAGIC: [u8; 4] = *b"SBMV";
const MOVE_VERSION: u8 = 1;
const VERSION: u8 = 2;
/// The first version, without `replacing` (still read).
const VERSION_1: u8 = 1;
const CRC_LEN: usize = 4;

/// Appends the CRC-32 of everything in `b` (the trailer of both formats).
fn seal(mut b: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// The body of a sealed file after its `magic`, once the trailer's CRC matches.
fn opened<'a>(bytes: &'a [u8], magic: &[u8; 4]) -> Result<ByteReader<'a>, String> {
    let body_len = bytes.len().checked_sub(CRC_LEN).ok_or("too short")?;
    let (body, crc) = bytes.split_at(body_len);
    let crc: [u8; 4] = crc.try_into().map_err(|_| "too short")?;
    if crc32fast::hash(body) != u32::from_be_bytes(crc) {
        return Err("checksum mismatch".into());
    }
    let mut r = ByteReader::new(body);
    if r.take(4) != Some(&magic[..]) {
        return Err("bad magic".into());
    }
    Ok(r)
}

/// Where one range's stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// No page applied yet.
    NotBegun,
    /// Pages applied up to this engine key (the next page starts after it).
    After(Vec<u8>),
    /// Every page applied.
    Done,
}

/// One range a joining node gains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeCheckpoint {
    /// The table.
    pub table: String,
    /// The ring range.
    pub range: TokenRange,
    /// The node it was last streamed from (`NodeId(0)` before the first page).
    pub source: NodeId,
    /// How far it is.
    pub progress: Progress,
    /// Bytes of keys and values applied.
    pub bytes: u64,
    /// Entries applied.
    pub cells: u64,
}

impl RangeCheckpoint {
    /// A stream of `range` of `table` with `peer` (`NodeId(0)`: none chosen yet), nothing
    /// moved.
    pub fn not_begun(table: &str, range: TokenRange, peer: NodeId) -> RangeCheckpoint {
        RangeCheckpoint {
            table: table.to_owned(),
            range,
            source: peer,
            progress: Progress::NotBegun,
            bytes: 0,
            cells: 0,
        }
    }
}

/// The bootstrap file's content (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapState {
    /// The dead node this node replaces (`--replace`), `None` for a plain join.
    pub replacing: Option<NodeId>,
    /// Every range gained, once planned (empty before).
    pub ranges: Vec<RangeCheckpoint>,
}

/// Why the bootstrap file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapFileError {
    /// Reading, writing or removing failed.
    #[error("stream checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("stream checkpoint file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl BootstrapState {
    /// Reads the file in `dir`; `None` when there is none (the node is not joining).
    pub fn load(dir: &Path) -> Result<Option<BootstrapState>, BootstrapFileError> {
        BootstrapState::load_named(dir, BOOTSTRAP_FILE)
    }

    /// Writes the file in `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), BootstrapFileError> {
        self.save_named(dir, BOOTSTRAP_FILE)
    }

    /// Removes the file from `dir` (the bootstrap completed), syncing the directory.
    pub fn remove(dir: &Path) -> Result<(), BootstrapFileError> {
        BootstrapState::remove_named(dir, BOOTSTRAP_FILE)
    }

    /// [`BootstrapState::load`] of the file `name` ([`BOOTSTRAP_FILE`] or
    /// [`HANDOFF_FILE`]).
    pub fn load_named(
        dir: &Path,
        name: &str,
    ) -> Result<Option<BootstrapState>, BootstrapFileError> {
        let path = dir.join(name);
        let bytes = read_if_exists(dir, name).map_err(|source| BootstrapFileError::Io {
            path: path.clone(),
            source,
        })?;
        match bytes {
            None => Ok(None),
            Some(b) => BootstrapState::decode(&b)
                .map(Some)
                .map_err(|reason| BootstrapFileError::Corrupt { path, reason }),
        }
    }

    /// [`BootstrapState::save`] as the file `name`.
    pub fn save_named(&self, dir: &Path, name: &str) -> Result<(), BootstrapFileError> {
        write_atomically(dir, name, &self.encode()).map_err(|source| BootstrapFileError::Io {
            path: dir.join(name),
            source,
        })
    }

    /// [`BootstrapState::remove`] of the file `name`.
    pub fn remove_named(dir: &Path, name: &str) -> Result<(), BootstrapFileError> {
        let path = dir.join(name);
        let io = |source| BootstrapFileError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&self.replacing.map_or(0, |n| n.0).to_be_bytes());
        b.extend_from_slice(&(self.ranges.len() as u32).to_be_bytes());
        for r in &self.ranges {
            put_str(&mut b, &r.table, MAX_TABLE_LEN);
            put_range(&mut b, &r.range);
            b.extend_from_slice(&r.source.0.to_be_bytes());
            match &r.progress {
                Progress::NotBegun => b.push(0),
                Progress::After(k) => {
                    b.push(1);
                    put_bytes(&mut b, k);
                }
                Progress::Done => b.push(2),
            }
            b.extend_from_slice(&r.bytes.to_be_bytes());
            b.extend_from_slice(&r.cells.to_be_bytes());
        }
        seal(b)
    }

    /// Decodes [`BootstrapState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<BootstrapState, String> {
        let mut r = opened(bytes, &MAGIC)?;
        let replacing = match r.u8() {
            Some(VERSION) => match r.u64_be().ok_or("truncated replaced node")? {
                0 => None,
                n => Some(NodeId(n)),
            },
            Some(VERSION_1) => None,
            _ => return Err("unknown version".into()),
        };
        let count = r.u32_be().ok_or("truncated count")? as usize;
        let mut ranges = Vec::with_capacity(count.min(r.remaining()));
        for _ in 0..count {
            let table = table(&mut r).map_err(|e| e.to_string())?;
            let range = range(&mut r).map_err(|e| e.to_string())?;
            let source = NodeId(r.u64_be().ok_or("truncated source")?);
            let progress = match r.u8().ok_or("truncated state")? {
                0 => Progress::NotBegun,
                1 => Progress::After(key(&mut r).map_err(|e| e.to_string())?),
                2 => Progress::Done,
                _ => return Err("unknown range state".into()),
            };
            let bytes = r.u64_be().ok_or("truncated byte count")?;
            let cells = r.u64_be().ok_or("truncated cell count")?;
            ranges.push(RangeCheckpoint {
                table,
                range,
                source,
                progress,
                bytes,
                cells,
            });
        }
        if !r.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(BootstrapState { replacing, ranges })
    }
}

/// The `move` file: a move under way and the tokens it moves the node to (spec:
/// `doc/node-files.md`). Written before the node announces `moving`, removed once it
/// owns the new tokens or the move is cancelled: a node restarted with it comes back
/// `moving` and resumes.
///
/// ```text
/// file  = "SBMV" version:u8 (1) count:u32be token{count} crc:u32be
/// token = len:u8 sortable:byte{len}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveState {
    /// The tokens the node moves to, sorted.
    pub to: Vec<crate::ring::Token>,
}

impl MoveState {
    /// Reads the file in `dir`; `None` when no move is under way.
    pub fn load(dir: &Path) -> Result<Option<MoveState>, BootstrapFileError> {
        let path = dir.join(MOVE_FILE);
        let bytes = read_if_exists(dir, MOVE_FILE).map_err(|source| BootstrapFileError::Io {
            path: path.clone(),
            source,
        })?;
        match bytes {
            None => Ok(None),
            Some(b) => MoveState::decode(&b)
                .map(Some)
                .map_err(|reason| BootstrapFileError::Corrupt { path, reason }),
        }
    }

    /// Writes the file in `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), BootstrapFileError> {
        write_atomically(dir, MOVE_FILE, &self.encode()).map_err(|source| BootstrapFileError::Io {
            path: dir.join(MOVE_FILE),
            source,
        })
    }

    /// Removes the move's files from `dir` (the progress files first, the `move` file
    /// last), syncing the directory.
    pub fn remove(dir: &Path) -> Result<(), BootstrapFileError> {
        for name in [MOVE_PULL_FILE, MOVE_PUSH_FILE, MOVE_FILE] {
            BootstrapState::remove_named(dir, name)?;
        }
        Ok(())
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MOVE_MAGIC);
        b.push(MOVE_VERSION);
        b.extend_from_slice(&(self.to.len() as u32).to_be_bytes());
        for t in &self.to {
            let sortable = t.to_sortable_bytes();
            b.push(sortable.len() as u8);
            b.extend_from_slice(&sortable);
        }
        seal(b)
    }

    /// Decodes [`MoveState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<MoveState, String> {
        let mut r = opened(bytes, &MOVE_MAGIC)?;
        if r.u8() != Some(MOVE_VERSION) {
            return Err("unknown version".into());
        }
        let count = r.u32_be().ok_or("truncated count")? as usize;
        let mut to = Vec::with_capacity(count.min(r.remaining()));
        for _ in 0..count {
            to.push(crate::repair::messages::token(&mut r).map_err(|e| e.to_string())?);
        }
        if to.is_empty() {
            return Err("no tokens".into());
        }
        if to.windows(2).any(|w| w[0] >= w[1]) {
            return Err("tokens not strictly ascending".into());
        }
        if !r.is_empty() {
            return Err("trailing bytes".into());
        }
        Ok(MoveState { to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Token;

    fn state() -> BootstrapState {
        let r = |s, e| TokenRange {
            start: Token::Murmur3(s),
            end: Token::Murmur3(e),
        };
        BootstrapState {
            replacing: Some(NodeId(0x5eed)),
            ranges: vec![
                RangeCheckpoint {
                    table: "kv".into(),
                    range: r(-9, 4),
                    source: NodeId(0),
                    progress: Progress::NotBegun,
                    bytes: 0,
                    cells: 0,
                },
                RangeCheckpoint {
                    table: "kv".into(),
                    range: r(4, -9),
                    source: NodeId(77),
                    progress: Progress::After(vec![1, 2, 3]),
                    bytes: 1234,
                    cells: 5,
                },
                RangeCheckpoint {
                    table: "other".into(),
                    range: r(4, 8),
                    source: NodeId(78),
                    progress: Progress::Done,
                    bytes: 10,
                    cells: 1,
                },
            ],
        }
    }

    #[test]
    fn move_file_round_trips_and_refuses_any_flipped_byte_or_truncation() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(MoveState::load(dir.path()).unwrap(), None);
        let m = MoveState {
            to: vec![
                Token::Murmur3(-9),
                Token::Murmur3(4),
                Token::Murmur3(i64::MAX),
            ],
        };
        m.save(dir.path()).unwrap();
        assert_eq!(MoveState::load(dir.path()).unwrap(), Some(m.clone()));
        let b = m.encode();
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x01;
            assert!(MoveState::decode(&bad).is_err(), "byte {i}");
            assert!(MoveState::decode(&b[..i]).is_err(), "prefix {i}");
        }
        BootstrapState::default()
            .save_named(dir.path(), MOVE_PULL_FILE)
            .unwrap();
        MoveState::remove(dir.path()).unwrap();
        assert_eq!(MoveState::load(dir.path()).unwrap(), None);
        assert!(!dir.path().join(MOVE_PULL_FILE).exists());
    }

    #[test]
    fn bootstrap_file_round_trips_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(BootstrapState::load(dir.path()).unwrap(), None);
        let s = state();
        s.save(dir.path()).unwrap();
        assert_eq!(BootstrapState::load(dir.path()).unwrap(), Some(s));
        BootstrapState::remove(dir.path()).unwrap();
        assert_eq!(BootstrapState::load(dir.path()).unwrap(), None);
        BootstrapState::remove(dir.path()).unwrap();
    }

    #[test]
    fn bootstrap_file_encodes_the_example_of_the_spec() {
        // doc/node-files.md, `bootstrap`.
        let s = BootstrapState {
            replacing: Some(NodeId(0x0c)),
            ranges: vec![RangeCheckpoint {
                table: "kv".into(),
                range: TokenRange {
                    start: Token::Murmur3(-5),
                    end: Token::Murmur3(7),
                },
                source: NodeId(0xab),
                progress: Progress::After(vec![1, 2]),
                bytes: 100,
                cells: 2,
            }],
        };
        let b = s.encode();
        let expected: Vec<u8> = [
            &b"SBST"[..],
            &[2],
            &[0, 0, 0, 0, 0, 0, 0, 0x0c],
            &[0, 0, 0, 1],
            &[0, 2, b'k', b'v'],
            &[8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb],
            &[8, 0x80, 0, 0, 0, 0, 0, 0, 7],
            &[0, 0, 0, 0, 0, 0, 0, 0xab],
            &[1, 0, 0, 0, 2, 1, 2],
            &[0, 0, 0, 0, 0, 0, 0, 100],
            &[0, 0, 0, 0, 0, 0, 0, 2],
        ]
        .concat();
        assert_eq!(&b[..b.len() - 4], &expected[..]);
        assert_eq!(BootstrapState::decode(&b).unwrap(), s);
        // Version 1 (a file of an earlier release): no `replacing`, a plain join.
        let mut v1: Vec<u8> = [&b"SBST"[..], &[1], &expected[13..]].concat();
        v1.extend_from_slice(&crc32fast::hash(&v1).to_be_bytes());
        assert_eq!(
            BootstrapState::decode(&v1).unwrap(),
            BootstrapState {
                replacing: None,
                ..s
            }
        );
    }

    #[test]
    fn bootstrap_file_refuses_any_flipped_byte_or_truncation() {
        let b = state().encode();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(BootstrapState::decode(&c).is_err(), "byte {i} flipped");
        }
        for n in 0..b.len() {
            assert!(BootstrapState::decode(&b[..n]).is_err(), "{n} bytes");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BOOTSTRAP_FILE), &b[..b.len() - 1]).unwrap();
        assert!(matches!(
            BootstrapState::load(dir.path()),
            Err(BootstrapFileError::Corrupt { .. })
        ));
    }
}
