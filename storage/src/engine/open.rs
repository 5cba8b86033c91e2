//! Opening an engine: lock the directory, load the manifest, open the SSTables, replay the
//! commit log into memtables, start the background threads.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::table::{decode_options, Table, TableFile, TableOptions, TableVersion};
use super::{
    background, batch, Background, Engine, EngineOptions, Inner, RecoveryReport, WriteState,
};
use crate::commitlog::{self, CommitLog, CommitLogOptions};
use crate::error::{Error, Result};
use crate::fault::Faults;
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
    if opts.max_frozen_memtables == 0 || opts.memtable_size == 0 {
        return Err(Error::InvalidArgument(
            "max_frozen_memtables and memtable_size must be at least 1".into(),
        ));
    }
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

    // Open the tables and replay the log into their memtables. With `salvage_corrupt_log`
    // a corrupt record mid-log ends the log there (the rest is discarded and reported in
    // the recovery report) and recovery starts over on the shortened log.
    let log_dir = dir.join(COMMITLOG_DIR);
    let mut salvaged: Vec<String> = Vec::new();
    let (tables, max_seqno, to_freeze, report) = loop {
        let loaded = load_tables(dir, &manifest, &opts)?;
        let mut to_freeze = false;
        let replayed = replay_into(&log_dir, &opts, &loaded.by_id, &mut to_freeze);
        match replayed {
            Ok(report) => {
                remove_orphans(dir, &loaded.live_files);
                break (loaded.tables, loaded.max_seqno, to_freeze, report);
            }
            Err(e) if opts.salvage_corrupt_log && salvaged.len() < MAX_SALVAGES => {
                let Some(note) = salvage(&log_dir, &e, &opts.faults)? else {
                    return Err(e);
                };
                tracing::error!(%note, "commit log corruption salvaged: data after it is lost");
                salvaged.push(note);
            }
            Err(e) => return Err(e),
        }
    };
    if let Some((path, offset)) = &report.truncated_tail {
        tracing::warn!(path = %path.display(), offset, "commit log had a torn tail; truncated");
    }
    let last_seqno = max_seqno.max(report.last_seqno.unwrap_or(0));
    let recovery = RecoveryReport {
        truncated_tail: report.truncated_tail.clone(),
        salvaged,
        segments: report.segments,
        records: report.records,
    };
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
        compaction_holds: std::sync::atomic::AtomicUsize::new(0),
        space: super::space::DiskSpace::new(dir, opts.min_free_bytes),
        opts,
    });
    let threads = background::start(&inner)?;
    let engine = Engine {
        inner,
        threads: Mutex::new(threads),
        closed: AtomicBool::new(false),
        recovery,
        _lock: lock_file,
    };
    Ok(engine)
}

/// Deletes SSTable files the manifest does not list: outputs of a flush or compaction that
/// crashed before its manifest update (they hold nothing the manifest and log do not), and
/// ingestions never finished (their callers hold no claim on them: an unfinished ingestion
/// was never acknowledged).
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

/// Most corrupt spots one open will cut out of the log before giving up.
const MAX_SALVAGES: usize = 64;

/// What [`load_tables`] builds from the manifest.
struct LoadedTables {
    tables: HashMap<String, Arc<Table>>,
    by_id: HashMap<u32, (Arc<Table>, u64)>,
    live_files: HashSet<u64>,
    max_seqno: u64,
}

/// Opens every table of the manifest with its SSTables; a listed file that is missing or
/// bad is an error.
fn load_tables(dir: &Path, manifest: &Manifest, opts: &EngineOptions) -> Result<LoadedTables> {
    let mut out = LoadedTables {
        tables: HashMap::new(),
        by_id: HashMap::new(),
        live_files: HashSet::new(),
        max_seqno: manifest.last_seqno,
    };
    for tm in &manifest.tables {
        let persisted = decode_options(&tm.options).ok_or_else(|| {
            Error::corruption(
                dir.join("MANIFEST"),
                0,
                format!("bad options of table {:?}", tm.name),
            )
        })?;
        let (compaction, metadata, prefix_bloom_len) = (
            persisted.compaction,
            persisted.metadata,
            persisted.prefix_bloom_len,
        );
        let merge = (opts.merge_resolver)(&tm.name, &metadata);
        let mut files = Vec::with_capacity(tm.sstables.len());
        for s in &tm.sstables {
            let path = sstable_path(dir, s.file_id);
            let sst = SsTable::open(&path)?;
            out.max_seqno = out.max_seqno.max(sst.info().max_seqno);
            out.live_files.insert(s.file_id);
            files.push(Arc::new(TableFile {
                file_id: s.file_id,
                level: s.level,
                sst,
            }));
        }
        TableVersion::sort_files(&mut files);
        let version = TableVersion {
            files,
            ..TableVersion::empty(prefix_bloom_len, opts.memtable_size)
        };
        let options = TableOptions {
            compaction,
            merge,
            metadata,
            prefix_bloom_len,
        };
        let t = Arc::new(Table::new(tm.id, tm.name.clone(), options, version));
        // A table's flushed_seqno is a seqno that was handed out: never restart below it,
        // even when the log records that carried it are gone (dropped table, lost tail,
        // salvage), or new writes would be skipped by the next replay.
        out.max_seqno = out.max_seqno.max(tm.flushed_seqno);
        out.by_id.insert(tm.id, (t.clone(), tm.flushed_seqno));
        out.tables.insert(tm.name.clone(), t);
    }
    Ok(out)
}

/// Replays the commit log into the tables' memtables.
fn replay_into(
    log_dir: &Path,
    opts: &EngineOptions,
    by_id: &HashMap<u32, (Arc<Table>, u64)>,
    to_freeze: &mut bool,
) -> Result<commitlog::ReplayReport> {
    commitlog::replay(log_dir, &opts.faults, |seqno, payload| {
        let ops = batch::decode(payload).ok_or_else(|| {
            Error::corruption(
                log_dir,
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
                *to_freeze = true;
            }
        }
        Ok(())
    })
}

/// Cuts the log at a corrupt record: truncates its segment at the record and deletes
/// every later segment. Returns a description, or `None` when `err` is not a corruption
/// inside a segment file (nothing to salvage).
fn salvage(log_dir: &Path, err: &Error, faults: &Faults) -> Result<Option<String>> {
    let (path, offset) = match err {
        Error::ChecksumMismatch { path, offset, .. } | Error::Corruption { path, offset, .. }
            if path.parent() == Some(log_dir) && path.is_file() =>
        {
            (path.clone(), *offset)
        }
        _ => return Ok(None),
    };
    let name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut later: Vec<PathBuf> = fs::read_dir(log_dir)
        .map_err(|e| Error::io(log_dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n > name.as_os_str()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(commitlog::format::parse_segment_file_name)
                .is_some()
        })
        .collect();
    later.sort();
    if offset <= commitlog::format::SEGMENT_HEADER_LEN as u64 {
        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    } else {
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.set_len(offset).map_err(|e| Error::io(&path, e))?;
        faults.sync_all(&f).map_err(|e| Error::io(&path, e))?;
    }
    for p in &later {
        fs::remove_file(p).map_err(|e| Error::io(p, e))?;
    }
    faults
        .sync_dir(log_dir)
        .map_err(|e| Error::io(log_dir, e))?;
    Ok(Some(format!(
        "{err}; log cut at {}:{offset}, {} later segment(s) removed",
        path.display(),
        later.len()
    )))
}
