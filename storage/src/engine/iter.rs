//! Ordered scans: a merging cursor over a table's memtables and SSTables, in either
//! direction, that combines the versions of each key with the table's merge policy.
//!
//! Sources are consulted through one small interface (position, key, seqno, entry,
//! advance). Memtables are read in chunks copied into a reusable buffer (a B-tree
//! iterator cannot outlive the read guard of its map), SSTables through their own cursors over
//! the mmap. The cursor reuses its key and value buffers: no allocation per entry on the
//! newest-wins path.

use std::ops::Bound;
use std::sync::Arc;

use super::table::{Table, TableVersion};
use crate::error::Result;
use crate::memtable::Memtable;
use crate::merge::MergePolicy;
use crate::sstable::SsTableIter;
use crate::types::{Entry, EntryRef, SeqNo};

/// Direction of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Ascending keys.
    #[default]
    Forward,
    /// Descending keys.
    Reverse,
}

/// Entries copied out of a memtable per refill.
const MEM_CHUNK: usize = 512;

/// One copied memtable entry: offsets into the chunk buffer.
#[derive(Clone, Copy)]
struct MemItem {
    key: (usize, usize),
    value: Option<(usize, usize)>,
    seqno: SeqNo,
}

/// A chunked cursor over a memtable.
struct MemCursor {
    mem: Arc<Memtable>,
    dir: Direction,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    buf: Vec<u8>,
    items: Vec<MemItem>,
    pos: usize,
    /// The chunk was full, so more may follow.
    more: bool,
}

fn as_slice_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl MemCursor {
    fn new(
        mem: Arc<Memtable>,
        dir: Direction,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    ) -> Self {
        let mut c = MemCursor {
            mem,
            dir,
            lower,
            upper,
            buf: Vec::new(),
            items: Vec::new(),
            pos: 0,
            more: true,
        };
        c.refill();
        c
    }

    fn refill(&mut self) {
        // Continue after the last key of the previous chunk.
        let last = self
            .items
            .last()
            .map(|it| self.buf[it.key.0..it.key.0 + it.key.1].to_vec());
        if let Some(k) = last {
            match self.dir {
                Direction::Forward => self.lower = Bound::Excluded(k),
                Direction::Reverse => self.upper = Bound::Excluded(k),
            }
        }
        self.buf.clear();
        self.items.clear();
        self.pos = 0;
        if !self.more {
            return;
        }
        let (buf, items) = (&mut self.buf, &mut self.items);
        self.mem.visit_range(
            as_slice_bound(&self.lower),
            as_slice_bound(&self.upper),
            self.dir == Direction::Reverse,
            MEM_CHUNK,
            |k, seqno, e| {
                let ks = buf.len();
                buf.extend_from_slice(k);
                let value = match e {
                    EntryRef::Value(v) => {
                        let vs = buf.len();
                        buf.extend_from_slice(v);
                        Some((vs, v.len()))
                    }
                    EntryRef::Tombstone => None,
                };
                items.push(MemItem {
                    key: (ks, k.len()),
                    value,
                    seqno,
                });
            },
        );
        self.more = self.items.len() == MEM_CHUNK;
    }

    fn valid(&self) -> bool {
        self.pos < self.items.len()
    }

    fn item(&self) -> MemItem {
        self.items[self.pos]
    }

    fn key(&self) -> &[u8] {
        let (s, n) = self.item().key;
        &self.buf[s..s + n]
    }

    fn entry(&self) -> EntryRef<'_> {
        match self.item().value {
            Some((s, n)) => EntryRef::Value(&self.buf[s..s + n]),
            None => EntryRef::Tombstone,
        }
    }

    fn advance(&mut self) {
        self.pos += 1;
        if self.pos >= self.items.len() && self.more {
            self.refill();
        }
    }
}

/// A source of a merging cursor.
enum Source {
    Mem(MemCursor),
    Sst(SsTableIter),
}

impl Source {
    fn valid(&self) -> bool {
        match self {
            Source::Mem(m) => m.valid(),
            Source::Sst(s) => s.valid(),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Source::Mem(m) => m.key(),
            Source::Sst(s) => s.key(),
        }
    }

    fn seqno(&self) -> SeqNo {
        match self {
            Source::Mem(m) => m.item().seqno,
            Source::Sst(s) => s.seqno(),
        }
    }

    fn entry(&self) -> EntryRef<'_> {
        match self {
            Source::Mem(m) => m.entry(),
            Source::Sst(s) => s.entry(),
        }
    }

    fn advance(&mut self, dir: Direction) -> Result<()> {
        match (self, dir) {
            (Source::Mem(m), _) => {
                m.advance();
                Ok(())
            }
            (Source::Sst(s), Direction::Forward) => s.next(),
            (Source::Sst(s), Direction::Reverse) => s.prev(),
        }
    }
}

/// Positions an SSTable cursor on the first entry inside the bounds in `dir` order.
fn position_sst(
    it: &mut SsTableIter,
    dir: Direction,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
) -> Result<()> {
    match dir {
        Direction::Forward => match lower {
            Bound::Unbounded => it.seek_to_first(),
            Bound::Included(k) => it.seek(k),
            Bound::Excluded(k) => {
                it.seek(k)?;
                if it.valid() && it.key() == k {
                    it.next()?;
                }
                Ok(())
            }
        },
        Direction::Reverse => match upper {
            Bound::Unbounded => it.seek_to_last(),
            Bound::Included(k) => it.seek_for_prev(k),
            Bound::Excluded(k) => {
                it.seek_for_prev(k)?;
                if it.valid() && it.key() == k {
                    it.prev()?;
                }
                Ok(())
            }
        },
    }
}

/// Merges sources into one ordered stream of merged entries (tombstones included).
pub(crate) struct MergeCursor {
    sources: Vec<Source>,
    dir: Direction,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    policy: Arc<dyn MergePolicy>,
    key: Vec<u8>,
    value: Vec<u8>,
    tombstone: bool,
    seqno: SeqNo,
    scratch: Vec<(SeqNo, Entry)>,
}

impl MergeCursor {
    /// A cursor over the memtables and the given files of `version`.
    pub(crate) fn new(
        version: &TableVersion,
        files: &[Arc<super::table::TableFile>],
        include_memtables: bool,
        policy: Arc<dyn MergePolicy>,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        dir: Direction,
    ) -> Result<Self> {
        let own = |b: Bound<&[u8]>| match b {
            Bound::Included(k) => Bound::Included(k.to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut sources = Vec::with_capacity(1 + version.frozen.len() + files.len());
        if include_memtables {
            for m in std::iter::once(&version.active).chain(version.frozen.iter()) {
                if !m.is_empty() && m.may_contain_range(lower, upper) {
                    sources.push(Source::Mem(MemCursor::new(
                        m.clone(),
                        dir,
                        own(lower),
                        own(upper),
                    )));
                }
            }
        }
        for f in files {
            let mut it = f.sst.iter();
            position_sst(&mut it, dir, lower, upper)?;
            sources.push(Source::Sst(it));
        }
        Ok(MergeCursor {
            sources,
            dir,
            lower: own(lower),
            upper: own(upper),
            policy,
            key: Vec::new(),
            value: Vec::new(),
            tombstone: false,
            seqno: 0,
            scratch: Vec::new(),
        })
    }

    fn in_bounds(&self, key: &[u8]) -> bool {
        match self.dir {
            Direction::Forward => match &self.upper {
                Bound::Unbounded => true,
                Bound::Included(u) => key <= u.as_slice(),
                Bound::Excluded(u) => key < u.as_slice(),
            },
            Direction::Reverse => match &self.lower {
                Bound::Unbounded => true,
                Bound::Included(l) => key >= l.as_slice(),
                Bound::Excluded(l) => key > l.as_slice(),
            },
        }
    }

    /// Advances to the next key; returns false at the end. The merged entry is then
    /// available through `key()`, `seqno()` and `entry()`.
    pub(crate) fn advance(&mut self) -> Result<bool> {
        // The source holding the next key in scan order.
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if !s.valid() {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let (k, bk) = (s.key(), self.sources[b].key());
                    let better = match self.dir {
                        Direction::Forward => k < bk,
                        Direction::Reverse => k > bk,
                    };
                    Some(if better { i } else { b })
                }
            };
        }
        let Some(b) = best else {
            return Ok(false);
        };
        if !self.in_bounds(self.sources[b].key()) {
            return Ok(false);
        }
        self.key.clear();
        self.key.extend_from_slice(self.sources[b].key());
        let key = std::mem::take(&mut self.key);
        let newest_wins = self.policy.newest_wins();
        // Pick the newest version (newest wins) or gather all of them.
        let mut newest: Option<usize> = None;
        self.scratch.clear();
        for (i, s) in self.sources.iter().enumerate() {
            if s.valid() && s.key() == key.as_slice() {
                if newest_wins {
                    if newest.is_none_or(|n| s.seqno() > self.sources[n].seqno()) {
                        newest = Some(i);
                    }
                } else {
                    self.scratch.push((s.seqno(), s.entry().to_owned()));
                }
            }
        }
        if let Some(n) = newest {
            let s = &self.sources[n];
            self.seqno = s.seqno();
            match s.entry() {
                EntryRef::Value(v) => {
                    self.value.clear();
                    self.value.extend_from_slice(v);
                    self.tombstone = false;
                }
                EntryRef::Tombstone => self.tombstone = true,
            }
        } else {
            self.seqno = self.scratch.iter().map(|(s, _)| *s).max().unwrap_or(0);
            let versions = std::mem::take(&mut self.scratch);
            match super::table::fold_versions(self.policy.as_ref(), &key, versions) {
                Some(Entry::Value(v)) => {
                    self.value = v;
                    self.tombstone = false;
                }
                _ => self.tombstone = true,
            }
        }
        for s in self.sources.iter_mut() {
            if s.valid() && s.key() == key.as_slice() {
                s.advance(self.dir)?;
            }
        }
        self.key = key;
        Ok(true)
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn seqno(&self) -> SeqNo {
        self.seqno
    }

    pub(crate) fn entry(&self) -> EntryRef<'_> {
        if self.tombstone {
            EntryRef::Tombstone
        } else {
            EntryRef::Value(&self.value)
        }
    }
}

/// An ordered scan over one table, holding a snapshot of it: writes made after the scan
/// started may or may not be seen (memtables are read live, in chunks); deleted files stay
/// readable through their mmaps.
pub struct ScanIter {
    cursor: MergeCursor,
    table: Arc<Table>,
    filtered: Vec<u8>,
}

impl std::fmt::Debug for ScanIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIter")
            .field("table", &self.table.name)
            .finish_non_exhaustive()
    }
}

impl ScanIter {
    pub(crate) fn new(
        table: Arc<Table>,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        dir: Direction,
    ) -> Result<Self> {
        let v = table.version();
        let files: Vec<_> = v.files.clone();
        let cursor = MergeCursor::new(&v, &files, true, table.merge.clone(), lower, upper, dir)?;
        Ok(ScanIter {
            cursor,
            table,
            filtered: Vec::new(),
        })
    }

    /// The next visible (key, value), borrowing the iterator's buffers; `None` at the end.
    /// Tombstones and values the policy's `read` hides are skipped.
    #[allow(clippy::should_implement_trait)]
    pub fn next_entry(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        loop {
            if !self.cursor.advance()? {
                return Ok(None);
            }
            if self.table.merge.newest_wins() {
                if self.cursor.tombstone {
                    continue;
                }
                return Ok(Some((&self.cursor.key, &self.cursor.value)));
            }
            let entry = self.cursor.entry().to_owned();
            if let Some(v) = self.table.merge.read(&self.cursor.key, entry) {
                self.filtered = v;
                return Ok(Some((&self.cursor.key, &self.filtered)));
            }
        }
    }

    /// The next merged (key, value) as stored, without the policy's `read` filter: every
    /// version of the key folded by the merge policy, deletes encoded in values and
    /// expired values included (what a replica ships to another). Engine tombstones are
    /// skipped. `None` at the end.
    pub fn next_merged(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        loop {
            if !self.cursor.advance()? {
                return Ok(None);
            }
            if !self.cursor.tombstone {
                return Ok(Some((&self.cursor.key, &self.cursor.value)));
            }
        }
    }
}

impl Iterator for ScanIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some((k, v))) => Some(Ok((k.to_vec(), v.to_vec()))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
