//! Values of the operator (admin) messages: [`TableStatistics`], the answer to
//! TABLE_STATS and COMPACT. The admin requests themselves are [`crate::Request`] variants
//! (opcodes `0x30..=0x34`); their grammar is in `doc/wire_format.md` §6. Pure data.

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

/// One table's storage statistics on the answering node (like `nodetool tablestats`).
/// Wire: `string` table, `u32` sstables, `list<u32>` sstables_per_level, `u64`
/// sstable_bytes, `u64` sstable_entries, `u64` sstable_tombstones, `u64` memtable_bytes,
/// `u64` memtable_entries, `u32` frozen_memtables, `u64` flushes, `u64` compactions,
/// `u64` compacted_bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TableStatistics {
    /// Table name.
    pub table: String,
    /// Live SSTables.
    pub sstables: u32,
    /// Live SSTables per level (index = level).
    pub sstables_per_level: Vec<u32>,
    /// Bytes in live SSTables.
    pub sstable_bytes: u64,
    /// Entries in live SSTables (a key's versions in several files count several times).
    pub sstable_entries: u64,
    /// Tombstones in live SSTables.
    pub sstable_tombstones: u64,
    /// Bytes held by the active and frozen memtables.
    pub memtable_bytes: u64,
    /// Keys in the active and frozen memtables.
    pub memtable_entries: u64,
    /// Memtables frozen and waiting for their flush.
    pub frozen_memtables: u32,
    /// Flushes since the node started.
    pub flushes: u64,
    /// Compactions since the node started.
    pub compactions: u64,
    /// Bytes written by compactions since the node started.
    pub compacted_bytes: u64,
}

impl TableStatistics {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("table", &self.table)?;
        w.u32(self.sstables);
        w.list("sstables per level", &self.sstables_per_level, |w, n| {
            w.u32(*n);
            Ok(())
        })?;
        for v in [
            self.sstable_bytes,
            self.sstable_entries,
            self.sstable_tombstones,
            self.memtable_bytes,
            self.memtable_entries,
        ] {
            w.u64(v);
        }
        w.u32(self.frozen_memtables);
        for v in [self.flushes, self.compactions, self.compacted_bytes] {
            w.u64(v);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(TableStatistics {
            table: r.string("table")?,
            sstables: r.u32("sstables")?,
            sstables_per_level: r.list("sstables per level", 4, |r| r.u32("level count"))?,
            sstable_bytes: r.u64("sstable bytes")?,
            sstable_entries: r.u64("sstable entries")?,
            sstable_tombstones: r.u64("sstable tombstones")?,
            memtable_bytes: r.u64("memtable bytes")?,
            memtable_entries: r.u64("memtable entries")?,
            frozen_memtables: r.u32("frozen memtables")?,
            flushes: r.u64("flushes")?,
            compactions: r.u64("compactions")?,
            compacted_bytes: r.u64("compacted bytes")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_statistics_round_trip_and_reject_truncation() {
        let s = TableStatistics {
            table: "users".into(),
            sstables: 3,
            sstables_per_level: vec![1, 2],
            sstable_bytes: 1 << 40,
            sstable_entries: 7,
            sstable_tombstones: 1,
            memtable_bytes: 512,
            memtable_entries: 4,
            frozen_memtables: 1,
            flushes: 9,
            compactions: 2,
            compacted_bytes: u64::MAX,
        };
        let mut w = WireWriter::new();
        s.encode(&mut w).unwrap();
        let bytes = w.finish();
        let mut r = WireReader::new(bytes.clone());
        assert_eq!(TableStatistics::decode(&mut r).unwrap(), s);
        r.finish("table stats").unwrap();
        let mut short = WireReader::new(bytes.slice(..bytes.len() - 1));
        assert!(matches!(
            TableStatistics::decode(&mut short),
            Err(ProtocolError::Truncated { .. })
        ));
    }
}
