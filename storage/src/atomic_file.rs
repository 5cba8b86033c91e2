//! Small files replaced atomically — the engine's manifest and the node's own files (ring
//! state, schema stamps, actor id) all go through here: write `NAME.tmp`, fsync it, rename
//! it over `NAME`, fsync the directory. A crash leaves the old content or the new one,
//! never a mix; a stray `NAME.tmp` is overwritten next time. Readers check the content's
//! own checksum (every format that uses this has one).
//!
//! Every fsync goes through [`Faults`], so fault-injection tests reach these paths too.
//! Blocking I/O; callers serialise writers of one file (the owner's mutex or thread).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fault::Faults;

/// A failed atomic replace: the step and path that failed (the temporary file, the target
/// of the rename, or the directory whose fsync failed) and the I/O error.
#[derive(Debug, thiserror::Error)]
#[error("replacing a file atomically: {path}: {source}")]
pub struct AtomicWriteError {
    /// Where it failed.
    pub path: PathBuf,
    /// Which step failed.
    pub step: AtomicWriteStep,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// The steps of [`replace`], to tell a failure that changed nothing and may be retried
/// (a full disk while writing the temporary file) from one that must not be (an fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicWriteStep {
    /// Creating or writing the temporary file; the old file is untouched.
    Write,
    /// fsyncing the temporary file; the old file is untouched.
    Sync,
    /// Renaming the temporary file over the old one.
    Rename,
    /// fsyncing the directory after the rename.
    SyncDir,
}

impl AtomicWriteError {
    /// True when the file system was full while the temporary file was written: the old
    /// content stands and nothing was fsynced, so the same replace may be tried again.
    pub fn is_disk_full(&self) -> bool {
        self.step == AtomicWriteStep::Write && crate::fault::is_disk_full(&self.source)
    }
}

/// The temporary file [`replace`] writes before renaming it to `name`.
pub fn tmp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Replaces `dir/name` with `bytes` durably, every fsync through `faults`. On an error
/// before the rename the old file is untouched and the temporary one is removed (best
/// effort); an error of the final directory fsync means the new content may or may not
/// survive a crash, so callers that cannot tell must treat it as fatal.
pub fn replace(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    faults: &Faults,
) -> Result<(), AtomicWriteError> {
    let tmp = dir.join(tmp_name(name));
    let path = dir.join(name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| (AtomicWriteStep::Write, e))?;
        faults
            .check_write()
            .and_then(|()| file.write_all(bytes))
            .map_err(|e| (AtomicWriteStep::Write, e))?;
        faults
            .sync_all(&file)
            .map_err(|e| (AtomicWriteStep::Sync, e))
    })();
    if let Err((step, source)) = written {
        let _ = fs::remove_file(&tmp);
        return Err(AtomicWriteError {
            path: tmp,
            step,
            source,
        });
    }
    if let Err(source) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(AtomicWriteError {
            path,
            step: AtomicWriteStep::Rename,
            source,
        });
    }
    faults.sync_dir(dir).map_err(|source| AtomicWriteError {
        path: dir.to_path_buf(),
        step: AtomicWriteStep::SyncDir,
        source,
    })
}

/// [`replace`] with no faults armed, for callers outside the engine.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    replace(dir, name, bytes, &Faults::default()).map_err(|e| e.source)
}

/// The content of `dir/name`, or `None` when the file does not exist.
pub fn read_if_exists(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_replaces_content_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_if_exists(dir.path(), "f").unwrap(), None);
        write_atomically(dir.path(), "f", b"one").unwrap();
        write_atomically(dir.path(), "f", b"two").unwrap();
        assert_eq!(
            read_if_exists(dir.path(), "f").unwrap(),
            Some(b"two".to_vec())
        );
        assert!(!dir.path().join(tmp_name("f")).exists());
    }

    #[test]
    fn atomic_file_full_disk_keeps_the_old_content_and_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "f", b"old").unwrap();
        let faults = Faults::default();
        faults.set_disk_full(true);
        let err = replace(dir.path(), "f", b"new", &faults).unwrap_err();
        assert_eq!(err.step, AtomicWriteStep::Write);
        assert!(err.is_disk_full());
        assert_eq!(
            read_if_exists(dir.path(), "f").unwrap(),
            Some(b"old".to_vec())
        );
        faults.set_disk_full(false);
        replace(dir.path(), "f", b"new", &faults).unwrap();
        assert_eq!(
            read_if_exists(dir.path(), "f").unwrap(),
            Some(b"new".to_vec())
        );
    }

    #[test]
    fn atomic_file_failed_fsync_keeps_the_old_content_and_removes_tmp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomically(dir.path(), "f", b"old").unwrap();
        let faults = Faults::default();
        faults.set_fail_fsync(true);
        let err = replace(dir.path(), "f", b"new", &faults).unwrap_err();
        assert_eq!(err.path, dir.path().join(tmp_name("f")));
        assert_eq!(err.step, AtomicWriteStep::Sync);
        assert!(!err.is_disk_full());
        assert_eq!(
            read_if_exists(dir.path(), "f").unwrap(),
            Some(b"old".to_vec())
        );
        assert!(!dir.path().join(tmp_name("f")).exists());
    }
}
