//! The rejects file: one JSON object per line for every item not loaded, in item order:
//!
//! ```text
//! {"row":2,"line":3,"kind":"malformed","reason":"expected 3 fields as in the header, found 2","record":"x,2"}
//! ```
//!
//! `row` is the item number, `line` the input line it starts on, `kind` one of
//! `malformed`, `oversize`, `refused`, `failed`, `reason` a sentence, `record` the input
//! record as read (a CSV line, a JSON line) or, for a row whose write failed, its key and
//! columns as a JSON object `{"key": ..., "columns": {...}}` (bytes shown as lossy UTF-8).
//!
//! A new load truncates the file; a resumed one cuts it back to the length its
//! checkpoint recorded (the rejects of the items below the watermark) and appends.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::load::item::Reject;

/// One line of the rejects file.
#[derive(Serialize)]
struct RejectLine<'a> {
    row: u64,
    line: u64,
    kind: &'static str,
    reason: &'a str,
    record: &'a str,
}

/// The open rejects file.
#[derive(Debug)]
pub struct RejectsFile {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
}

/// The rejects file cannot be written, or is shorter than the checkpoint says.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RejectsError {
    /// An I/O error.
    #[error("rejects file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// On resume, the file holds fewer bytes than the checkpoint recorded.
    #[error("rejects file {path} has {found} bytes, but the checkpoint recorded {expected}: it was changed since the load stopped")]
    Shorter {
        /// The file.
        path: PathBuf,
        /// Bytes the checkpoint recorded.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
}

impl RejectsFile {
    /// Opens `path` for a load: truncated to `keep` bytes (0 for a new load).
    pub fn open(path: &Path, keep: u64) -> Result<RejectsFile, RejectsError> {
        let io = |source| RejectsError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let found = file.metadata().map_err(io)?.len();
        if found < keep {
            return Err(RejectsError::Shorter {
                path: path.to_owned(),
                expected: keep,
                found,
            });
        }
        file.set_len(keep).map_err(io)?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(keep)).map_err(io)?;
        Ok(RejectsFile {
            path: path.to_owned(),
            out: BufWriter::new(file),
            len: keep,
        })
    }

    /// Appends one reject.
    pub fn write(&mut self, r: &Reject) -> Result<(), RejectsError> {
        let mut line = serde_json::to_vec(&RejectLine {
            row: r.number,
            line: r.line,
            kind: r.kind.name(),
            reason: &r.reason,
            record: &r.record,
        })
        .map_err(|e| self.io(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.out.write_all(&line).map_err(|e| self.io(e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Bytes written (what a checkpoint records after [`RejectsFile::sync`]).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is in the file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and fsyncs the file (before a checkpoint counts its length).
    pub fn sync(&mut self) -> Result<(), RejectsError> {
        self.out.flush().map_err(|e| self.io(e))?;
        self.out.get_ref().sync_data().map_err(|e| self.io(e))
    }

    fn io(&self, source: std::io::Error) -> RejectsError {
        RejectsError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::item::RejectKind;

    #[test]
    fn rejects_file_writes_json_lines_and_resumes_at_a_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let r = |n| Reject {
            number: n,
            line: n + 1,
            kind: RejectKind::Malformed,
            reason: "expected 3 fields as in the header, found 2".into(),
            record: "x,2".into(),
        };
        let mut f = RejectsFile::open(&path, 0).unwrap();
        f.write(&r(2)).unwrap();
        let first = f.len();
        f.write(&r(5)).unwrap();
        f.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"row":2,"line":3,"kind":"malformed","reason":"expected 3 fields as in the header, found 2","record":"x,2"}"#
        );
        assert!(include_str!("rejects.rs").contains(text.lines().next().unwrap()));
        drop(f);
        let mut f = RejectsFile::open(&path, first).unwrap();
        f.write(&r(6)).unwrap();
        f.sync().unwrap();
        let rows: Vec<u64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["row"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(rows, [2, 6]);
        assert!(matches!(
            RejectsFile::open(&path, 10_000),
            Err(RejectsError::Shorter { .. })
        ));
    }
}
