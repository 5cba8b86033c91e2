//! The dot clock: where this node's dot counters come from.
//!
//! Every dot the node mints gets a counter of at least [`DotClock::next`]: strictly above
//! every value handed out before (in this process and, through the reservation below, in
//! earlier ones) and at least the clock in microseconds. So an actor's dot counters
//! increase across all the cells it writes, which makes a causal row tombstone exact
//! ([`crate::versioning::row_tombstone`]).
//!
//! # Reservation file (`<data dir>/dot_clock`, format version 1)
//! ```text
//! dot_clock = magic:"SIBYLDOT" version:u8 (0x01) reserved:u64le crc:u32le   ; 21 bytes
//! crc       = crc32 (IEEE) of the 17 bytes before it
//! ```
//! `reserved` is a value no earlier process handed out: before the clock passes it, a new
//! reservation `value + DOT_RESERVATION` is written (atomically: tmp, fsync, rename, fsync
//! dir), so one fsync covers a minute of minting at up to a million dots a second, and a
//! restart starts above everything minted before even if the wall clock stepped back. A
//! missing file is fine (a data directory from before the dot clock: its counters are
//! per-cell counts, far below any clock value). A corrupt file is an error the node answers
//! with a new actor epoch: a fresh actor has no dots to stay above.
//!
//! Threading: `Send + Sync`; `next` takes a mutex (held for the rare reservation write).
//! Example: reserved = 1: `53 49 42 59 4c 44 4f 54 01 01 00 00 00 00 00 00 00 <crc>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::versioning::Clock;
use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

/// Name of the reservation file in the data directory.
pub const DOT_CLOCK_FILE: &str = "dot_clock";
const MAGIC: [u8; 8] = *b"SIBYLDOT";
const VERSION: u8 = 1;
const FILE_LEN: usize = 8 + 1 + 8 + 4;
/// How far ahead of the last value a reservation reaches: 60 s of clock microseconds.
pub const DOT_RESERVATION: u64 = 60_000_000;

/// Failure to read or write the reservation file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DotClockError {
    /// The file exists but is not a valid reservation.
    #[error("dot clock file {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// Reading or writing it failed.
    #[error("dot clock file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
struct State {
    last: u64,
    reserved: u64,
}

/// See the module documentation.
pub struct DotClock {
    /// `None`: not persisted (tests and tools on throwaway directories).
    dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for DotClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotClock")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn encode(reserved: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(FILE_LEN);
    b.extend_from_slice(&MAGIC);
    b.push(VERSION);
    b.extend_from_slice(&reserved.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode(bytes: &[u8]) -> Result<u64, &'static str> {
    if bytes.len() != FILE_LEN {
        return Err("wrong length");
    }
    let (body, crc) = bytes.split_at(FILE_LEN - 4);
    let crc: [u8; 4] = crc.try_into().map_err(|_| "wrong length")?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch");
    }
    if body.get(..8) != Some(&MAGIC[..]) {
        return Err("not a dot clock file");
    }
    if body.get(8) != Some(&VERSION) {
        return Err("unknown version");
    }
    let v: [u8; 8] = body
        .get(9..17)
        .and_then(|b| b.try_into().ok())
        .ok_or("wrong length")?;
    Ok(u64::from_le_bytes(v))
}

fn now_micros(clock: &dyn Clock) -> u64 {
    u64::try_from(clock.now_micros()).unwrap_or(0)
}

impl DotClock {
    /// A clock that is not persisted: monotonic within the process only.
    pub fn in_memory(clock: Arc<dyn Clock>) -> DotClock {
        DotClock {
            dir: None,
            clock,
            state: Mutex::new(State {
                last: 0,
                reserved: u64::MAX,
            }),
        }
    }

    /// Opens the reservation in `dir` and writes a new one above it. Blocking I/O.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<DotClock, DotClockError> {
        let path = dir.join(DOT_CLOCK_FILE);
        let io = |source| DotClockError::Io {
            path: path.clone(),
            source,
        };
        let last = match read_if_exists(dir, DOT_CLOCK_FILE).map_err(io)? {
            Some(bytes) => decode(&bytes).map_err(|reason| DotClockError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            None => 0,
        };
        Self::start(dir, clock, last)
    }

    /// Replaces the reservation in `dir` with one from the clock alone (after a corrupt
    /// file, with a new actor epoch). Blocking I/O.
    pub fn reset(dir: &Path, clock: Arc<dyn Clock>) -> Result<DotClock, DotClockError> {
        Self::start(dir, clock, 0)
    }

    fn start(dir: &Path, clock: Arc<dyn Clock>, last: u64) -> Result<DotClock, DotClockError> {
        let last = last.max(now_micros(clock.as_ref()));
        let reserved = last.saturating_add(DOT_RESERVATION);
        write_atomically(dir, DOT_CLOCK_FILE, &encode(reserved)).map_err(|source| {
            DotClockError::Io {
                path: dir.join(DOT_CLOCK_FILE),
                source,
            }
        })?;
        Ok(DotClock {
            dir: Some(dir.to_path_buf()),
            clock,
            state: Mutex::new(State { last, reserved }),
        })
    }

    /// The next floor: above every value handed out before, at least the clock.
    pub fn next(&self) -> Result<u64, DotClockError> {
        self.next_above(0)
    }

    /// [`DotClock::next`], and also above `seen`: the highest counter of this node's
    /// actor that the dot about to be minted must exceed (what the write's context or the
    /// stored cell names). The clock moves up to the value handed out, so every later dot
    /// stays above it too; otherwise a dot minted above the clock would be followed by
    /// lower ones in other cells, and a row tombstone that saw it would delete them.
    pub fn next_above(&self, seen: u64) -> Result<u64, DotClockError> {
        let now = now_micros(self.clock.as_ref());
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let next = now
            .max(s.last.saturating_add(1))
            .max(seen.saturating_add(1));
        if next >= s.reserved {
            if let Some(dir) = &self.dir {
                let reserved = next.saturating_add(DOT_RESERVATION);
                write_atomically(dir, DOT_CLOCK_FILE, &encode(reserved)).map_err(|source| {
                    DotClockError::Io {
                        path: dir.join(DOT_CLOCK_FILE),
                        source,
                    }
                })?;
                s.reserved = reserved;
            }
        }
        s.last = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::ManualClock;

    #[test]
    fn dot_clock_increases_and_restarts_above_what_it_handed_out_even_if_time_steps_back() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at_secs(1_000));
        let d = DotClock::open(dir.path(), clock.clone()).unwrap();
        let a = d.next().unwrap();
        let b = d.next().unwrap();
        assert!(a >= 1_000_000_000 && b > a);
        // Mint past the reservation: a new one is written.
        clock.advance_secs(120);
        let c = d.next().unwrap();
        assert!(c >= 1_120_000_000);
        drop(d);
        // The wall clock steps back an hour across the restart: still above `c`.
        let back = Arc::new(ManualClock::at_secs(1_000 - 3_600));
        let d = DotClock::open(dir.path(), back).unwrap();
        assert!(d.next().unwrap() > c);
    }

    #[test]
    fn dot_clock_file_matches_spec_and_refuses_damage() {
        let b = encode(1);
        assert_eq!(&b[..17], b"SIBYLDOT\x01\x01\0\0\0\0\0\0\0");
        assert_eq!(decode(&b), Ok(1));
        for i in 0..b.len() * 8 {
            let mut x = b.clone();
            x[i / 8] ^= 1 << (i % 8);
            assert!(decode(&x).is_err(), "bit {i}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DOT_CLOCK_FILE), b"junk").unwrap();
        let clock = Arc::new(ManualClock::at_secs(1));
        assert!(matches!(
            DotClock::open(dir.path(), clock.clone()),
            Err(DotClockError::Corrupt { .. })
        ));
        assert!(DotClock::reset(dir.path(), clock.clone()).is_ok());
        assert!(DotClock::open(dir.path(), clock).is_ok());
    }
}
