//! [`TableRequests`]: per-table request figures the coordinating node keeps — read and
//! write latency, and the siblings its reads returned — for `sibyl-admin tablestats` and
//! the `sibyl_table_*` metrics. [`TableRegistry`] finds a table's entry by name.
//!
//! Threading: the registry's map is an immutable snapshot swapped whole (`ArcSwap`), read
//! without a lock on every GET, INSERT and DELETE (one hash of the name); a new map is
//! made only when a request of a table not seen before succeeded, so a client naming
//! tables that do not exist adds nothing. Entries are never removed (a dropped table's
//! figures stay until the process ends, as counters do), so each is a leaked box that
//! requests hold by plain reference: no reference count is bumped on the request path,
//! where two threads bumping one count cost more than the counting itself (see
//! `benches/request_metrics.rs`). The memory is one small entry per table name that ever
//! served a request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;

use sibyl_protocol::Cell;
use sibyl_storage::latency::{LatencyHistogram, LatencySnapshot};

/// Whether a request reads or writes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAccess {
    /// GET.
    Read,
    /// INSERT or DELETE.
    Write,
}

/// One table's figures (see the module documentation).
#[derive(Debug, Default)]
pub struct TableRequests {
    read: LatencyHistogram,
    write: LatencyHistogram,
    cells_read: AtomicU64,
    cells_with_siblings: AtomicU64,
    max_siblings: AtomicU64,
}

/// A snapshot of [`TableRequests`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableRequestStats {
    /// Latency of GETs.
    pub read: LatencySnapshot,
    /// Latency of INSERTs and DELETEs.
    pub write: LatencySnapshot,
    /// Cells GETs returned.
    pub cells_read: u64,
    /// Of those, cells with more than one sibling.
    pub cells_with_siblings: u64,
    /// The most siblings one returned cell held.
    pub max_siblings: u64,
}

impl TableRequests {
    /// Records a request of `access` that took `elapsed` and, for a read, the cells it
    /// returned.
    pub fn record(&self, access: TableAccess, elapsed: Duration, cells: &[Cell]) {
        match access {
            TableAccess::Read => {
                self.read.record(elapsed);
                let mut with_siblings = 0u64;
                let mut most = 0u64;
                for cell in cells {
                    let n = cell.siblings.len() as u64;
                    with_siblings += u64::from(n > 1);
                    most = most.max(n);
                }
                self.cells_read
                    .fetch_add(cells.len() as u64, Ordering::Relaxed);
                self.cells_with_siblings
                    .fetch_add(with_siblings, Ordering::Relaxed);
                self.max_siblings.fetch_max(most, Ordering::Relaxed);
            }
            TableAccess::Write => self.write.record(elapsed),
        }
    }

    /// The figures so far.
    pub fn snapshot(&self) -> TableRequestStats {
        TableRequestStats {
            read: self.read.snapshot(),
            write: self.write.snapshot(),
            cells_read: self.cells_read.load(Ordering::Relaxed),
            cells_with_siblings: self.cells_with_siblings.load(Ordering::Relaxed),
            max_siblings: self.max_siblings.load(Ordering::Relaxed),
        }
    }
}

/// Where a request's table figures go, found when the request starts.
#[derive(Debug, Clone)]
pub enum TableSlot {
    /// The table's entry.
    Known(&'static TableRequests),
    /// A table not seen yet: an entry is made if the request succeeds.
    New(String),
}

/// Every table's [`TableRequests`], by name (see the module documentation).
#[derive(Debug, Default)]
pub struct TableRegistry {
    tables: ArcSwap<HashMap<String, &'static TableRequests>>,
    /// Serialises the making of new maps (two new tables at once keep both).
    adding: Mutex<()>,
}

impl TableRegistry {
    /// The slot of `table` (no allocation once the table has an entry).
    pub fn slot(&self, table: &str) -> TableSlot {
        match self.tables.load().get(table) {
            Some(t) => TableSlot::Known(t),
            None => TableSlot::New(table.to_owned()),
        }
    }

    /// The entry of a slot's table, made for a new one.
    pub fn resolve(&self, slot: &TableSlot) -> &'static TableRequests {
        match slot {
            TableSlot::Known(t) => t,
            TableSlot::New(name) => {
                let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
                let current = self.tables.load_full();
                if let Some(t) = current.get(name) {
                    return t;
                }
                let entry: &'static TableRequests = Box::leak(Box::default());
                let mut next = HashMap::clone(&current);
                next.insert(name.clone(), entry);
                self.tables.store(Arc::new(next));
                entry
            }
        }
    }

    /// The figures of `table`, if any request of it succeeded.
    pub fn get(&self, table: &str) -> Option<TableRequestStats> {
        self.tables.load().get(table).map(|t| t.snapshot())
    }

    /// Every table's figures, by name.
    pub fn all(&self) -> Vec<(String, TableRequestStats)> {
        let tables = self.tables.load();
        let mut all: Vec<_> = tables
            .iter()
            .map(|(name, t)| (name.clone(), t.snapshot()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::Sibling;

    fn cell(siblings: usize) -> Cell {
        Cell {
            name: bytes::Bytes::from_static(b"c"),
            siblings: (0..siblings)
                .map(|i| Sibling {
                    value: Some(bytes::Bytes::from(vec![i as u8])),
                    timestamp_micros: 1,
                    ttl_secs: None,
                })
                .collect(),
            context: bytes::Bytes::new(),
        }
    }

    #[test]
    fn table_registry_counts_reads_writes_and_siblings_per_table() {
        let r = TableRegistry::default();
        let slot = r.slot("kv");
        assert!(matches!(slot, TableSlot::New(_)));
        assert!(r.get("kv").is_none(), "nothing before a request succeeded");
        let kv = r.resolve(&slot);
        kv.record(TableAccess::Write, Duration::from_micros(300), &[]);
        kv.record(
            TableAccess::Read,
            Duration::from_micros(80),
            &[cell(1), cell(3), cell(2)],
        );
        assert!(matches!(r.slot("kv"), TableSlot::Known(_)));
        let s = r.get("kv").unwrap();
        assert_eq!((s.read.count, s.write.count), (1, 1));
        assert_eq!(
            (s.cells_read, s.cells_with_siblings, s.max_siblings),
            (3, 2, 3)
        );
        assert_eq!(r.all().len(), 1);
    }
}
