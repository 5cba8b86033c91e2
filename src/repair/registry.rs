//! Which tables have a hash tree at this node, and how the replica's writes reach them.
//!
//! The [`Trees`] registry lives in the [`Replica`]; tables are tracked and untracked
//! through the replica ([`Replica::track_tree`], [`Replica::untrack_tree`]), which holds
//! every stripe lock meanwhile, so a write either finds the tree or lands before the
//! tree exists (and its rebuild scan sees it). Every engine write of the replica (mint,
//! apply) goes through [`Replica::record_writes`] first: for each cell of a tracked table
//! it reads the stored state, computes the merged one, and records the hash delta in
//! the tree; after the engine write, [`TreeUpdate::settle`] completes it.
//!
//! Threading: the registry is an `RwLock`ed map read once per write call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sibyl_protocol::ConflictMode;
use sibyl_storage::{Entry, MergePolicy};

use super::tree::{TableTree, Ticket};
use super::watermark::TableWatermark;
use crate::replica::{Replica, ReplicaError};

/// The trees of the tracked tables (see the module documentation).
#[derive(Debug)]
pub struct Trees {
    leaf_bits: u32,
    map: RwLock<HashMap<String, Arc<TableTree>>>,
}

impl Trees {
    /// An empty registry whose trees get `leaf_bits`-deep leaves.
    pub fn new(leaf_bits: u32) -> Trees {
        Trees {
            leaf_bits,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The tree of `table`, if tracked.
    pub fn get(&self, table: &str) -> Option<Arc<TableTree>> {
        self.read().get(table).cloned()
    }

    /// Every tracked table with its tree, by name.
    pub fn all(&self) -> Vec<(String, Arc<TableTree>)> {
        let mut v: Vec<_> = self
            .read()
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TableTree>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<TableTree>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The recorded tree changes of one engine write; settle them after it.
#[must_use = "settle the update after the engine write"]
#[derive(Debug, Default)]
pub struct TreeUpdate {
    tickets: Vec<(Arc<TableTree>, Ticket)>,
}

impl TreeUpdate {
    /// Completes the update: `written` tells whether the engine write succeeded.
    pub fn settle(self, written: bool) {
        for (tree, ticket) in self.tickets {
            tree.settle(ticket, written);
        }
    }
}

/// One cell about to be written: table, engine key, stored bytes, whether the write
/// replaces what the engine holds (a mint that read the merged state) rather than
/// merging with it, and that merged state when the writer read it (`Some(None)`: nothing
/// stored; `None`: not read, so it is read here).
pub type PendingWrite<'a> = (&'a str, &'a [u8], &'a [u8], bool, Option<Option<&'a [u8]>>);

impl Replica {
    /// Starts tracking `table` (of `mode`, merging by `merge`, telling `watermark` of
    /// purgeable writes) with a building tree; nothing when it is tracked already. Holds
    /// every stripe lock meanwhile.
    pub fn track_tree(
        &self,
        table: &str,
        mode: ConflictMode,
        merge: Arc<dyn MergePolicy>,
        watermark: Option<Arc<TableWatermark>>,
    ) {
        if self.trees().get(table).is_some() {
            return;
        }
        let _all = self.lock_all();
        let trees = self.trees();
        trees.write().entry(table.to_owned()).or_insert_with(|| {
            Arc::new(
                TableTree::new(mode, self.partitioner(), trees.leaf_bits, merge)
                    .with_watermark(watermark),
            )
        });
    }

    /// Stops tracking `table` (dropped, or its tree state lost: track it again to
    /// rebuild). Holds every stripe lock meanwhile.
    pub fn untrack_tree(&self, table: &str) {
        let _all = self.lock_all();
        self.trees().write().remove(table);
    }

    /// Replaces `table`'s tree, if tracked, by a building one with the same settings (its
    /// data changed behind the tree's back); [`Replica::rebuild_trees`] then rebuilds it.
    /// Holds every stripe lock meanwhile, so no write is between its record and settle.
    pub fn reset_tree(&self, table: &str) {
        let _all = self.lock_all();
        let trees = self.trees();
        let mut map = trees.write();
        if let Some(tree) = map.get_mut(table) {
            *tree = Arc::new(tree.emptied());
        }
    }

    /// Rebuilds every building tree (blocking: scans the tables). Returns the keys
    /// scanned. A table dropped meanwhile is skipped.
    pub fn rebuild_trees(&self) -> Result<u64, ReplicaError> {
        let mut keys = 0;
        for (table, tree) in self.trees().all() {
            if tree.is_ready() {
                continue;
            }
            match tree.rebuild(self.engine(), &table, || self.lock_all()) {
                Ok(n) => keys += n,
                Err(sibyl_storage::Error::UnknownTable { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(keys)
    }

    /// Records `writes` in the trees of their tables (see the module documentation).
    /// The caller holds the stripe locks of every key and writes them next.
    pub fn record_writes<'a>(
        &self,
        writes: impl IntoIterator<Item = PendingWrite<'a>>,
    ) -> Result<TreeUpdate, ReplicaError> {
        let mut update = TreeUpdate::default();
        let trees = self.trees();
        if trees.read().is_empty() {
            return Ok(update);
        }
        let mut last: Option<(&str, Option<Arc<TableTree>>)> = None;
        // Cells written earlier in the same call: the engine does not hold them yet.
        let mut earlier: HashMap<(&str, &[u8]), Entry> = HashMap::new();
        for (table, key, value, replaces, read) in writes {
            let tree = match &last {
                Some((t, tree)) if *t == table => tree.clone(),
                _ => {
                    let tree = trees.get(table);
                    last = Some((table, tree.clone()));
                    tree
                }
            };
            let Some(tree) = tree else { continue };
            let old = match (earlier.remove(&(table, key)), read) {
                (Some(e), _) => Some(e),
                (None, Some(read)) => read.map(|v| Entry::Value(v.to_vec())),
                (None, None) => match self.engine().get_entry(table, key) {
                    Ok(e) => e,
                    Err(e) => {
                        // Nothing was written: undo what was recorded.
                        update.settle(false);
                        return Err(e.into());
                    }
                },
            };
            let new = if replaces {
                Entry::Value(value.to_vec())
            } else {
                tree.merged(key, old.as_ref(), value)
            };
            let delta = tree.hash(key, old.as_ref()) ^ tree.hash_written(key, &new);
            let ticket = tree.record(key, delta);
            earlier.insert((table, key), new);
            if ticket != Ticket::Nothing {
                update.tickets.push((tree, ticket));
            }
        }
        Ok(update)
    }
}
