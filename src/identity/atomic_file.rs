//! Small files replaced atomically: write a temporary file, fsync it, rename it over the
//! real one, fsync the directory. A crash leaves either the old or the new content (a
//! stray `*.tmp` is overwritten next time); readers check the content's own checksum.
//!
//! Blocking I/O; callers serialise writers of one file (the owner's mutex or thread).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Replaces `dir/name` with `bytes` durably.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()
}

/// The content of `dir/name`, or `None` when the file does not exist.
pub fn read_if_exists(dir: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    match fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
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
        assert!(!dir.path().join("f.tmp").exists());
    }
}
