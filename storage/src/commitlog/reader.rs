//! Commit-log replay: reads every segment of a directory in id order, verifies each
//! record, hands `(seqno, payload)` to the caller, and repairs a torn tail.
//!
//! The torn-tail rule (spec: `storage/doc/commitlog_format.md`, "Torn tails"): only the
//! LAST segment may end badly, and only in one of these ways, each of which a crash in the
//! middle of an append can produce:
//! - fewer bytes than a record header remain;
//! - the record's header or body extends past the end of the file;
//! - the record fails its crc and every byte after it is zero (pages the kernel had not
//!   written back, or a zero-filled extension of the file).
//!
//! Such a tail is cut off (file shortened and fsynced; a segment whose own header is torn
//! is removed) and reported. Anything else that fails to decode, in any segment, is a
//! typed error naming the file and offset: replay never skips a record silently.
//!
//! Each segment is read whole with one `read` (segments are bounded by `segment_size`,
//! 64 MiB by default), so replay costs one sequential read and a crc pass per segment.
//! Single-threaded; it runs before [`super::CommitLog::open`].

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::format::{
    decode_record_header, decode_segment_header, parse_segment_file_name, record_crc, HeaderError,
    MAX_RECORD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::types::SeqNo;

/// What [`replay`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Number of segment files read.
    pub segments: usize,
    /// Number of records handed to `apply`.
    pub records: u64,
    /// Seqno of the last record replayed, if any.
    pub last_seqno: Option<SeqNo>,
    /// The segment whose torn tail was cut off, and the offset it was cut at (0 means the
    /// segment's own header was torn and the file was removed).
    pub truncated_tail: Option<(PathBuf, u64)>,
    /// The id to pass to [`super::CommitLog::open`]: one past the highest segment id seen
    /// (1 for an empty or missing directory).
    pub next_segment_id: u64,
}

/// Replays every segment in `dir` in order, calling `apply(seqno, payload)` per record.
///
/// A torn tail of the last segment is truncated (file shortened, fsynced) and reported
/// with a tracing warning; a corrupt record anywhere else (a bad crc followed by more
/// non-zero data, or any damage in a non-last segment) is [`Error::ChecksumMismatch`] or
/// [`Error::Corruption`] naming file and offset. An error returned by `apply` aborts
/// replay and is returned as is. A missing `dir` replays nothing.
pub fn replay(
    dir: &Path,
    faults: &Faults,
    mut apply: impl FnMut(SeqNo, &[u8]) -> Result<()>,
) -> Result<ReplayReport> {
    let segments = list_segments(dir)?;
    let mut report = ReplayReport {
        next_segment_id: segments.last().map_or(1, |(id, _)| id.saturating_add(1)),
        ..ReplayReport::default()
    };
    let count = segments.len();
    for (i, (id, path)) in segments.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let buf = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        report.segments += 1;
        let mut records = 0u64;
        let end = walk_segment(&path, &buf, id, is_last, &mut report.last_seqno, |s, p| {
            records += 1;
            apply(s, p)
        })?;
        report.records += records;
        if let SegmentEnd::Torn { offset } = end {
            cut_torn_tail(dir, &path, offset, buf.len(), faults)?;
            report.truncated_tail = Some((path, offset));
        }
    }
    Ok(report)
}

/// Lists the segment files of `dir`, sorted by id. Other files are ignored; a missing
/// directory has no segments.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(parse_segment_file_name) {
            out.push((id, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(id, _)| *id);
    Ok(out)
}

/// How a segment's bytes ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentEnd {
    /// Every byte belonged to a valid record.
    Clean,
    /// A torn tail starts at `offset` (0: the segment header itself is torn).
    Torn {
        /// Where the valid prefix ends.
        offset: u64,
    },
}

/// Walks the records of one segment held in `buf`, calling `f` for each valid one in
/// order. `prev_seqno` carries the last seqno across segments: seqnos must increase.
/// With `is_last == false` a torn tail is an error, since only the newest segment can
/// have been cut by a crash (a segment is fsynced before the next one is created).
pub(crate) fn walk_segment(
    path: &Path,
    buf: &[u8],
    expected_id: u64,
    is_last: bool,
    prev_seqno: &mut Option<SeqNo>,
    mut f: impl FnMut(SeqNo, &[u8]) -> Result<()>,
) -> Result<SegmentEnd> {
    match decode_segment_header(buf) {
        Ok(id) if id == expected_id => {}
        Ok(id) => {
            return Err(Error::corruption(
                path,
                0,
                format!("segment header names id {id}, file name says {expected_id}"),
            ))
        }
        Err(HeaderError::Short) if is_last => return Ok(SegmentEnd::Torn { offset: 0 }),
        Err(_) if is_last && all_zero(buf) => return Ok(SegmentEnd::Torn { offset: 0 }),
        Err(HeaderError::Short) => {
            return Err(Error::corruption(
                path,
                0,
                "segment shorter than its header",
            ))
        }
        Err(HeaderError::BadMagic) => {
            return Err(Error::corruption(path, 0, "bad commit-log segment magic"))
        }
        Err(HeaderError::Version(version)) => {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            })
        }
        Err(HeaderError::Checksum { expected, got }) => {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset: 0,
                expected,
                got,
            })
        }
    }

    let mut pos = SEGMENT_HEADER_LEN;
    loop {
        let remaining = buf.len().saturating_sub(pos);
        if remaining == 0 {
            return Ok(SegmentEnd::Clean);
        }
        let offset = pos as u64;
        let torn = |reason: &str| {
            if is_last {
                Ok(SegmentEnd::Torn { offset })
            } else {
                Err(Error::corruption(path, offset, reason))
            }
        };
        let Some(header) = decode_record_header(buf, pos) else {
            return torn("partial record header in a non-last segment");
        };
        let body_start = pos + RECORD_HEADER_LEN;
        let body_len = header.length as usize;
        let body_end = body_start.checked_add(body_len);
        let Some(body) = body_end.and_then(|end| buf.get(body_start..end)) else {
            // The record claims more bytes than the file holds.
            return torn("record extends past the end of a non-last segment");
        };
        if header.length > MAX_RECORD_LEN {
            return Err(Error::corruption(
                path,
                offset,
                format!(
                    "record length {} exceeds the cap {MAX_RECORD_LEN}",
                    header.length
                ),
            ));
        }
        let got = record_crc(header.length, header.seqno, body);
        if got != header.crc {
            let rest = buf.get(body_start + body_len..).unwrap_or_default();
            if is_last && all_zero(rest) {
                return Ok(SegmentEnd::Torn { offset });
            }
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                offset,
                expected: header.crc,
                got,
            });
        }
        if let Some(prev) = *prev_seqno {
            if header.seqno <= prev {
                return Err(Error::corruption(
                    path,
                    offset,
                    format!("seqno {} does not follow {prev}", header.seqno),
                ));
            }
        }
        *prev_seqno = Some(header.seqno);
        f(header.seqno, body)?;
        pos = body_start + body_len;
    }
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Cuts the torn tail at `offset`: shortens the file and fsyncs it, or removes the file
/// and fsyncs the directory when even the segment header is torn.
fn cut_torn_tail(dir: &Path, path: &Path, offset: u64, len: usize, faults: &Faults) -> Result<()> {
    tracing::warn!(
        path = %path.display(),
        offset,
        dropped_bytes = (len as u64).saturating_sub(offset),
        "commit log: truncating torn tail of the last segment"
    );
    faults.check_write().map_err(|e| Error::io(path, e))?;
    if offset == 0 {
        fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        return faults.sync_dir(dir).map_err(|e| Error::io(dir, e));
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(offset).map_err(|e| Error::io(path, e))?;
    faults.sync_all(&file).map_err(|e| Error::io(path, e))
}
