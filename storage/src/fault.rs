//! The I/O seam: every fsync and durable write in the engine goes through these helpers,
//! so tests can make them fail (LevelDB's fault-injection `Env`, reduced to what the
//! engine's poisoning and disk-full rules need), and so does every look at the free space
//! of the data directory's file system.
//!
//! Production code carries a [`Faults`] with nothing armed; the cost is one relaxed
//! atomic load per call.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `free_space_override` when no override is set.
const NO_OVERRIDE: u64 = u64::MAX;

/// Switches that make the engine's I/O fail on purpose.
#[derive(Debug)]
pub struct Faults {
    fail_fsync: AtomicBool,
    fail_write: AtomicBool,
    disk_full: AtomicBool,
    free_space_override: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail_fsync: AtomicBool::new(false),
            fail_write: AtomicBool::new(false),
            disk_full: AtomicBool::new(false),
            free_space_override: AtomicU64::new(NO_OVERRIDE),
        }
    }
}

/// True when `e` says the file system has no room left: `ENOSPC`, or `EDQUOT` (a quota,
/// which the node treats the same way).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
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

    /// Makes every later durable write fail with `ENOSPC` (a full disk), or stops that
    /// (space freed). While on, [`Faults::free_bytes`] reports 0 unless an override is set.
    pub fn set_disk_full(&self, on: bool) {
        self.disk_full.store(on, Ordering::SeqCst);
    }

    /// Makes [`Faults::free_bytes`] report `bytes` (`None`: the file system's real figure).
    pub fn set_free_bytes(&self, bytes: Option<u64>) {
        self.free_space_override
            .store(bytes.unwrap_or(NO_OVERRIDE), Ordering::SeqCst);
    }

    /// Returns the injected write error, if armed. Call before a write to a durable file.
    #[inline]
    pub fn check_write(&self) -> io::Result<()> {
        if self.fail_write.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected write failure"));
        }
        if self.disk_full.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// Bytes available to this (unprivileged) process on the file system holding `path`
    /// (`statvfs`'s `f_bavail * f_frsize`), or the injected figure.
    pub fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        let injected = self.free_space_override.load(Ordering::Relaxed);
        if injected != NO_OVERRIDE {
            return Ok(injected);
        }
        if self.disk_full.load(Ordering::Relaxed) {
            return Ok(0);
        }
        statvfs_free(path)
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

// `f_bavail` and `f_frsize` are 64-bit on some targets and narrower on others.
#[allow(clippy::useless_conversion)]
fn statvfs_free(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `statvfs` only writes into the zeroed struct we own and reads the
    // NUL-terminated path, which outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_disk_full_fails_writes_with_enospc_until_cleared() {
        let f = Faults::default();
        assert!(f.check_write().is_ok());
        f.set_disk_full(true);
        let e = f.check_write().unwrap_err();
        assert!(is_disk_full(&e), "{e}");
        assert_eq!(f.free_bytes(Path::new("/")).unwrap(), 0);
        f.set_disk_full(false);
        assert!(f.check_write().is_ok());
    }

    #[test]
    fn faults_free_bytes_reads_the_file_system_or_the_override() {
        let f = Faults::default();
        let dir = tempfile::tempdir().unwrap();
        assert!(f.free_bytes(dir.path()).unwrap() > 0);
        f.set_free_bytes(Some(123));
        assert_eq!(f.free_bytes(dir.path()).unwrap(), 123);
        f.set_free_bytes(None);
        assert_ne!(f.free_bytes(dir.path()).unwrap(), 123);
    }
}
