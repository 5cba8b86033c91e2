//! Compaction planning: which SSTables of a table to merge next, and where the output goes.
//!
//! Pure functions over a description of the table's files, with no I/O, so strategies are
//! unit-tested (and could be simulated) without an engine. The engine's compaction thread
//! asks [`plan`] for work after every flush and compaction and executes the plan.
//!
//! - **Size-tiered** (Cassandra's STCS, the default): files of similar size are grouped in
//!   buckets; a bucket with at least `min_threshold` files is merged into one file. Write
//!   amplification is low (each byte is rewritten about log_{4}(N) times); reads may
//!   consult several files, which the bloom filters keep cheap.
//! - **Leveled** (LevelDB / Cassandra's LCS): level 0 holds flushed files that may overlap;
//!   levels 1.. hold non-overlapping files, each level `level_multiplier` times larger than
//!   the one above. Level 0 is merged into level 1 once it has `l0_trigger` files; a level
//!   over its size budget pushes one file (round-robin by key) into the next. Reads touch at
//!   most one file per level; writes cost more.
//!
//! Tombstones are dropped only where the engine can prove no older version lives outside
//! the compaction (see `Engine`'s per-key bottommost check), never by the plan alone.

use std::collections::HashMap;

/// What the planner needs to know of one SSTable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDesc {
    /// The file's id (its name is derived from it).
    pub file_id: u64,
    /// Its level (always 0 under size-tiered).
    pub level: u32,
    /// Its size in bytes.
    pub size: u64,
    /// Smallest key.
    pub smallest: Vec<u8>,
    /// Largest key.
    pub largest: Vec<u8>,
}

/// A compaction strategy and its parameters, chosen per table.
#[derive(Debug, Clone, PartialEq)]
pub enum CompactionStrategy {
    /// Cassandra's size-tiered strategy.
    SizeTiered {
        /// Smallest number of similar files worth merging (Cassandra: 4).
        min_threshold: usize,
        /// Most files merged at once (Cassandra: 32).
        max_threshold: usize,
        /// A file joins a bucket when its size is at least `bucket_low` x the bucket mean...
        bucket_low: f64,
        /// ...and at most `bucket_high` x the mean.
        bucket_high: f64,
        /// Files smaller than this all share one bucket (bytes).
        min_sstable_size: u64,
    },
    /// LevelDB's leveled strategy.
    Leveled {
        /// Level-0 file count that triggers a merge into level 1.
        l0_trigger: usize,
        /// Target size of the files levels 1.. are cut into (bytes).
        target_file_size: u64,
        /// Size budget of level 1 (bytes); level n gets `base * multiplier^(n-1)`.
        level_base_bytes: u64,
        /// Growth factor between levels.
        level_multiplier: u64,
    },
}

impl CompactionStrategy {
    /// Size-tiered with Cassandra's defaults.
    pub fn size_tiered() -> Self {
        CompactionStrategy::SizeTiered {
            min_threshold: 4,
            max_threshold: 32,
            bucket_low: 0.5,
            bucket_high: 1.5,
            min_sstable_size: 50 << 20,
        }
    }

    /// Leveled with LevelDB-like defaults scaled to Sibyl's 64 MiB memtables.
    pub fn leveled() -> Self {
        CompactionStrategy::Leveled {
            l0_trigger: 4,
            target_file_size: 64 << 20,
            level_base_bytes: 256 << 20,
            level_multiplier: 10,
        }
    }

    /// The short name used in table options (`size_tiered` / `leveled`).
    pub fn name(&self) -> &'static str {
        match self {
            CompactionStrategy::SizeTiered { .. } => "size_tiered",
            CompactionStrategy::Leveled { .. } => "leveled",
        }
    }

    /// Parses a short name into the strategy with default parameters.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "size_tiered" | "stcs" | "SizeTieredCompactionStrategy" => Some(Self::size_tiered()),
            "leveled" | "lcs" | "LeveledCompactionStrategy" => Some(Self::leveled()),
            _ => None,
        }
    }

    /// The level freshly flushed files go to.
    pub fn flush_level(&self) -> u32 {
        0
    }

    /// Output file size limit for compactions (None: one output file).
    pub fn target_file_size(&self) -> Option<u64> {
        match self {
            CompactionStrategy::SizeTiered { .. } => None,
            CompactionStrategy::Leveled {
                target_file_size, ..
            } => Some(*target_file_size),
        }
    }
}

impl Default for CompactionStrategy {
    fn default() -> Self {
        Self::size_tiered()
    }
}

/// One unit of compaction work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactionPlan {
    /// Merge `inputs` into new files at `output_level`.
    Merge {
        /// Files to merge.
        inputs: Vec<u64>,
        /// Level of the output files.
        output_level: u32,
    },
    /// Re-level one file without rewriting it (nothing overlaps it below).
    Move {
        /// The file.
        file_id: u64,
        /// Its new level.
        to_level: u32,
    },
}

/// Round-robin position per level for leveled compaction: the largest key compacted last.
pub type CompactCursors = HashMap<u32, Vec<u8>>;

/// Picks the next compaction for a table, or `None` when nothing is due.
pub fn plan(
    strategy: &CompactionStrategy,
    files: &[FileDesc],
    cursors: &CompactCursors,
) -> Option<CompactionPlan> {
    match strategy {
        CompactionStrategy::SizeTiered {
            min_threshold,
            max_threshold,
            bucket_low,
            bucket_high,
            min_sstable_size,
        } => plan_size_tiered(
            files,
            *min_threshold,
            *max_threshold,
            *bucket_low,
            *bucket_high,
            *min_sstable_size,
        ),
        CompactionStrategy::Leveled {
            l0_trigger,
            level_base_bytes,
            level_multiplier,
            ..
        } => plan_leveled(
            files,
            *l0_trigger,
            *level_base_bytes,
            *level_multiplier,
            cursors,
        ),
    }
}

/// A major compaction: every file merged into the bottom (size-tiered: one file at level 0;
/// leveled: the deepest level in use, at least 1).
pub fn plan_major(strategy: &CompactionStrategy, files: &[FileDesc]) -> Option<CompactionPlan> {
    if files.is_empty() {
        return None;
    }
    let output_level = match strategy {
        CompactionStrategy::SizeTiered { .. } => 0,
        CompactionStrategy::Leveled { .. } => {
            files.iter().map(|f| f.level).max().unwrap_or(1).max(1)
        }
    };
    if files.len() == 1 && files.iter().all(|f| f.level == output_level) {
        return None;
    }
    Some(CompactionPlan::Merge {
        inputs: files.iter().map(|f| f.file_id).collect(),
        output_level,
    })
}

fn plan_size_tiered(
    files: &[FileDesc],
    min_threshold: usize,
    max_threshold: usize,
    bucket_low: f64,
    bucket_high: f64,
    min_sstable_size: u64,
) -> Option<CompactionPlan> {
    let mut sorted: Vec<&FileDesc> = files.iter().collect();
    sorted.sort_by_key(|f| (f.size, f.file_id));
    // Buckets as in Cassandra's SizeTieredCompactionStrategy.getBuckets.
    let mut buckets: Vec<(f64, Vec<&FileDesc>)> = Vec::new();
    for f in sorted {
        let size = f.size as f64;
        let slot = buckets.iter_mut().find(|(avg, _)| {
            (size >= avg * bucket_low && size <= avg * bucket_high)
                || (f.size < min_sstable_size && *avg < min_sstable_size as f64)
        });
        match slot {
            Some((avg, members)) => {
                let total = *avg * members.len() as f64 + size;
                members.push(f);
                *avg = total / members.len() as f64;
            }
            None => buckets.push((size, vec![f])),
        }
    }
    // The most interesting bucket: enough files; prefer more files, then smaller ones.
    let best = buckets
        .into_iter()
        .filter(|(_, m)| m.len() >= min_threshold.max(2))
        .max_by(|(a_avg, a), (b_avg, b)| {
            a.len()
                .min(max_threshold)
                .cmp(&b.len().min(max_threshold))
                .then(b_avg.total_cmp(a_avg))
        })?;
    let mut members = best.1;
    members.truncate(max_threshold);
    Some(CompactionPlan::Merge {
        inputs: members.iter().map(|f| f.file_id).collect(),
        output_level: 0,
    })
}

fn overlaps(f: &FileDesc, smallest: &[u8], largest: &[u8]) -> bool {
    f.smallest.as_slice() <= largest && f.largest.as_slice() >= smallest
}

fn plan_leveled(
    files: &[FileDesc],
    l0_trigger: usize,
    level_base_bytes: u64,
    level_multiplier: u64,
    cursors: &CompactCursors,
) -> Option<CompactionPlan> {
    let level0: Vec<&FileDesc> = files.iter().filter(|f| f.level == 0).collect();
    if level0.len() >= l0_trigger.max(1) {
        let smallest = level0.iter().map(|f| f.smallest.as_slice()).min()?;
        let largest = level0.iter().map(|f| f.largest.as_slice()).max()?;
        let mut inputs: Vec<u64> = level0.iter().map(|f| f.file_id).collect();
        inputs.extend(
            files
                .iter()
                .filter(|f| f.level == 1 && overlaps(f, smallest, largest))
                .map(|f| f.file_id),
        );
        return Some(CompactionPlan::Merge {
            inputs,
            output_level: 1,
        });
    }
    let max_level = files.iter().map(|f| f.level).max().unwrap_or(0);
    // The level most over its budget.
    let mut best: Option<(f64, u32)> = None;
    let mut budget = level_base_bytes.max(1);
    for level in 1..=max_level {
        let size: u64 = files
            .iter()
            .filter(|f| f.level == level)
            .map(|f| f.size)
            .sum();
        let score = size as f64 / budget as f64;
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
        budget = budget.saturating_mul(level_multiplier.max(2));
    }
    let (_, level) = best?;
    let mut in_level: Vec<&FileDesc> = files.iter().filter(|f| f.level == level).collect();
    in_level.sort_by(|a, b| a.smallest.cmp(&b.smallest));
    let pick = match cursors.get(&level) {
        Some(after) => in_level
            .iter()
            .find(|f| f.smallest.as_slice() > after.as_slice())
            .or(in_level.first()),
        None => in_level.first(),
    }?;
    let below: Vec<u64> = files
        .iter()
        .filter(|f| f.level == level + 1 && overlaps(f, &pick.smallest, &pick.largest))
        .map(|f| f.file_id)
        .collect();
    if below.is_empty() {
        return Some(CompactionPlan::Move {
            file_id: pick.file_id,
            to_level: level + 1,
        });
    }
    let mut inputs = vec![pick.file_id];
    inputs.extend(below);
    Some(CompactionPlan::Merge {
        inputs,
        output_level: level + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: u64, level: u32, size: u64, lo: &str, hi: &str) -> FileDesc {
        FileDesc {
            file_id: id,
            level,
            size,
            smallest: lo.as_bytes().to_vec(),
            largest: hi.as_bytes().to_vec(),
        }
    }

    #[test]
    fn size_tiered_waits_for_min_threshold() {
        let s = CompactionStrategy::size_tiered();
        let files: Vec<_> = (0..3).map(|i| file(i, 0, 1 << 20, "a", "z")).collect();
        assert_eq!(plan(&s, &files, &CompactCursors::new()), None);
    }

    #[test]
    fn size_tiered_merges_similar_sizes_only() {
        let s = CompactionStrategy::SizeTiered {
            min_threshold: 4,
            max_threshold: 32,
            bucket_low: 0.5,
            bucket_high: 1.5,
            min_sstable_size: 1,
        };
        let mut files: Vec<_> = (0..4).map(|i| file(i, 0, 100 << 20, "a", "z")).collect();
        files.push(file(9, 0, 1 << 30, "a", "z"));
        match plan(&s, &files, &CompactCursors::new()) {
            Some(CompactionPlan::Merge {
                mut inputs,
                output_level,
            }) => {
                inputs.sort();
                assert_eq!(inputs, vec![0, 1, 2, 3]);
                assert_eq!(output_level, 0);
            }
            other => panic!("unexpected plan {other:?}"),
        }
    }

    #[test]
    fn leveled_merges_level0_with_overlapping_level1() {
        let s = CompactionStrategy::leveled();
        let mut files: Vec<_> = (0..4).map(|i| file(i, 0, 1 << 20, "c", "f")).collect();
        files.push(file(10, 1, 1 << 20, "a", "b"));
        files.push(file(11, 1, 1 << 20, "d", "e"));
        match plan(&s, &files, &CompactCursors::new()) {
            Some(CompactionPlan::Merge {
                mut inputs,
                output_level,
            }) => {
                inputs.sort();
                assert_eq!(inputs, vec![0, 1, 2, 3, 11]);
                assert_eq!(output_level, 1);
            }
            other => panic!("unexpected plan {other:?}"),
        }
    }

    #[test]
    fn leveled_moves_a_file_when_nothing_overlaps_below() {
        let s = CompactionStrategy::Leveled {
            l0_trigger: 4,
            target_file_size: 1,
            level_base_bytes: 10,
            level_multiplier: 10,
        };
        let files = vec![file(1, 1, 20, "a", "b"), file(2, 2, 5, "x", "z")];
        assert_eq!(
            plan(&s, &files, &CompactCursors::new()),
            Some(CompactionPlan::Move {
                file_id: 1,
                to_level: 2
            })
        );
    }

    #[test]
    fn leveled_round_robins_with_cursor() {
        let s = CompactionStrategy::Leveled {
            l0_trigger: 4,
            target_file_size: 1,
            level_base_bytes: 10,
            level_multiplier: 10,
        };
        let files = vec![file(1, 1, 20, "a", "b"), file(2, 1, 20, "c", "d")];
        let mut cursors = CompactCursors::new();
        cursors.insert(1, b"b".to_vec());
        assert_eq!(
            plan(&s, &files, &cursors),
            Some(CompactionPlan::Move {
                file_id: 2,
                to_level: 2
            })
        );
    }

    #[test]
    fn major_plan_takes_everything() {
        let files = vec![file(1, 0, 1, "a", "b"), file(2, 0, 1, "c", "d")];
        assert_eq!(
            plan_major(&CompactionStrategy::size_tiered(), &files),
            Some(CompactionPlan::Merge {
                inputs: vec![1, 2],
                output_level: 0
            })
        );
        assert_eq!(
            plan_major(&CompactionStrategy::size_tiered(), &files[..1]),
            None
        );
    }
}
