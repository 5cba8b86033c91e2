//! [`SsTableBuilder`]: streams a sorted run of entries into a new table file.
//!
//! Data blocks are built in memory and written as they fill; the index entry of a block
//! waits for the next key so it can hold a short separator (LevelDB's
//! `FindShortestSeparator`) instead of the block's whole last key. `finish` writes the
//! bloom, index and properties blocks and the footer, then fsyncs the file; the caller
//! fsyncs the directory. A builder dropped or abandoned before `finish` succeeds removes
//! its partial file. Every write is preceded by `faults.check_write()` and the fsync goes
//! through [`Faults::sync_all`], so tests can inject failures. Single-threaded.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block_builder::{common_prefix, BlockBuilder};
use super::format::{self, BlockHandle, Footer, Properties};
use super::{bloom, SsTableInfo, SsTableOptions};
use crate::error::{Error, Result};
use crate::fault::{is_disk_full, Faults};
use crate::types::{EntryRef, SeqNo};

/// Largest key plus value accepted in one entry: restart offsets are u32, so a block must
/// stay well below 4 GiB.
pub const MAX_ENTRY_LEN: usize = 1 << 30;

/// Buffered file output that counts bytes and honours the fault seam.
#[derive(Debug)]
struct TableWriter {
    path: PathBuf,
    out: BufWriter<File>,
    faults: Arc<Faults>,
    offset: u64,
}

impl TableWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.faults
            .check_write()
            .and_then(|()| self.out.write_all(bytes))
            .map_err(|e| self.write_error(e, bytes.len()))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// A failed write: [`Error::DiskFull`] when the file system is full (the builder is
    /// then abandoned and its file removed, so nothing is lost and the work may be redone
    /// later), [`Error::Io`] otherwise.
    fn write_error(&self, e: std::io::Error, len: usize) -> Error {
        if !is_disk_full(&e) {
            return Error::io(&self.path, e);
        }
        let dir = self.path.parent().unwrap_or(&self.path);
        Error::DiskFull {
            path: self.path.clone(),
            needed: self.offset.saturating_add(len as u64),
            free: self.faults.free_bytes(dir).unwrap_or(0),
            reserve: 0,
        }
    }

    /// Writes block contents and their crc trailer.
    fn write_block(&mut self, contents: &[u8]) -> Result<BlockHandle> {
        let handle = BlockHandle {
            offset: self.offset,
            size: contents.len() as u64,
        };
        self.write(contents)?;
        self.write(&crc32fast::hash(contents).to_le_bytes())?;
        Ok(handle)
    }
}

/// Writes one table file. Keys must be added in strictly increasing order.
#[derive(Debug)]
pub struct SsTableBuilder {
    w: TableWriter,
    opts: SsTableOptions,
    block: BlockBuilder,
    /// Encoded index entries so far.
    index: Vec<u8>,
    index_count: u32,
    /// The last written data block, whose index entry waits for the next key.
    pending: Option<BlockHandle>,
    last_key: Vec<u8>,
    hashes: Vec<u64>,
    props: Properties,
    finished: bool,
}

impl SsTableBuilder {
    /// Creates (or truncates) the file at `path` and writes its header.
    pub fn create(path: &Path, opts: SsTableOptions, faults: Arc<Faults>) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let mut b = SsTableBuilder {
            w: TableWriter {
                path: path.to_path_buf(),
                out: BufWriter::with_capacity(64 * 1024, file),
                faults,
                offset: 0,
            },
            opts,
            block: BlockBuilder::new(opts.restart_interval),
            index: Vec::new(),
            index_count: 0,
            pending: None,
            last_key: Vec::new(),
            hashes: Vec::new(),
            props: Properties::default(),
            finished: false,
        };
        let mut header = Vec::with_capacity(format::HEADER_LEN);
        format::encode_header(&mut header);
        b.w.write(&header)?;
        Ok(b)
    }

    /// Appends an entry. `key` must sort strictly after the previous key, else
    /// [`Error::InvalidArgument`]; key plus value must not exceed [`MAX_ENTRY_LEN`].
    pub fn add(&mut self, key: &[u8], seqno: SeqNo, entry: EntryRef<'_>) -> Result<()> {
        let first = self.props.entries == 0;
        if !first && key <= self.last_key.as_slice() {
            return Err(Error::InvalidArgument(format!(
                "sstable keys out of order: {:?} after {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(&self.last_key)
            )));
        }
        let value_len = match entry {
            EntryRef::Value(v) => v.len(),
            EntryRef::Tombstone => 0,
        };
        if key.len().saturating_add(value_len) > MAX_ENTRY_LEN {
            return Err(Error::InvalidArgument(format!(
                "sstable entry of {} bytes exceeds the limit of {MAX_ENTRY_LEN}",
                key.len().saturating_add(value_len)
            )));
        }
        if let Some(handle) = self.pending.take() {
            let sep_len = separator_len(&self.last_key, key);
            let sep = self.last_key.get(..sep_len).unwrap_or_default();
            push_index_entry(&mut self.index, sep, handle, sep_len != self.last_key.len());
            self.index_count += 1;
        }
        self.block.add(key, seqno, entry);
        self.hashes.push(bloom::key_hash(key));
        let p = &mut self.props;
        if first {
            p.smallest = key.to_vec();
            p.min_seqno = seqno;
            p.max_seqno = seqno;
        }
        p.entries += 1;
        p.tombstones += u64::from(entry.is_tombstone());
        p.min_seqno = p.min_seqno.min(seqno);
        p.max_seqno = p.max_seqno.max(seqno);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        if self.block.size_estimate() >= self.opts.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let handle = self.w.write_block(self.block.finish())?;
        self.block.reset();
        self.pending = Some(handle);
        self.props.data_blocks += 1;
        Ok(())
    }

    /// Bytes the file would have if finished now (approximate: the filter and index
    /// are estimated).
    pub fn estimated_size(&self) -> u64 {
        let bloom = (self.hashes.len() * self.opts.bloom_bits_per_key).div_ceil(8);
        self.w.offset
            + (self.block.size_estimate() + self.index.len() + bloom + format::FOOTER_LEN) as u64
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.props.entries
    }

    /// Writes the last data block, the bloom, index and properties blocks and the footer,
    /// then fsyncs the file. The caller fsyncs the directory. An empty table (no entries)
    /// is valid.
    pub fn finish(mut self) -> Result<SsTableInfo> {
        self.flush_block()?;
        if let Some(handle) = self.pending.take() {
            push_index_entry(&mut self.index, &self.last_key, handle, false);
            self.index_count += 1;
        }
        self.props.largest = self.last_key.clone();
        let bloom = bloom::build(&self.hashes, self.opts.bloom_bits_per_key);
        let bloom = self.w.write_block(&bloom)?;
        let mut index = std::mem::take(&mut self.index);
        sibyl_coding::put_u32_le(&mut index, self.index_count);
        let index = self.w.write_block(&index)?;
        let mut props = Vec::new();
        self.props.encode(&mut props);
        let properties = self.w.write_block(&props)?;
        let mut footer = Vec::with_capacity(format::FOOTER_LEN);
        Footer {
            bloom,
            index,
            properties,
        }
        .encode(&mut footer);
        self.w.write(&footer)?;
        self.w.out.flush().map_err(|e| self.w.write_error(e, 0))?;
        self.w
            .faults
            .sync_all(self.w.out.get_ref())
            .map_err(|e| Error::io(&self.w.path, e))?;
        self.finished = true;
        let p = std::mem::take(&mut self.props);
        Ok(SsTableInfo {
            file_size: self.w.offset,
            entries: p.entries,
            tombstones: p.tombstones,
            smallest: p.smallest,
            largest: p.largest,
            min_seqno: p.min_seqno,
            max_seqno: p.max_seqno,
        })
    }

    /// Gives up on the table and removes the partial file.
    pub fn abandon(self) {
        // Drop removes the file.
    }
}

impl Drop for SsTableBuilder {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = std::fs::remove_file(&self.w.path) {
                tracing::warn!(path = %self.w.path.display(), error = %e,
                    "could not remove abandoned sstable");
            }
        }
    }
}

/// The length of the shortest prefix-plus-one-byte `s` of `a` with `a <= s < b`, as
/// LevelDB's `FindShortestSeparator`: if `a` and `b` first differ at `n` and
/// `a[n] + 1 < b[n]`, the separator is `a[..n]` followed by `a[n] + 1` (length `n + 1`);
/// otherwise it is `a` itself. Returned as a length; the caller bumps the last byte when
/// the length is shorter than `a` (see [`push_index_entry`]).
fn separator_len(a: &[u8], b: &[u8]) -> usize {
    let n = common_prefix(a, b);
    match (a.get(n), b.get(n)) {
        (Some(&x), Some(&y)) if x < 0xff && x + 1 < y && n + 1 < a.len() => n + 1,
        _ => a.len(),
    }
}

/// Appends an index entry: the separator key (`key`, with its last byte incremented when
/// `bump`), then the block handle as varints.
fn push_index_entry(index: &mut Vec<u8>, key: &[u8], handle: BlockHandle, bump: bool) {
    sibyl_coding::put_varint(index, key.len() as u64);
    let start = index.len();
    index.extend_from_slice(key);
    if bump {
        if let Some(last) = index.get_mut(start..).and_then(|k| k.last_mut()) {
            *last += 1;
        }
    }
    sibyl_coding::put_varint(index, handle.offset);
    sibyl_coding::put_varint(index, handle.size);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sep(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let n = separator_len(a, b);
        push_index_entry(
            &mut v,
            a.get(..n).unwrap_or_default(),
            BlockHandle::default(),
            n != a.len(),
        );
        let mut r = sibyl_coding::ByteReader::new(&v);
        r.varint_prefixed().unwrap_or_default().to_vec()
    }

    #[test]
    fn separator_shortens_between_distant_keys() {
        assert_eq!(sep(b"abcdef", b"abzzz"), b"abd");
        let s = sep(b"abcdef", b"abzzz");
        assert!(b"abcdef".as_slice() <= s.as_slice() && s.as_slice() < b"abzzz".as_slice());
    }

    #[test]
    fn separator_keeps_key_when_no_shorter_one_exists() {
        assert_eq!(sep(b"abc", b"abd"), b"abc");
        assert_eq!(sep(b"ab", b"abc"), b"ab");
        assert_eq!(sep(b"a\xff\x01", b"b"), b"a\xff\x01");
        assert_eq!(sep(b"ab", b"az"), b"ab");
    }
}
