//! [`RingState`]: what a node must remember about its place in the cluster across
//! restarts — the partitioner its data was laid out with, the last gossip generation it
//! started with, and its tokens once chosen — in the file `ring-state` of the data
//! directory (spec: `doc/node-files.md`).
//!
//! # Format (version 1)
//! ```text
//! file        = magic version partitioner generation count token* crc
//! magic       = "SRNG"                     (4 bytes)
//! version     = 0x01
//! partitioner = u8 (0 murmur3, 1 md5)
//! generation  = u64be                      (the generation of the last start)
//! count       = u16be                      (0 until tokens are chosen)
//! token       = i64be (murmur3) | u128be (md5, <= 2^127)
//! crc         = CRC-32 (IEEE) of magic..tokens, u32be
//! ```
//! Example: murmur3, generation 1700000000, tokens [-5, 7] =
//! `53 52 4e 47 01 00 | 00 00 00 00 65 53 f1 00 | 00 02 |
//!  ff ff ff ff ff ff ff fb | 00 00 00 00 00 00 00 07 | crc`.
//!
//! Why: tokens must survive restarts (a node that came back with new tokens would move
//! every range it owned), and the generation must grow across restarts so peers replace
//! the node's old gossip state instead of ignoring the new one. The partitioner is kept so
//! a node restarted with another `--partitioner` refuses to start instead of placing keys
//! where its data is not.
//!
//! Writes are atomic ([`sibyl_storage::atomic_file`]); decoding never panics and rejects trailing
//! bytes. Blocking I/O; the node writes it at start-up and once more from the gossip
//! task when tokens are chosen (never concurrently).

use std::path::{Path, PathBuf};

use crate::ring::{Partitioner, Token};
use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

/// File name in the data directory.
pub const RING_STATE_FILE: &str = "ring-state";
const MAGIC: [u8; 4] = *b"SRNG";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 2;
const CRC_LEN: usize = 4;

/// The node's persisted ring identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingState {
    /// The partitioner the node's data is laid out with.
    pub partitioner: Partitioner,
    /// Generation of the last start.
    pub generation: u64,
    /// Tokens owned (empty until chosen).
    pub tokens: Vec<Token>,
}

/// Why the ring state file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingStateError {
    /// Reading or writing failed.
    #[error("ring state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("ring state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
}

/// The generation of a new start: above the previous one and at least the wall clock in
/// seconds (so a wiped ring-state file still yields a generation above the old one).
pub fn next_generation(previous: Option<u64>, now_secs: u64) -> u64 {
    previous.map_or(now_secs, |p| p.saturating_add(1).max(now_secs))
}

impl RingState {
    /// Reads the file in `dir`; `None` when there is none (a new node).
    pub fn load(dir: &Path) -> Result<Option<RingState>, RingStateError> {
        let path = dir.join(RING_STATE_FILE);
        let bytes = read_if_exists(dir, RING_STATE_FILE).map_err(|source| RingStateError::Io {
            path: path.clone(),
            source,
        })?;
        match bytes {
            None => Ok(None),
            Some(b) => RingState::decode(&b)
                .map(Some)
                .map_err(|reason| RingStateError::Corrupt { path, reason }),
        }
    }

    /// Writes the file in `dir` atomically.
    pub fn save(&self, dir: &Path) -> Result<(), RingStateError> {
        write_atomically(dir, RING_STATE_FILE, &self.encode()).map_err(|source| {
            RingStateError::Io {
                path: dir.join(RING_STATE_FILE),
                source,
            }
        })
    }

    /// The file's bytes. Tokens of another partitioner than `self.partitioner` are
    /// skipped (they cannot be written in its width), as are tokens past the u16 count.
    pub fn encode(&self) -> Vec<u8> {
        let tokens: Vec<&Token> = self
            .tokens
            .iter()
            .filter(|t| self.partitioner.owns_token(t))
            .take(usize::from(u16::MAX))
            .collect();
        let mut b = Vec::with_capacity(HEADER_LEN + tokens.len() * 16 + CRC_LEN);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.push(partitioner_code(self.partitioner));
        b.extend_from_slice(&self.generation.to_be_bytes());
        b.extend_from_slice(&(tokens.len() as u16).to_be_bytes());
        for t in tokens {
            put_token(&mut b, t);
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes [`RingState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<RingState, &'static str> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err("too short");
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32fast::hash(body) != u32::from_be_bytes(arr(crc)?) {
            return Err("checksum mismatch");
        }
        let (head, rest) = body.split_at(HEADER_LEN);
        if head.get(..4) != Some(&MAGIC[..]) {
            return Err("bad magic");
        }
        if head.get(4) != Some(&VERSION) {
            return Err("unknown version");
        }
        let partitioner = partitioner_of(*head.get(5).ok_or("too short")?)?;
        let generation = u64::from_be_bytes(arr(head.get(6..14).ok_or("too short")?)?);
        let count = usize::from(u16::from_be_bytes(arr(head
            .get(14..16)
            .ok_or("too short")?)?));
        let width = token_width(partitioner);
        if rest.len() != count * width {
            return Err("token count does not match the length");
        }
        let mut tokens = Vec::with_capacity(count);
        for chunk in rest.chunks_exact(width) {
            tokens.push(token_of(partitioner, chunk)?);
        }
        Ok(RingState {
            partitioner,
            generation,
            tokens,
        })
    }
}

// The token and partitioner codecs of the identity files (`ring-state`, `peers`).

pub(super) fn partitioner_code(p: Partitioner) -> u8 {
    match p {
        Partitioner::Murmur3 => 0,
        Partitioner::Md5 => 1,
    }
}

pub(super) fn partitioner_of(code: u8) -> Result<Partitioner, &'static str> {
    match code {
        0 => Ok(Partitioner::Murmur3),
        1 => Ok(Partitioner::Md5),
        _ => Err("unknown partitioner"),
    }
}

/// Bytes of one token of `p`.
pub(super) fn token_width(p: Partitioner) -> usize {
    match p {
        Partitioner::Murmur3 => 8,
        Partitioner::Md5 => 16,
    }
}

/// Appends `t`, big-endian, in its partitioner's width.
pub(super) fn put_token(b: &mut Vec<u8>, t: &Token) {
    match *t {
        Token::Murmur3(v) => b.extend_from_slice(&v.to_be_bytes()),
        Token::Md5(v) => b.extend_from_slice(&v.to_be_bytes()),
    }
}

/// The token of `p` in `bytes` (exactly [`token_width`] long), checked in range.
pub(super) fn token_of(p: Partitioner, bytes: &[u8]) -> Result<Token, &'static str> {
    let token = match p {
        Partitioner::Murmur3 => Token::Murmur3(i64::from_be_bytes(arr(bytes)?)),
        Partitioner::Md5 => Token::Md5(u128::from_be_bytes(arr(bytes)?)),
    };
    if !p.owns_token(&token) {
        return Err("token out of the partitioner's range");
    }
    Ok(token)
}

pub(super) fn arr<const N: usize>(b: &[u8]) -> Result<[u8; N], &'static str> {
    <[u8; N]>::try_from(b).map_err(|_| "truncated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RingState {
        RingState {
            partitioner: Partitioner::Murmur3,
            generation: 1_700_000_000,
            tokens: vec![Token::Murmur3(-5), Token::Murmur3(7)],
        }
    }

    #[test]
    fn ring_state_round_trips_both_partitioners() {
        let md5 = RingState {
            partitioner: Partitioner::Md5,
            generation: 3,
            tokens: vec![Token::Md5(0), Token::Md5(1 << 127)],
        };
        for s in [sample(), md5] {
            assert_eq!(RingState::decode(&s.encode()).unwrap(), s);
        }
    }

    #[test]
    fn ring_state_matches_documented_example() {
        let b = sample().encode();
        let body = [
            0x53, 0x52, 0x4e, 0x47, 1, 0, 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0, 0, 2, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xfb, 0, 0, 0, 0, 0, 0, 0, 7,
        ];
        assert_eq!(&b[..body.len()], &body);
        assert_eq!(b.len(), body.len() + 4);
    }

    #[test]
    fn ring_state_every_truncation_and_bit_flip_is_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(RingState::decode(&bytes[..n]).is_err(), "length {n}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(RingState::decode(&b).is_err(), "bit {i}");
        }
    }

    #[test]
    fn ring_state_saved_file_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RingState::load(dir.path()).unwrap().is_none());
        sample().save(dir.path()).unwrap();
        assert_eq!(RingState::load(dir.path()).unwrap(), Some(sample()));
    }

    #[test]
    fn ring_state_next_generation_grows_even_when_the_clock_does_not() {
        assert_eq!(next_generation(None, 100), 100);
        assert_eq!(next_generation(Some(100), 100), 101);
        assert_eq!(next_generation(Some(500), 100), 501);
        assert_eq!(next_generation(Some(5), 100), 100);
    }
}
