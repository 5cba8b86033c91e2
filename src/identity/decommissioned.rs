//! The `decommissioned` file: a node that handed off every range and left the ring
//! remembers it, and refuses to start again on the same data directory. Restarted as an
//! owner of its old tokens, it would take back ranges whose writes went to other nodes
//! since it left (Cassandra refuses the same restart).
//!
//! # Format
//! ```text
//! file = "SBDC" version:u8(=1) node:u64be left_at:u64be crc:u32be
//! ```
//! `node` is the node's id, `left_at` the Unix second it left; `crc` is the CRC-32 (IEEE)
//! of everything before it. Written atomically ([`sibyl_storage::atomic_file`]) after the
//! last range was handed off and before `left` is announced: a crash in between restarts
//! to the same refusal, while the other nodes still see the node `leaving` (down), and
//! `sibyl-admin removenode` on a live node ends it. A damaged file is refused like a
//! whole one: the node stays out.

use std::path::Path;

use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

use crate::ring::NodeId;

/// File name in the data directory.
pub const DECOMMISSIONED_FILE: &str = "decommissioned";
const MAGIC: [u8; 4] = *b"SBDC";
const VERSION: u8 = 1;
const LEN: usize = 4 + 1 + 8 + 8 + 4;

/// What the file says: this node left the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decommissioned {
    /// The node.
    pub node: NodeId,
    /// When it left (Unix seconds).
    pub left_at: u64,
}

impl Decommissioned {
    /// Writes the file in `dir` (atomically, synced).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        write_atomically(dir, DECOMMISSIONED_FILE, &self.encode())
    }

    /// Reads the file in `dir`: `Ok(None)` without one; `Err` with the reason when it is
    /// there but damaged (the node must still refuse to start).
    pub fn load(dir: &Path) -> std::io::Result<Option<Result<Decommissioned, String>>> {
        Ok(read_if_exists(dir, DECOMMISSIONED_FILE)?.map(|b| Decommissioned::decode(&b)))
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(LEN);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&self.node.0.to_be_bytes());
        b.extend_from_slice(&self.left_at.to_be_bytes());
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes [`Decommissioned::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Decommissioned, String> {
        if bytes.len() != LEN {
            return Err(format!("{} bytes, expected {LEN}", bytes.len()));
        }
        let (body, crc) = bytes.split_at(LEN - 4);
        let u64_at = |i: usize| {
            body.get(i..i + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_be_bytes)
        };
        let crc: [u8; 4] = crc.try_into().map_err(|_| "too short".to_owned())?;
        if crc32fast::hash(body) != u32::from_be_bytes(crc) {
            return Err("checksum mismatch".into());
        }
        if body.get(..4) != Some(&MAGIC[..]) {
            return Err("bad magic".into());
        }
        if body.get(4) != Some(&VERSION) {
            return Err("unknown version".into());
        }
        match (u64_at(5), u64_at(13)) {
            (Some(node), Some(left_at)) => Ok(Decommissioned {
                node: NodeId(node),
                left_at,
            }),
            _ => Err("truncated".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decommissioned_file_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Decommissioned::load(dir.path()).unwrap().is_none());
        let d = Decommissioned {
            node: NodeId(0xab),
            left_at: 1_765_000_000,
        };
        d.save(dir.path()).unwrap();
        assert_eq!(Decommissioned::load(dir.path()).unwrap(), Some(Ok(d)));
        let b = d.encode();
        assert_eq!(&b[..5], b"SBDC\x01");
        // The example of doc/node-files.md, `decommissioned`.
        assert_eq!(&b[5..13], &[0, 0, 0, 0, 0, 0, 0, 0xab]);
        assert_eq!(&b[13..21], &[0, 0, 0, 0, 0x69, 0x33, 0xc3, 0x40]);
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(Decommissioned::decode(&c).is_err(), "byte {i} flipped");
        }
        assert!(Decommissioned::decode(&b[..b.len() - 1]).is_err());
        std::fs::write(dir.path().join(DECOMMISSIONED_FILE), b"junk").unwrap();
        assert!(matches!(Decommissioned::load(dir.path()), Ok(Some(Err(_)))));
    }
}
