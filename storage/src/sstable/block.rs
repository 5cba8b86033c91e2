//! Reading one data block: entry decoding, point lookup and a cursor with forward and
//! backward steps.
//!
//! Nothing here borrows the block: [`BlockCursor`] keeps offsets and a reusable key
//! buffer, and every call is handed the block's contents (the same slice each time, from
//! the table's mmap). That lets [`super::SsTableIter`] own an `Arc<SsTable>` and a cursor
//! side by side without self-reference.
//!
//! Every offset read from the block is bounds-checked; malformed bytes give a
//! [`BlockError`] (offset relative to the block) that the table turns into
//! [`crate::Error::Corruption`]. No allocation per entry: the key buffer and the
//! backward-step cache are reused and only grow.

use super::block_builder::common_prefix;
use super::format::{KIND_TOMBSTONE, KIND_VALUE, RESTART_LEN};
use crate::types::{EntryRef, SeqNo};
use sibyl_coding::ByteReader;

/// A malformed block: where (relative to the block's first byte) and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockError {
    /// Offset within the block contents.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

type BResult<T> = Result<T, BlockError>;

fn err<T>(offset: usize, reason: &'static str) -> BResult<T> {
    Err(BlockError { offset, reason })
}

/// The parsed trailer of a block: where the entries end and how many restarts follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockLayout {
    /// Length of the entry area (the restart array starts here).
    pub entries_end: usize,
    /// Number of restart points (at least 1).
    pub num_restarts: usize,
}

impl BlockLayout {
    /// Parses the restart count at the end of `data` and checks the shape.
    pub fn parse(data: &[u8]) -> BResult<BlockLayout> {
        let Some(count_at) = data.len().checked_sub(RESTART_LEN) else {
            return err(0, "block shorter than its restart count");
        };
        let n = sibyl_coding::u32_le_at(data, count_at).unwrap_or(0) as usize;
        let restarts_len = n.saturating_mul(RESTART_LEN);
        if n == 0 || restarts_len > count_at {
            return err(count_at, "bad restart count");
        }
        let entries_end = count_at - restarts_len;
        if entries_end == 0 {
            return err(0, "block without entries");
        }
        let layout = BlockLayout {
            entries_end,
            num_restarts: n,
        };
        if layout.restart(data, 0)? != 0 {
            return err(entries_end, "first restart point is not 0");
        }
        Ok(layout)
    }

    /// Offset of restart point `i`, checked to lie inside the entry area.
    #[inline]
    pub fn restart(&self, data: &[u8], i: usize) -> BResult<usize> {
        let at = self.entries_end + i * RESTART_LEN;
        match sibyl_coding::u32_le_at(data, at) {
            Some(r) if (r as usize) < self.entries_end => Ok(r as usize),
            _ => err(at, "restart point out of range"),
        }
    }

    /// The whole key stored at restart point `i` (restart entries share no prefix).
    #[inline]
    fn restart_key<'d>(&self, data: &'d [u8], i: usize) -> BResult<&'d [u8]> {
        let at = self.restart(data, i)?;
        let e = RawEntry::decode(data, at, self.entries_end)?;
        if e.shared != 0 {
            return err(at, "restart entry shares a prefix");
        }
        Ok(e.delta(data))
    }

    /// The number of restart points whose key is `<= target`.
    fn restarts_at_or_before(&self, data: &[u8], target: &[u8]) -> BResult<usize> {
        let (mut lo, mut hi) = (0, self.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.restart_key(data, mid)? <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The index of the last restart point whose offset is `< off`, if any.
    fn restart_before(&self, data: &[u8], off: usize) -> BResult<Option<usize>> {
        let (mut lo, mut hi) = (0, self.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.restart(data, mid)? < off {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.checked_sub(1))
    }
}

/// One decoded entry header; offsets are relative to the block.
#[derive(Debug, Clone, Copy)]
struct RawEntry {
    shared: usize,
    delta_start: usize,
    delta_len: usize,
    seqno: SeqNo,
    kind: u8,
    value_start: usize,
    value_len: usize,
    next: usize,
}

impl RawEntry {
    /// Decodes the entry at `pos`, which must end by `end` (the entry area's end).
    #[inline]
    fn decode(data: &[u8], pos: usize, end: usize) -> BResult<RawEntry> {
        let Some(area) = data.get(pos..end) else {
            return err(pos, "entry offset out of range");
        };
        let mut r = ByteReader::new(area);
        let parsed = (|| {
            let shared = usize::try_from(r.varint()?).ok()?;
            let delta_len = r.varint_len()?;
            let value_len = r.varint_len()?;
            let kind = r.u8()?;
            let seqno = r.varint()?;
            let delta_start = pos + r.position();
            r.take(delta_len)?;
            let value_start = pos + r.position();
            r.take(value_len)?;
            Some(RawEntry {
                shared,
                delta_start,
                delta_len,
                seqno,
                kind,
                value_start,
                value_len,
                next: pos + r.position(),
            })
        })();
        match parsed {
            Some(e) if e.kind == KIND_VALUE || (e.kind == KIND_TOMBSTONE && e.value_len == 0) => {
                Ok(e)
            }
            Some(_) => err(pos, "bad entry kind"),
            None => err(pos, "truncated entry"),
        }
    }

    #[inline]
    fn delta<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        // In range: checked by `decode`.
        data.get(self.delta_start..self.delta_start + self.delta_len)
            .unwrap_or_default()
    }
}

/// What a point lookup found: sequence number, kind and the value's place in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The entry's sequence number.
    pub seqno: SeqNo,
    /// [`KIND_VALUE`] or [`KIND_TOMBSTONE`].
    pub kind: u8,
    /// Offset of the value within the block.
    pub value_start: usize,
    /// Length of the value.
    pub value_len: usize,
}

impl Found {
    /// The entry, borrowing the value from `data` (the block it was found in).
    #[inline]
    pub fn entry<'d>(&self, data: &'d [u8]) -> EntryRef<'d> {
        entry_ref(data, self.kind, self.value_start, self.value_len)
    }
}

#[inline]
fn entry_ref(data: &[u8], kind: u8, start: usize, len: usize) -> EntryRef<'_> {
    if kind == KIND_TOMBSTONE {
        EntryRef::Tombstone
    } else {
        EntryRef::Value(data.get(start..start + len).unwrap_or_default())
    }
}

/// Point lookup of `target` in a block, without materialising keys: while scanning it
/// tracks `m`, the common prefix of the previous key and `target`, which decides each
/// prefix-compressed key's order against `target` from its suffix alone.
pub fn get(data: &[u8], layout: &BlockLayout, target: &[u8]) -> BResult<Option<Found>> {
    let p = layout.restarts_at_or_before(data, target)?;
    let Some(start) = p.checked_sub(1) else {
        return Ok(None);
    };
    let mut pos = layout.restart(data, start)?;
    // The key at restart `p` is > target, so the scan can stop there.
    let end = if p < layout.num_restarts {
        layout.restart(data, p)?
    } else {
        layout.entries_end
    };
    let mut m = 0usize; // common prefix of previous key and target
    let mut prev_len = 0usize;
    while pos < end {
        let e = RawEntry::decode(data, pos, layout.entries_end)?;
        if e.shared > prev_len {
            return err(pos, "shared prefix longer than previous key");
        }
        if e.shared <= m {
            // key = target[..shared] + delta: compare delta with the rest of target.
            let delta = e.delta(data);
            let rest = target.get(e.shared..).unwrap_or_default();
            let l = common_prefix(delta, rest);
            match (delta.get(l), rest.get(l)) {
                (None, None) => {
                    return Ok(Some(Found {
                        seqno: e.seqno,
                        kind: e.kind,
                        value_start: e.value_start,
                        value_len: e.value_len,
                    }))
                }
                (Some(_), None) => return Ok(None),
                (Some(a), Some(b)) if a > b => return Ok(None),
                _ => m = e.shared + l,
            }
        }
        // else: the key agrees with the previous one beyond `m`, so it is < target too.
        prev_len = e.shared + e.delta_len;
        pos = e.next;
    }
    Ok(None)
}

/// A cached entry of the restart interval being walked backwards.
#[derive(Debug, Clone, Copy, Default)]
struct Cur {
    off: usize,
    next: usize,
    seqno: SeqNo,
    kind: u8,
    value_start: usize,
    value_len: usize,
}

/// A position in one block. Calls must pass the same block contents that were given to
/// [`BlockCursor::load`].
#[derive(Debug, Default)]
pub struct BlockCursor {
    layout: BlockLayout,
    valid: bool,
    cur: Cur,
    key: Vec<u8>,
    /// Entries of one restart interval, decoded by a backward step, and their keys
    /// concatenated; `back_pos` is the current entry's index there, if it is cached.
    back: Vec<(Cur, usize)>,
    back_keys: Vec<u8>,
    back_pos: Option<usize>,
}

impl BlockCursor {
    /// Points the cursor at a new block (unpositioned).
    pub fn load(&mut self, data: &[u8]) -> BResult<()> {
        self.valid = false;
        self.back_pos = None;
        self.layout = BlockLayout::parse(data)?;
        Ok(())
    }

    /// Forgets the position.
    pub fn invalidate(&mut self) {
        self.valid = false;
        self.back_pos = None;
    }

    /// True when positioned on an entry.
    #[inline]
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current sequence number.
    #[inline]
    pub fn seqno(&self) -> SeqNo {
        self.cur.seqno
    }

    /// The current entry, borrowing the value from `data`.
    #[inline]
    pub fn entry<'d>(&self, data: &'d [u8]) -> EntryRef<'d> {
        entry_ref(
            data,
            self.cur.kind,
            self.cur.value_start,
            self.cur.value_len,
        )
    }

    /// Decodes the entry at `pos` on top of the current key buffer.
    #[inline]
    fn decode_at(&mut self, data: &[u8], pos: usize) -> BResult<()> {
        let e = RawEntry::decode(data, pos, self.layout.entries_end)?;
        if e.shared > self.key.len() {
            self.valid = false;
            return err(pos, "shared prefix longer than previous key");
        }
        self.key.truncate(e.shared);
        self.key.extend_from_slice(e.delta(data));
        self.cur = Cur {
            off: pos,
            next: e.next,
            seqno: e.seqno,
            kind: e.kind,
            value_start: e.value_start,
            value_len: e.value_len,
        };
        self.valid = true;
        Ok(())
    }

    fn fail<T>(&mut self, e: BlockError) -> BResult<T> {
        self.valid = false;
        self.back_pos = None;
        Err(e)
    }

    /// Moves to the first entry.
    pub fn seek_to_first(&mut self, data: &[u8]) -> BResult<bool> {
        self.back_pos = None;
        self.key.clear();
        if let Err(e) = self.decode_at(data, 0) {
            return self.fail(e);
        }
        Ok(true)
    }

    /// Moves to the first entry with key `>= target`; false (unpositioned) if none.
    pub fn seek(&mut self, data: &[u8], target: &[u8]) -> BResult<bool> {
        self.back_pos = None;
        self.valid = false;
        let start = match self.layout.restarts_at_or_before(data, target) {
            Ok(p) => p.saturating_sub(1),
            Err(e) => return self.fail(e),
        };
        let mut pos = match self.layout.restart(data, start) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        self.key.clear();
        while pos < self.layout.entries_end {
            if let Err(e) = self.decode_at(data, pos) {
                return self.fail(e);
            }
            if self.key.as_slice() >= target {
                return Ok(true);
            }
            pos = self.cur.next;
        }
        self.valid = false;
        Ok(false)
    }

    /// Moves to the next entry; false (unpositioned) past the last one.
    pub fn next(&mut self, data: &[u8]) -> BResult<bool> {
        if let Some(p) = self.back_pos {
            if let Some(&(c, key_end)) = self.back.get(p + 1) {
                self.set_from_cache(p + 1, c, key_end);
                return Ok(true);
            }
            self.back_pos = None;
        }
        let pos = self.cur.next;
        if pos >= self.layout.entries_end {
            self.valid = false;
            return Ok(false);
        }
        match self.decode_at(data, pos) {
            Ok(()) => Ok(true),
            Err(e) => self.fail(e),
        }
    }

    fn set_from_cache(&mut self, i: usize, c: Cur, key_end: usize) {
        let key_start = match i.checked_sub(1) {
            Some(j) => self.back.get(j).map_or(0, |&(_, end)| end),
            None => 0,
        };
        self.key.clear();
        self.key
            .extend_from_slice(self.back_keys.get(key_start..key_end).unwrap_or_default());
        self.cur = c;
        self.back_pos = Some(i);
        self.valid = true;
    }

    /// Decodes restart interval `r` up to (not including) the entry at `stop` into the
    /// backward cache and positions on its last entry, which must end exactly at `stop`.
    fn fill_back(&mut self, data: &[u8], r: usize, stop: usize) -> BResult<bool> {
        self.back.clear();
        self.back_keys.clear();
        self.key.clear();
        let mut pos = self.layout.restart(data, r)?;
        while pos < stop {
            self.decode_at(data, pos)?;
            self.back_keys.extend_from_slice(&self.key);
            self.back.push((self.cur, self.back_keys.len()));
            pos = self.cur.next;
        }
        if pos != stop || self.back.is_empty() {
            return err(pos, "entries overlap a restart point");
        }
        self.back_pos = Some(self.back.len() - 1);
        self.valid = true;
        Ok(true)
    }

    /// Moves to the last entry.
    pub fn seek_to_last(&mut self, data: &[u8]) -> BResult<bool> {
        let r = self.layout.num_restarts - 1;
        let end = self.layout.entries_end;
        match self.fill_back(data, r, end) {
            Ok(v) => Ok(v),
            Err(e) => self.fail(e),
        }
    }

    /// Moves to the previous entry; false (unpositioned) before the first one.
    pub fn prev(&mut self, data: &[u8]) -> BResult<bool> {
        if let Some(p) = self.back_pos {
            if let Some(i) = p.checked_sub(1) {
                if let Some(&(c, key_end)) = self.back.get(i) {
                    self.set_from_cache(i, c, key_end);
                    return Ok(true);
                }
            }
        }
        let off = self.cur.off;
        let r = match self.layout.restart_before(data, off) {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.valid = false;
                self.back_pos = None;
                return Ok(false);
            }
            Err(e) => return self.fail(e),
        };
        match self.fill_back(data, r, off) {
            Ok(v) => Ok(v),
            Err(e) => self.fail(e),
        }
    }
}
