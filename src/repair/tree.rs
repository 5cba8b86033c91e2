//! The anti-entropy hash tree of one table at one node, kept up to date as writes land.
//!
//! # Shape
//! The tree's leaves are the buckets of depth `leaf_bits` of the token space
//! ([`super::space`]; 2^16 leaves by default, 512 KiB per table). A leaf's hash is the
//! XOR of [`super::hash::cell_hash`] over the keys stored in its bucket, so a write
//! changes its leaf in O(1): XOR the old cell's hash out and the merged cell's in (Riak's
//! "tictac" trees). Inner nodes are not stored: a bucket's hash is the XOR of its leaves,
//! computed when an exchange asks (a range of the ring holds a few thousand leaves).
//! Buckets deeper than a leaf are computed by scanning the leaf.
//!
//! # Groups, and rebuilding without stopping writes
//! Leaves are kept in groups of 64 under one mutex. A group is *ready* (its leaves are
//! exact) or *building* (unknown; exchanges that need it wait for it). A tree starts
//! building (at every start of the node, and when a table starts being tracked) and
//! [`TableTree::rebuild`] scans the table group by group while writes go on:
//!
//! - a write first records itself ([`TableTree::record`], under the cell's stripe lock,
//!   before the engine write): in a ready group it XORs its delta into the leaf; in a
//!   building group it counts itself *pending*. After the engine write it settles
//!   ([`TableTree::settle`]): a pending write uncounts itself and bumps the group's
//!   *generation*; an applied delta of a failed write is XORed out again;
//! - the rebuild of a group reads the generation (waiting while writes are pending),
//!   scans the group's keys, and installs the scanned leaves only if no write was pending
//!   or settled meanwhile (same generation); otherwise it scans again, and after a few
//!   tries it scans holding every stripe lock, which no write can overtake.
//!
//! Every write is then either seen by the scan that made its group ready, or applied as a
//! delta after it, never both: a write recorded after the group became ready reaches the
//! engine after that scan ended.
//!
//! # Threading
//! `Send + Sync`; each call takes one group mutex for a few instructions (a rebuild holds
//! none while it scans).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sibyl_protocol::ConflictMode;
use sibyl_storage::{Direction, Engine, Entry, EntryRef, MergePolicy};

use super::hash::{cell_hash, cell_hash_mortal};
use super::space::{bucket, point_of_key, Interval};
use super::watermark::TableWatermark;
use crate::ring::Partitioner;

/// The default depth of the leaves (2^16 leaves).
pub const DEFAULT_LEAF_BITS: u32 = 16;
/// The shallowest and deepest leaf depths accepted.
pub const LEAF_BITS_RANGE: std::ops::RangeInclusive<u32> = 8..=22;
/// Leaves per group (2^6).
const GROUP_BITS: u32 = 6;
const GROUP_LEAVES: usize = 1 << GROUP_BITS;
/// Scans of a group tried before one holding every stripe lock.
const OPTIMISTIC_TRIES: usize = 8;

#[derive(Debug)]
struct Group {
    leaves: [u64; GROUP_LEAVES],
    ready: bool,
    /// Writes recorded in this building group and not yet settled.
    pending: u32,
    /// Bumped by every write settled while the group was building.
    generation: u64,
}

/// What [`TableTree::record`] did; give it back to [`TableTree::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// The write changes no hash.
    Nothing,
    /// The delta was XORed into a ready leaf.
    Applied {
        /// The leaf.
        leaf: usize,
        /// The delta.
        delta: u64,
    },
    /// The group was building; the write counts as pending.
    Pending {
        /// The group.
        group: usize,
    },
}

/// The hash tree of one table (see the module documentation).
pub struct TableTree {
    mode: ConflictMode,
    partitioner: Partitioner,
    leaf_bits: u32,
    merge: Arc<dyn MergePolicy>,
    /// Told of every write that may become purgeable (`None`: the table never purges).
    watermark: Option<Arc<TableWatermark>>,
    groups: Box<[Mutex<Group>]>,
    ready_groups: AtomicUsize,
}

impl std::fmt::Debug for TableTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableTree")
            .field("mode", &self.mode)
            .field("leaf_bits", &self.leaf_bits)
            .field("ready_groups", &self.ready_groups.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TableTree {
    /// A building tree for a table of `mode` whose stored versions merge by `merge`.
    /// `leaf_bits` is clamped into [`LEAF_BITS_RANGE`].
    pub fn new(
        mode: ConflictMode,
        partitioner: Partitioner,
        leaf_bits: u32,
        merge: Arc<dyn MergePolicy>,
    ) -> TableTree {
        let leaf_bits = leaf_bits.clamp(*LEAF_BITS_RANGE.start(), *LEAF_BITS_RANGE.end());
        let groups = (0..1usize << (leaf_bits - GROUP_BITS))
            .map(|_| {
                Mutex::new(Group {
                    leaves: [0; GROUP_LEAVES],
                    ready: false,
                    pending: 0,
                    generation: 0,
                })
            })
            .collect();
        TableTree {
            mode,
            partitioner,
            leaf_bits,
            merge,
            watermark: None,
            groups,
            ready_groups: AtomicUsize::new(0),
        }
    }

    /// A new building tree with this one's settings (mode, partitioner, leaves, merge
    /// policy, watermark): what to install when the table's data changed behind the
    /// tree's back (a cleanup dropped ranges), before a rebuild.
    pub fn emptied(&self) -> TableTree {
        TableTree::new(
            self.mode,
            self.partitioner,
            self.leaf_bits,
            self.merge.clone(),
        )
        .with_watermark(self.watermark.clone())
    }

    /// The same tree telling `watermark` of every write that may become purgeable.
    pub fn with_watermark(mut self, watermark: Option<Arc<TableWatermark>>) -> TableTree {
        self.watermark = watermark;
        self
    }

    /// The table's conflict mode.
    pub fn mode(&self) -> ConflictMode {
        self.mode
    }

    /// The depth of the leaves.
    pub fn leaf_bits(&self) -> u32 {
        self.leaf_bits
    }

    /// The number of leaves.
    pub fn leaf_count(&self) -> usize {
        1 << self.leaf_bits
    }

    /// True when every group is ready.
    pub fn is_ready(&self) -> bool {
        self.ready_groups.load(Ordering::Acquire) == self.groups.len()
    }

    /// The fraction of groups ready, in `[0, 1]`.
    pub fn ready_fraction(&self) -> f64 {
        self.ready_groups.load(Ordering::Acquire) as f64 / self.groups.len() as f64
    }

    /// The leaf of an engine key.
    pub fn leaf_of_key(&self, key: &[u8]) -> usize {
        (point_of_key(self.partitioner, key) >> (128 - self.leaf_bits)) as usize
    }

    /// The points of leaf `leaf`.
    pub fn leaf_interval(&self, leaf: usize) -> Interval {
        bucket(self.leaf_bits, leaf as u128)
    }

    /// The merged state after `newer` is written over `older` (what the engine will hold).
    pub fn merged(&self, key: &[u8], older: Option<&Entry>, newer: &[u8]) -> Entry {
        match older {
            None | Some(Entry::Tombstone) => Entry::Value(newer.to_vec()),
            Some(o) => self.merge.merge(key, o.as_ref(), EntryRef::Value(newer)),
        }
    }

    /// The hash of `entry` at `key` in this table.
    pub fn hash(&self, key: &[u8], entry: Option<&Entry>) -> u64 {
        match entry {
            Some(e) => cell_hash(self.mode, key, e.as_ref()),
            None => 0,
        }
    }

    /// The hash of `entry`, the merged cell a write is about to leave at `key`; tells the
    /// watermark when the cell may become purgeable.
    pub fn hash_written(&self, key: &[u8], entry: &Entry) -> u64 {
        let (hash, mortal) = cell_hash_mortal(self.mode, key, entry.as_ref());
        if mortal {
            if let Some(w) = &self.watermark {
                w.note_tombstone(key);
            }
        }
        hash
    }

    /// Records a write at `key` that changes its hash by `delta` (old XOR new), before the
    /// engine write. The caller holds the key's stripe lock until it settles the ticket.
    pub fn record(&self, key: &[u8], delta: u64) -> Ticket {
        if delta == 0 {
            return Ticket::Nothing;
        }
        let leaf = self.leaf_of_key(key);
        let group = leaf >> GROUP_BITS;
        let Some(g) = self.groups.get(group) else {
            return Ticket::Nothing;
        };
        let mut g = lock(g);
        if g.ready {
            g.leaves[leaf % GROUP_LEAVES] ^= delta;
            Ticket::Applied { leaf, delta }
        } else {
            g.pending += 1;
            Ticket::Pending { group }
        }
    }

    /// Settles a recorded write after the engine write (`written` = it succeeded).
    pub fn settle(&self, ticket: Ticket, written: bool) {
        match ticket {
            Ticket::Nothing => {}
            Ticket::Applied { leaf, delta } => {
                if !written {
                    if let Some(g) = self.groups.get(leaf >> GROUP_BITS) {
                        lock(g).leaves[leaf % GROUP_LEAVES] ^= delta;
                    }
                }
            }
            Ticket::Pending { group } => {
                if let Some(g) = self.groups.get(group) {
                    let mut g = lock(g);
                    g.pending = g.pending.saturating_sub(1);
                    g.generation += 1;
                }
            }
        }
    }

    /// Marks the groups holding keys `first..=last` (engine keys, `first <= last`)
    /// building: data reached the engine there without passing [`TableTree::record`]
    /// (an ingested SSTable), so their leaves are unknown until
    /// [`TableTree::rebuild`] scans them. Tells the watermark a purgeable cell may have
    /// arrived in each of their leaves. The caller holds every stripe lock, so no write
    /// is between its record and its settle.
    pub fn invalidate(&self, first: &[u8], last: &[u8]) {
        let (lo, hi) = (self.leaf_of_key(first), self.leaf_of_key(last));
        for group in (lo >> GROUP_BITS)..=(hi >> GROUP_BITS) {
            let Some(g) = self.groups.get(group) else {
                continue;
            };
            let mut g = lock(g);
            // A rebuild scanning the group now may have missed the data: the new
            // generation makes it scan again.
            g.generation += 1;
            if g.ready {
                g.ready = false;
                self.ready_groups.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if let Some(w) = &self.watermark {
            w.note_tombstones(first, last);
        }
    }

    /// The hashes of leaves `first..=last`, or `None` when one of them is building.
    pub fn leaves(&self, first: usize, last: usize) -> Option<Vec<u64>> {
        let mut out = Vec::with_capacity(last.saturating_sub(first) + 1);
        let mut leaf = first;
        while leaf <= last {
            let g = lock(self.groups.get(leaf >> GROUP_BITS)?);
            if !g.ready {
                return None;
            }
            let end = last.min(leaf | (GROUP_LEAVES - 1));
            for l in leaf..=end {
                out.push(g.leaves[l % GROUP_LEAVES]);
            }
            leaf = end + 1;
        }
        Some(out)
    }

    /// Makes every building group ready by scanning `table` in `engine` (see the module
    /// documentation). `lock_all` takes every stripe lock of the replica (the fallback
    /// when writes keep overtaking a scan). Returns the keys scanned.
    pub fn rebuild<'a>(
        &self,
        engine: &Engine,
        table: &str,
        lock_all: impl Fn() -> Vec<MutexGuard<'a, ()>>,
    ) -> Result<u64, sibyl_storage::Error> {
        let mut keys = 0u64;
        for group in 0..self.groups.len() {
            if lock(&self.groups[group]).ready {
                continue;
            }
            keys += self.rebuild_group(engine, table, group, &lock_all)?;
        }
        Ok(keys)
    }

    fn rebuild_group<'a>(
        &self,
        engine: &Engine,
        table: &str,
        group: usize,
        lock_all: &impl Fn() -> Vec<MutexGuard<'a, ()>>,
    ) -> Result<u64, sibyl_storage::Error> {
        let interval = bucket(self.leaf_bits - GROUP_BITS, group as u128);
        for _ in 0..OPTIMISTIC_TRIES {
            let generation = {
                let g = lock(&self.groups[group]);
                if g.ready {
                    return Ok(0);
                }
                (g.pending == 0).then_some(g.generation)
            };
            let Some(generation) = generation else {
                std::thread::yield_now();
                continue;
            };
            let (leaves, n) = self.scan_group(engine, table, interval)?;
            let mut g = lock(&self.groups[group]);
            if g.pending == 0 && g.generation == generation {
                self.install(&mut g, leaves);
                return Ok(n);
            }
        }
        // Writes keep landing in this group: scan it with every stripe held.
        let _all = lock_all();
        let (leaves, n) = self.scan_group(engine, table, interval)?;
        let mut g = lock(&self.groups[group]);
        self.install(&mut g, leaves);
        Ok(n)
    }

    fn install(&self, g: &mut Group, leaves: [u64; GROUP_LEAVES]) {
        if !g.ready {
            g.leaves = leaves;
            g.ready = true;
            self.ready_groups.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn scan_group(
        &self,
        engine: &Engine,
        table: &str,
        interval: Interval,
    ) -> Result<([u64; GROUP_LEAVES], u64), sibyl_storage::Error> {
        let span = interval.key_span(self.partitioner);
        let mut scan = engine.scan(
            table,
            span.lower_bound(),
            span.upper_bound(),
            Direction::Forward,
        )?;
        let mut leaves = [0u64; GROUP_LEAVES];
        let mut n = 0u64;
        while let Some((key, value)) = scan.next_merged()? {
            let leaf = self.leaf_of_key(key);
            leaves[leaf % GROUP_LEAVES] ^= cell_hash(self.mode, key, EntryRef::Value(value));
            n += 1;
        }
        Ok((leaves, n))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
