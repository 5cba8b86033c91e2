//! The I/O seam: every fsync and durable write in the engine goes through these helpers,
//! so tests can make them fail (LevelDB's fault-injection `Env`, reduced to what the
//! engine's poisoning rule needs).
//!
//! Production code carries a [`Faults`] with nothing armed; the cost is one relaxed
//! atomic load per call.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Switches that make the engine's I/O fail on purpose.
#[derive(Debug, Default)]
pub struct Faults {
    fail_fsync: AtomicBool,
    fail_write: AtomicBool,
}

impl Faults {
    /// Makes every later fsync (file or directory) fail with an I/O error, or stops that.
    pub fn set_fail_fsync(&self, on: bool) {
        self.fail_fsync.store(on, Ordering::SeqCst);
    }

    /// Makes every later durable write fail with an I/O error, or stops that.
    pub fn set_fail_write(&self, on: bool) {
        self.fail_write.store(on, Ordering::SeqCst);
    }

    /// Returns the injected write error, if armed. Call before a write to a durable file.
    #[inline]
    pub fn check_write(&self) -> io::Result<()> {
        if self.fail_write.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected write failure"));
        }
        Ok(())
    }

    /// `fdatasync`s `file` unless a failure is injected.
    pub fn sync_data(&self, file: &File) -> io::Result<()> {
        if self.fail_fsync.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected fsync failure"));
        }
        file.sync_data()
    }

    /// `fsync`s `file` (data and metadata) unless a failure is injected.
    pub fn sync_all(&self, file: &File) -> io::Result<()> {
        if self.fail_fsync.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected fsync failure"));
        }
        file.sync_all()
    }

    /// fsyncs the directory `dir`, so that creations, renames and deletions in it are
    /// durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.fail_fsync.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected fsync failure"));
        }
        File::open(dir)?.sync_all()
    }
}
