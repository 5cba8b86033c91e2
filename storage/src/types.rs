//! The engine's value types: sequence numbers, entries and write batches.

/// A sequence number: every write batch gets the next one; higher is newer.
pub type SeqNo = u64;

/// What the engine stores for a key: a value or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A live value.
    Value(Vec<u8>),
    /// A deletion marker.
    Tombstone,
}

impl Entry {
    /// Borrows this entry.
    pub fn as_ref(&self) -> EntryRef<'_> {
        match self {
            Entry::Value(v) => EntryRef::Value(v),
            Entry::Tombstone => EntryRef::Tombstone,
        }
    }

    /// Approximate memory charge of this entry, in bytes.
    pub fn charge(&self) -> usize {
        match self {
            Entry::Value(v) => v.len(),
            Entry::Tombstone => 0,
        }
    }
}

/// A borrowed [`Entry`], as read from a memtable or an SSTable block without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef<'a> {
    /// A live value.
    Value(&'a [u8]),
    /// A deletion marker.
    Tombstone,
}

impl EntryRef<'_> {
    /// Copies into an owned [`Entry`].
    pub fn to_owned(self) -> Entry {
        match self {
            EntryRef::Value(v) => Entry::Value(v.to_vec()),
            EntryRef::Tombstone => Entry::Tombstone,
        }
    }

    /// True for a tombstone.
    pub fn is_tombstone(self) -> bool {
        matches!(self, EntryRef::Tombstone)
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchOp {
    pub(crate) table: String,
    pub(crate) key: Vec<u8>,
    pub(crate) entry: Entry,
    /// The caller computed `entry` from everything the engine holds for the key (see
    /// [`WriteBatch::put_superseding`]): the memtable replaces instead of merging.
    pub(crate) supersede: bool,
}

/// A set of writes applied atomically: after a crash either all of them or none are seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `value` at `key` in `table`.
    pub fn put(&mut self, table: &str, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push(BatchOp {
            table: table.to_owned(),
            key: key.to_vec(),
            entry: Entry::Value(value.to_vec()),
            supersede: false,
        });
        self
    }

    /// Adds a put of a value that already incorporates every version the engine holds for
    /// the key: the caller read the key's merged entry and computed `value` from it while
    /// keeping other writers of the key out (a read-modify-write under a lock), so that
    /// `merge(anything the engine held, value) == value`. The memtable then stores it
    /// without calling the merge policy (one search and one merge fewer); reads,
    /// compaction and replay still merge, which gives the same result.
    pub fn put_superseding(&mut self, table: &str, key: &[u8], value: &[u8]) -> &mut Self {
        self.ops.push(BatchOp {
            table: table.to_owned(),
            key: key.to_vec(),
            entry: Entry::Value(value.to_vec()),
            supersede: true,
        });
        self
    }

    /// Adds a tombstone at `key` in `table`.
    pub fn delete(&mut self, table: &str, key: &[u8]) -> &mut Self {
        self.ops.push(BatchOp {
            table: table.to_owned(),
            key: key.to_vec(),
            entry: Entry::Tombstone,
            supersede: false,
        });
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
