//! One segment file of the commit log, as the writer tracks it, and its creation.
//! Used only under the writer lock of [`super::writer`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{encode_segment_header, segment_file_name, SEGMENT_HEADER_LEN};
use crate::error::{Error, Result};
use crate::fault::{is_disk_full, Faults};
use crate::types::SeqNo;

/// A segment file: closed, or the active one appends go to.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// Segment id (from the file name).
    pub(crate) id: u64,
    /// The file.
    pub(crate) path: PathBuf,
    /// Bytes in the file, header included.
    pub(crate) size: u64,
    /// Seqno of the last record; `None` while the segment holds no record.
    pub(crate) max_seqno: Option<SeqNo>,
}

/// Creates segment `id` in `dir`: writes and fsyncs its header, then fsyncs the directory
/// so the file's existence is durable. When the file system is full (creating the file
/// or writing its header fails with `ENOSPC`), removes what it created and returns
/// [`Error::DiskFull`]: nothing changed, the caller may try again later. Any other
/// failure is an [`Error::Io`].
pub(crate) fn create_segment(
    dir: &Path,
    id: u64,
    faults: &Faults,
    fsyncs: &AtomicU64,
) -> Result<(Segment, File)> {
    let path = dir.join(segment_file_name(id));
    let io = |e| Error::io(&path, e);
    let header = encode_segment_header(id);
    let no_room = |e: std::io::Error| -> Error {
        if !is_disk_full(&e) {
            return Error::io(&path, e);
        }
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Error::io(&path, e);
            }
        }
        Error::DiskFull {
            path: path.clone(),
            needed: header.len() as u64,
            free: faults.free_bytes(dir).unwrap_or(0),
            reserve: 0,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(no_room)?;
    faults
        .check_write()
        .and_then(|()| file.write_all(&header))
        .map_err(no_room)?;
    fsyncs.fetch_add(1, Ordering::Relaxed);
    faults.sync_data(&file).map_err(io)?;
    faults.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    let segment = Segment {
        id,
        path,
        size: SEGMENT_HEADER_LEN as u64,
        max_seqno: None,
    };
    Ok((segment, file))
}
