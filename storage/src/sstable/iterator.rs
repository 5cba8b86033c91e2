//! [`SsTableIter`]: a bidirectional cursor over one table.
//!
//! It owns an `Arc<SsTable>`, the index of the current data block and a
//! [`BlockCursor`] over it; moving past either end of a block loads the neighbouring
//! block. Keys are rebuilt in the cursor's reusable buffer and values are slices of the
//! mmap, so stepping allocates nothing once the buffers have grown. A block's crc is
//! checked (once per open, see [`SsTable`]) when the cursor first enters it.
//!
//! Any error leaves the iterator unpositioned. Single owner: `Send`, not shared.

use std::sync::Arc;

use super::block::BlockCursor;
use super::SsTable;
use crate::error::Result;
use crate::types::{EntryRef, SeqNo};

/// A cursor over a table; starts unpositioned (`!valid()`).
#[derive(Debug)]
pub struct SsTableIter {
    table: Arc<SsTable>,
    /// The block the cursor is loaded with (meaningful only when the cursor is valid).
    block: usize,
    cursor: BlockCursor,
}

impl SsTableIter {
    pub(crate) fn new(table: Arc<SsTable>) -> Self {
        SsTableIter {
            table,
            block: 0,
            cursor: BlockCursor::default(),
        }
    }

    /// The table this iterator walks.
    pub fn table(&self) -> &Arc<SsTable> {
        &self.table
    }

    /// Loads block `i` into the cursor (unpositioned), verifying it on first use.
    fn load(&mut self, i: usize) -> Result<()> {
        self.cursor.invalidate();
        let data = self.table.block_data(i)?;
        self.cursor
            .load(data)
            .map_err(|e| self.table.block_corruption(i, e))?;
        self.block = i;
        Ok(())
    }

    /// Runs a cursor step on the current block, mapping its error.
    fn step(
        &mut self,
        f: impl FnOnce(&mut BlockCursor, &[u8]) -> Result<bool, super::block::BlockError>,
    ) -> Result<bool> {
        let data = self.table.block_data_unchecked(self.block);
        f(&mut self.cursor, data).map_err(|e| self.table.block_corruption(self.block, e))
    }

    /// Positions on the first entry of block `i` or a later one.
    fn first_from(&mut self, mut i: usize) -> Result<()> {
        while i < self.table.num_blocks() {
            self.load(i)?;
            if self.step(|c, d| c.seek_to_first(d))? {
                return Ok(());
            }
            i += 1;
        }
        self.cursor.invalidate();
        Ok(())
    }

    /// Positions on the last entry of block `i` or an earlier one.
    fn last_from(&mut self, i: usize) -> Result<()> {
        for i in (0..=i).rev() {
            self.load(i)?;
            if self.step(|c, d| c.seek_to_last(d))? {
                return Ok(());
            }
        }
        self.cursor.invalidate();
        Ok(())
    }

    /// Positions on the first entry.
    pub fn seek_to_first(&mut self) -> Result<()> {
        self.first_from(0)
    }

    /// Positions on the last entry.
    pub fn seek_to_last(&mut self) -> Result<()> {
        match self.table.num_blocks().checked_sub(1) {
            Some(last) => self.last_from(last),
            None => {
                self.cursor.invalidate();
                Ok(())
            }
        }
    }

    /// Positions on the first entry with key `>= key`; unpositioned if there is none.
    pub fn seek(&mut self, key: &[u8]) -> Result<()> {
        let i = self.table.find_block(key);
        if i >= self.table.num_blocks() {
            self.cursor.invalidate();
            return Ok(());
        }
        self.load(i)?;
        if self.step(|c, d| c.seek(d, key))? {
            return Ok(());
        }
        // Every key of block i is < key <= its separator: the answer starts block i+1.
        self.first_from(i + 1)
    }

    /// Positions on the last entry with key `<= key`; unpositioned if there is none.
    pub fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        self.seek(key)?;
        if !self.valid() {
            return self.seek_to_last();
        }
        if self.key() == key {
            return Ok(());
        }
        self.prev()
    }

    /// Moves to the next entry; unpositioned after the last one. Must be valid.
    #[allow(clippy::should_implement_trait)] // fallible cursor step, not an Iterator
    pub fn next(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        if self.step(|c, d| c.next(d))? {
            return Ok(());
        }
        self.first_from(self.block + 1)
    }

    /// Moves to the previous entry; unpositioned before the first one. Must be valid.
    pub fn prev(&mut self) -> Result<()> {
        if !self.valid() {
            return Ok(());
        }
        if self.step(|c, d| c.prev(d))? {
            return Ok(());
        }
        match self.block.checked_sub(1) {
            Some(i) => self.last_from(i),
            None => {
                self.cursor.invalidate();
                Ok(())
            }
        }
    }

    /// True when positioned on an entry.
    #[inline]
    pub fn valid(&self) -> bool {
        self.cursor.valid()
    }

    /// The current key (meaningful only when valid).
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.cursor.key()
    }

    /// The current entry's sequence number (meaningful only when valid).
    #[inline]
    pub fn seqno(&self) -> SeqNo {
        self.cursor.seqno()
    }

    /// The current entry; a value borrows the mmap (meaningful only when valid).
    #[inline]
    pub fn entry(&self) -> EntryRef<'_> {
        self.cursor
            .entry(self.table.block_data_unchecked(self.block))
    }
}
