//! Opening an engine: lock the directory, load the manifest, open the SSTables, replay the
//! commit log into memtables, start the background threads.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::table::{decode_options, Table, TableFile, TableOptions, TableVersion};
use super::{background, batch, Background, Engine, EngineOptions, Inner, WriteState};
use crate::commitlog::{self, CommitLog, CommitLogOptions};
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::sstable::SsTable;
use crate::types::Entry;

/// Sub-directory of the commit log segments.
pub(crate) const COMMITLOG_DIR: &str = "commitlog";
/// Sub-directory of the SSTables.
pub(crate) const SSTABLE_DIR: &str = "sstables";
/// Extension of SSTable files.
const SSTABLE_EXT: &str = "sst";

/// Path of SSTable `file_id` under the engine directory `dir`.
pub(crate) fn sstable_path(dir: &Path, file_id: u64) -> PathBuf {
    dir.join(SSTABLE_DIR)
        .join(format!("{file_id:012}.{SSTABLE_EXT}"))
}

fn lock_dir(dir: &Path) -> Result<fs::File> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // SAFETY: flock(2) only reads the descriptor, which `f` owns and keeps open for the
    // duration of the call; the lock lives as long as `f` (held by the Engine).
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::Locked {
            path: dir.to_path_buf(),
        });
    }
    Ok(f)
}

pub(crate) fn open(dir: &Path, opts: EngineOptions) -> Result<Engine> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let lock_file = lock_dir(dir)?;
    for sub in [COMMITLOG_DIR, SSTABLE_DIR] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    let manifest = manifest::load(dir)?.unwrap_or_else(|| Manifest {
        next_file_id: 1,
        next_table_id: 1,
        ..Manifest::default()
    });

    // Open every table's SSTables; a listed file that is missing or bad is an error.
    let mut tables: HashMap<String, Arc<Table>> = HashMap::new();
    let mut by_id: HashMap<u32, (Arc<Table>, u64)> = HashMap::new();
    let mut live_files: HashSet<u64> = HashSet::new();
    let mut max_seqno = manifest.last_seqno;
    for tm in &manifest.tables {
        let (compaction, metadata) = decode_options(&tm.options).ok_or_else(|| {
            Error::corruption(
                dir.join("MANIFEST"),
                0,
                format!("bad options of table {:?}", tm.name),
            )
        })?;
        let merge = (opts.merge_resolver)(&tm.name, &metadata);
        let mut files = Vec::with_capacity(tm.sstables.len());
        for s in &tm.sstables {
            let path = sstable_path(dir, s.file_id);
            let sst = SsTable::open(&path)?;
            max_seqno = max_seqno.max(sst.info().max_seqno);
            live_files.insert(s.file_id);
            files.push(Arc::new(TableFile {
                file_id: s.file_id,
                level: s.level,
                sst,
            }));
        }
        TableVersion::sort_files(&mut files);
        let version = TableVersion {
            files,
            ..TableVersion::empty()
        };
        let options = TableOptions {
            compaction,
            merge,
            metadata,
        };
        let t = Arc::new(Table::new(tm.id, tm.name.clone(), options, version));
        by_id.insert(tm.id, (t.clone(), tm.flushed_seqno));
        tables.insert(tm.name.clone(), t);
    }
    remove_orphans(dir, &live_files);

    // Replay the commit log into the memtables.
    let log_dir = dir.join(COMMITLOG_DIR);
    let mut to_freeze = false;
    let report = commitlog::replay(&log_dir, &opts.faults, |seqno, payload| {
        let ops = batch::decode(payload).ok_or_else(|| {
            Error::corruption(
                &log_dir,
                0,
                format!("undecodable write batch at seqno {seqno}"),
            )
        })?;
        for op in ops {
            let Some((t, flushed)) = by_id.get(&op.table_id) else {
                continue; // a dropped table
            };
            if seqno <= *flushed {
                continue;
            }
            let entry = match op.entry {
                Some(v) => Entry::Value(v.to_vec()),
                None => Entry::Tombstone,
            };
            let v = t.version();
            v.active.apply(op.key, seqno, entry, t.merge.as_ref());
            if v.active.approximate_size() >= opts.memtable_size {
                t.freeze();
                to_freeze = true;
            }
        }
        Ok(())
    })?;
    if let Some((path, offset)) = &report.truncated_tail {
        tracing::warn!(path = %path.display(), offset, "commit log had a torn tail; truncated");
    }
    let last_seqno = max_seqno.max(report.last_seqno.unwrap_or(0));
    tracing::info!(
        dir = %dir.display(),
        tables = tables.len(),
        segments = report.segments,
        records = report.records,
        last_seqno,
        "storage engine recovered"
    );

    let log = CommitLog::open(
        &log_dir,
        CommitLogOptions {
            segment_size: opts.segment_size,
            sync: opts.sync,
        },
        opts.faults.clone(),
        report.next_segment_id,
    )?;
    let inner = Arc::new(Inner {
        dir: dir.to_path_buf(),
        log,
        write: Mutex::new(WriteState { last_seqno }),
        flushed: Condvar::new(),
        tables: RwLock::new(tables),
        manifest: Mutex::new(manifest),
        bg: Mutex::new(Background {
            flush_pending: to_freeze,
            compaction_pending: true,
            ..Background::default()
        }),
        bg_cv: Condvar::new(),
        poisoned: AtomicBool::new(false),
        poison_reason: Mutex::new(None),
        compacting: Mutex::new(()),
        segment_gc: Mutex::new(()),
        opts,
    });
    let threads = background::start(&inner)?;
    let engine = Engine {
        inner,
        threads: Mutex::new(threads),
        _lock: lock_file,
    };
    Ok(engine)
}

/// Deletes SSTable files the manifest does not list: outputs of a flush or compaction that
/// crashed before its manifest update. They hold nothing the manifest and log do not.
fn remove_orphans(dir: &Path, live: &HashSet<u64>) {
    let sst_dir = dir.join(SSTABLE_DIR);
    let Ok(entries) = fs::read_dir(&sst_dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok());
        let is_sst = path.extension().and_then(|x| x.to_str()) == Some(SSTABLE_EXT);
        match id {
            Some(id) if is_sst && live.contains(&id) => {}
            _ => {
                tracing::warn!(path = %path.display(), "removing file not listed in the manifest");
                if let Err(err) = fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %err, "could not remove orphan");
                }
            }
        }
    }
}
