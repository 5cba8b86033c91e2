//! Executing compaction plans: merge the input SSTables through a [`MergeCursor`], apply
//! the policy's compaction filter (if any, in key order) and its `compact` rule with a
//! per-key bottommost check (no other SSTable and no memtable holds the key), write the
//! outputs, then swap them in through one manifest update. A major compaction may also
//! leave out every key a caller's predicate selects (every version, tombstones included:
//! `cleanup` of data a node no longer owns).

use std::collections::HashSet;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::background::allocate_file_id;
use super::iter::{Direction, MergeCursor};
use super::table::{Table, TableFile, TableVersion};
use super::{lock, Inner};
use crate::compaction::{self, CompactionPlan};
use crate::error::{Error, Result};
use crate::manifest::SsTableEntry;
use crate::sstable::{SsTable, SsTableBuilder};

/// A predicate over engine keys: true leaves the key out of a major compaction.
pub(crate) type KeyDrop<'a> = dyn Fn(&[u8]) -> bool + 'a;

impl Inner {
    /// Runs one compaction the table's strategy asks for; false when none was due.
    pub(crate) fn compact_step(&self, t: &Arc<Table>) -> Result<bool> {
        let _guard = lock(&self.compacting);
        if t.dropped.load(Ordering::Acquire) {
            return Ok(false);
        }
        let v = t.version();
        let descs: Vec<_> = v.files.iter().map(|f| f.desc()).collect();
        let plan = {
            let cursors = lock(&t.cursors);
            compaction::plan(&t.compaction, &descs, &cursors)
        };
        match plan {
            Some(p) => {
                self.execute(t, &v, p, None)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Merges every SSTable of the table (a major compaction), leaving out the keys
    /// `drop` selects; returns how many stored entries it left out that way.
    pub(crate) fn compact_major(&self, t: &Arc<Table>, drop: Option<&KeyDrop<'_>>) -> Result<u64> {
        self.check_poisoned()?;
        let _guard = lock(&self.compacting);
        let v = t.version();
        let descs: Vec<_> = v.files.iter().map(|f| f.desc()).collect();
        // A lone file is rewritten too when it holds tombstones, or when the policy has a
        // compaction filter (which may drop entries the engine cannot see are dead), or
        // when keys are to be dropped: a major compaction is how an operator purges them.
        let filtered = t.merge.compaction_filter().is_some() || drop.is_some();
        let lone_with_tombstones = match v.files.as_slice() {
            [f] if f.sst.info().tombstones > 0 || filtered => Some(CompactionPlan::Merge {
                inputs: vec![f.file_id],
                output_level: f.level,
            }),
            _ => None,
        };
        // A dropping compaction moves no file: every key must pass the predicate.
        let plan = match (compaction::plan_major(&t.compaction, &descs), drop) {
            (Some(CompactionPlan::Move { file_id, .. }), Some(_)) => {
                let level = v
                    .files
                    .iter()
                    .find(|f| f.file_id == file_id)
                    .map_or(0, |f| f.level);
                Some(CompactionPlan::Merge {
                    inputs: vec![file_id],
                    output_level: level,
                })
            }
            (plan, _) => plan,
        };
        if let Some(p) = plan.or(lone_with_tombstones) {
            return self.execute(t, &v, p, drop).map_err(|e| {
                if matches!(e, Error::Io { .. }) {
                    self.poison(format!("compaction: {e}"))
                } else {
                    e
                }
            });
        }
        Ok(0)
    }

    fn execute(
        &self,
        t: &Arc<Table>,
        v: &TableVersion,
        plan: CompactionPlan,
        drop: Option<&KeyDrop<'_>>,
    ) -> Result<u64> {
        let (inputs, output_level) = match plan {
            CompactionPlan::Move { file_id, to_level } => {
                self.install(t, &[file_id], Vec::new(), Some((file_id, to_level)))?;
                return Ok(0);
            }
            CompactionPlan::Merge {
                inputs,
                output_level,
            } => (inputs, output_level),
        };
        let input_set: HashSet<u64> = inputs.iter().copied().collect();
        let (ins, others): (Vec<_>, Vec<_>) = v
            .files
            .iter()
            .cloned()
            .partition(|f| input_set.contains(&f.file_id));
        let mut cursor = MergeCursor::new(
            v,
            &ins,
            false,
            t.merge.clone(),
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
        )?;
        // Memtables hold versions too (a merge policy's memtable merges only with its own
        // entry, so an older version applied late sits there above a flushed tombstone):
        // those of the plan's version and of the current one (after a rotation).
        let current = t.version();
        let memtables: Vec<_> = [&v.active, &current.active]
            .into_iter()
            .chain(v.frozen.iter())
            .chain(current.frozen.iter())
            .cloned()
            .collect();
        let target = t.compaction.target_file_size();
        // Sees the merged entries in key order (the cursor is forward).
        let mut filter = t.merge.compaction_filter();
        let mut outputs: Vec<Arc<TableFile>> = Vec::new();
        let mut builder: Option<(u64, SsTableBuilder)> = None;
        let mut written = 0u64;
        let mut dropped = 0u64;
        let mut last_key: Option<Vec<u8>> = None;
        let result: Result<()> = (|| {
            while cursor.advance()? {
                let key = cursor.key();
                if drop.is_some_and(|d| d(key)) {
                    dropped += 1;
                    continue;
                }
                // Bottommost for this key: no file outside the compaction and no memtable
                // may hold it, so nothing an entry dropped here shadows can come back. (A
                // version written to a memtable while the compaction runs is not seen: the
                // node holds purges back by its repair watermark, see its merge policy.)
                let bottommost = !others
                    .iter()
                    .any(|f| f.covers(key) && f.sst.may_contain(key))
                    && !memtables
                        .iter()
                        .any(|m| m.may_contain_key(key) && m.with_entry(key, |_, _| ()).is_some());
                let entry = cursor.entry().to_owned();
                let entry = match filter.as_mut() {
                    Some(f) => match f.filter(key, entry) {
                        Some(e) => e,
                        None => continue,
                    },
                    None => entry,
                };
                let Some(entry) = t.merge.compact(key, entry, bottommost) else {
                    continue;
                };
                if builder.is_none() {
                    let id = allocate_file_id(self);
                    let b = SsTableBuilder::create(
                        &self.sstable_path(id),
                        self.opts.sstable,
                        self.opts.faults.clone(),
                    )?;
                    builder = Some((id, b));
                }
                if let Some((_, b)) = builder.as_mut() {
                    b.add(key, cursor.seqno(), entry.as_ref())?;
                    if target.is_some_and(|limit| b.estimated_size() >= limit) {
                        last_key = Some(key.to_vec());
                    }
                }
                if last_key.take().is_some() {
                    if let Some((id, b)) = builder.take() {
                        written += b.finish()?.file_size;
                        outputs.push(self.open_output(id, output_level)?);
                    }
                }
            }
            if let Some((id, b)) = builder.take() {
                written += b.finish()?.file_size;
                outputs.push(self.open_output(id, output_level)?);
            }
            self.opts
                .faults
                .sync_dir(&self.sstable_dir())
                .map_err(|e| Error::io(self.sstable_dir(), e))
        })();
        if let Err(e) = result {
            if let Some((_, b)) = builder.take() {
                b.abandon();
            }
            for o in &outputs {
                let _ = std::fs::remove_file(self.sstable_path(o.file_id));
            }
            return Err(match e {
                // What the whole compaction needs, at most: its inputs' size.
                Error::DiskFull {
                    path,
                    free,
                    reserve,
                    ..
                } => Error::DiskFull {
                    path,
                    needed: ins.iter().map(|f| f.sst.info().file_size).sum(),
                    free,
                    reserve,
                },
                e => e,
            });
        }
        // Remember where leveled compaction stopped, for round-robin.
        if let Some(first) = ins
            .iter()
            .find(|f| f.level + 1 == output_level && output_level > 1)
        {
            lock(&t.cursors).insert(first.level, first.sst.info().largest.clone());
        }
        t.compactions.fetch_add(1, Ordering::Relaxed);
        t.compacted_bytes.fetch_add(written, Ordering::Relaxed);
        self.install(t, &inputs, outputs, None)?;
        Ok(dropped)
    }

    fn open_output(&self, id: u64, level: u32) -> Result<Arc<TableFile>> {
        Ok(Arc::new(TableFile {
            file_id: id,
            level,
            sst: SsTable::open(&self.sstable_path(id))?,
        }))
    }

    /// Records the outcome in the manifest, swaps the table version, deletes the inputs.
    fn install(
        &self,
        t: &Arc<Table>,
        inputs: &[u64],
        outputs: Vec<Arc<TableFile>>,
        moved: Option<(u64, u32)>,
    ) -> Result<()> {
        let mut manifest = lock(&self.manifest);
        if t.dropped.load(Ordering::Acquire) {
            for o in &outputs {
                let _ = std::fs::remove_file(self.sstable_path(o.file_id));
            }
            return Ok(());
        }
        let mut next = manifest.clone();
        if let Some(tm) = next.tables.iter_mut().find(|tm| tm.id == t.id) {
            match moved {
                Some((id, level)) => {
                    for s in tm.sstables.iter_mut().filter(|s| s.file_id == id) {
                        s.level = level;
                    }
                }
                None => {
                    tm.sstables.retain(|s| !inputs.contains(&s.file_id));
                    tm.sstables.extend(outputs.iter().map(|o| SsTableEntry {
                        file_id: o.file_id,
                        level: o.level,
                    }));
                }
            }
        }
        if let Err(e) = crate::manifest::store(&self.dir, &next, &self.opts.faults) {
            if e.is_disk_full() {
                // The inputs stand; the compaction is redone later.
                for o in &outputs {
                    let _ = std::fs::remove_file(self.sstable_path(o.file_id));
                }
            }
            return Err(e);
        }
        *manifest = next;
        t.update_version(|v| {
            let files: Vec<Arc<TableFile>> = match moved {
                Some((id, level)) => v
                    .files
                    .iter()
                    .map(|f| {
                        if f.file_id == id {
                            Arc::new(TableFile {
                                file_id: f.file_id,
                                level,
                                sst: f.sst.clone(),
                            })
                        } else {
                            f.clone()
                        }
                    })
                    .collect(),
                None => v
                    .files
                    .iter()
                    .filter(|f| !inputs.contains(&f.file_id))
                    .cloned()
                    .chain(outputs.iter().cloned())
                    .collect(),
            };
            v.with_files(files)
        });
        drop(manifest);
        if moved.is_none() {
            for id in inputs {
                let path = self.sstable_path(*id);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing compacted sstable");
                }
            }
        }
        Ok(())
    }
}
