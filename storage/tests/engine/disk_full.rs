//! A full disk is an expected condition: writes and background jobs that meet it fail
//! with `Error::DiskFull`, nothing is poisoned, acknowledged writes stay, and the engine
//! recovers by itself once space is freed. Through the fault seam, and on a real tmpfs
//! where this process may mount one.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tmpfs::Tmpfs;
use sibyl_storage::fault::Faults;
use sibyl_storage::{Engine, EngineOptions, Error, SyncMode, TableOptions};

/// How long a test polls for the engine to recover by itself (its first retry comes
/// after one second).
const RECOVERY_DEADLINE: Duration = Duration::from_secs(20);

fn open_faulty(dir: &Path, faults: &Arc<Faults>, opts: EngineOptions) -> Engine {
    let e = Engine::open(
        dir,
        EngineOptions {
            faults: faults.clone(),
            ..opts
        },
    )
    .expect("open engine");
    e.create_table("t", TableOptions::default())
        .or_else(|err| match err {
            Error::TableExists { .. } => Ok(()),
            err => Err(err),
        })
        .expect("create");
    e
}

fn reopen(dir: &Path) -> Engine {
    Engine::open(dir, EngineOptions::default()).expect("reopen")
}

/// Polls `cond` until it holds or the deadline passes.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + RECOVERY_DEADLINE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {RECOVERY_DEADLINE:?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn disk_full_commitlog_refuses_the_write_then_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = EngineOptions {
        sync: SyncMode::Batch,
        ..EngineOptions::default()
    };
    let e = open_faulty(dir.path(), &faults, opts);
    e.put("t", b"before", b"1").unwrap();
    faults.set_disk_full(true);
    let err = e.put("t", b"refused", b"2").unwrap_err();
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    assert!(err.to_string().contains("not applied"), "{err}");
    assert!(!e.is_poisoned());
    assert!(e.health().writes_refused.is_some());
    assert_eq!(e.get("t", b"refused").unwrap(), None, "nothing applied");
    faults.set_disk_full(false);
    e.put("t", b"after", b"3").unwrap();
    assert!(!e.health().is_degraded(), "{:?}", e.health());
    e.close().unwrap();
    drop(e);
    let e = reopen(dir.path());
    assert_eq!(e.get("t", b"before").unwrap(), Some(b"1".to_vec()));
    assert_eq!(e.get("t", b"refused").unwrap(), None);
    assert_eq!(e.get("t", b"after").unwrap(), Some(b"3".to_vec()));
}

#[test]
fn disk_full_flush_is_retried_in_the_background_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = open_faulty(dir.path(), &faults, EngineOptions::default());
    e.put("t", b"a", b"1").unwrap();
    faults.set_disk_full(true);
    let err = e.flush(None).unwrap_err();
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    let blocked = e.health().flush_blocked.expect("flush blocked");
    assert!(blocked.needed > 0, "{blocked:?}");
    assert!(!e.is_poisoned());
    // Space comes back: the commit log takes writes at once, the flush on its retry.
    faults.set_disk_full(false);
    e.put("t", b"b", b"2").unwrap();
    eventually("the flush is retried", || {
        e.health().flush_blocked.is_none() && e.stats("t").unwrap().sstables == 1
    });
    e.close().unwrap();
    drop(e);
    let e = reopen(dir.path());
    assert_eq!(e.get("t", b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(e.get("t", b"b").unwrap(), Some(b"2".to_vec()));
}

#[test]
fn disk_full_compaction_fails_without_poisoning_and_succeeds_later() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = EngineOptions {
        auto_compaction: false,
        ..EngineOptions::default()
    };
    let e = open_faulty(dir.path(), &faults, opts);
    for i in 0..3u32 {
        e.put("t", format!("k{i}").as_bytes(), b"v").unwrap();
        e.flush(None).unwrap();
    }
    faults.set_disk_full(true);
    let err = e.compact("t").unwrap_err();
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    assert!(!e.is_poisoned());
    assert_eq!(e.stats("t").unwrap().sstables, 3, "inputs kept");
    assert_eq!(
        std::fs::read_dir(dir.path().join("sstables"))
            .unwrap()
            .count(),
        3,
        "partial output removed"
    );
    faults.set_disk_full(false);
    e.put("t", b"later", b"v").unwrap();
    e.compact("t").unwrap();
    assert_eq!(e.stats("t").unwrap().sstables, 1);
    for i in 0..3u32 {
        assert_eq!(
            e.get("t", format!("k{i}").as_bytes()).unwrap(),
            Some(b"v".to_vec())
        );
    }
}

#[test]
fn disk_full_reserve_refuses_writes_below_it_but_lets_flushes_run() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = EngineOptions {
        min_free_bytes: 1 << 20,
        ..EngineOptions::default()
    };
    let e = open_faulty(dir.path(), &faults, opts);
    e.put("t", b"a", b"1").unwrap();
    faults.set_free_bytes(Some(512 << 10));
    let mut refusal = None;
    eventually("writes are refused below the reserve", || {
        if let Err(err) = e.put("t", b"x", b"y") {
            refusal = Some(err);
        }
        refusal.is_some()
    });
    let err = refusal.unwrap();
    assert!(
        matches!(err, Error::DiskFull { reserve, free, .. } if reserve == 1 << 20 && free == 512 << 10),
        "{err}"
    );
    assert!(e.health().writes_refused.is_some());
    e.flush(None).expect("flushes are not held to the reserve");
    faults.set_free_bytes(None);
    e.put("t", b"b", b"2")
        .expect("accepted again once space is back");
    assert!(e.health().writes_refused.is_none());
}

#[test]
fn disk_full_fsync_failure_still_poisons_and_names_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = EngineOptions {
        sync: SyncMode::Batch,
        ..EngineOptions::default()
    };
    let e = open_faulty(dir.path(), &faults, opts);
    faults.set_fail_fsync(true);
    let first = e.put("t", b"k", b"v").unwrap_err();
    faults.set_fail_fsync(false);
    let text = first.to_string();
    assert!(text.contains("first failure: fsync of"), "{text}");
    assert!(!text.contains("poisoned by"), "{text}");
    let later = e.put("t", b"k2", b"v").unwrap_err();
    assert_eq!(
        later.to_string(),
        text,
        "later errors name the same first failure"
    );
    assert!(e.health().poisoned.is_some());
    assert!(
        matches!(e.close(), Err(Error::Poisoned { .. })),
        "a close that could not sync says so"
    );
    assert!(
        e.close().is_ok(),
        "a second close (drop) has nothing more to say"
    );
}

#[test]
fn disk_full_on_a_real_tmpfs_keeps_every_acknowledged_write() {
    let Some(mnt) = Tmpfs::mount_or_skip("2m") else {
        return;
    };
    let dir = mnt.path().join("data");
    let acked = fill_then_free(&mnt, &dir);
    let e = reopen(&dir);
    for i in &acked {
        assert!(
            e.get("t", &i.to_be_bytes()).unwrap().is_some(),
            "acknowledged {i} lost"
        );
    }
}

/// Writes into `dir` on `mnt` until the disk refuses three writes,
/// grows the tmpfs, writes ten more; returns the keys acknowledged.
fn fill_then_free(mnt: &Tmpfs, dir: &Path) -> Vec<u32> {
    let e = Engine::open(
        dir,
        EngineOptions {
            sync: SyncMode::Batch,
            segment_size: 256 << 10,
            ..EngineOptions::default()
        },
    )
    .expect("open");
    e.create_table("t", TableOptions::default()).unwrap();
    let value = vec![7u8; 3000];
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..2000u32 {
        match e.put("t", &i.to_be_bytes(), &value) {
            Ok(()) => acked.push(i),
            Err(Error::DiskFull { .. }) => {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            Err(err) => panic!("write {i}: {err}"),
        }
    }
    assert_eq!(refused, 3, "the 2 MiB disk filled up");
    assert!(!e.is_poisoned());
    mnt.resize("16m");
    for i in 5000..5010u32 {
        e.put("t", &i.to_be_bytes(), &value)
            .expect("accepted once space is back");
        acked.push(i);
    }
    e.close().unwrap();
    acked
}

#[test]
fn disk_full_compaction_on_a_real_tmpfs_blocks_only_compaction_until_space_returns() {
    let Some(mnt) = Tmpfs::mount_or_skip("16m") else {
        return;
    };
    let dir = mnt.path().join("data");
    let e = Engine::open(
        &dir,
        EngineOptions {
            sync: SyncMode::Batch,
            segment_size: 64 << 10,
            ..EngineOptions::default()
        },
    )
    .expect("open");
    e.create_table("t", TableOptions::default()).unwrap();
    let value = vec![5u8; 1024];
    let put_run = |run: u32| {
        for i in 0..250u32 {
            e.put("t", &(run * 1000 + i).to_be_bytes(), &value).unwrap();
        }
    };
    // Three SSTables of about 256 KiB: one short of a size-tiered compaction.
    for run in 0..3 {
        put_run(run);
        e.flush(None).unwrap();
    }
    put_run(3);
    // Leave 400 KiB: room for the fourth flush, not for merging the four tables (1 MiB).
    let free = Faults::default().free_bytes(mnt.path()).unwrap();
    let filler = mnt.path().join("filler");
    std::fs::write(&filler, vec![0u8; (free - (400 << 10)) as usize]).unwrap();
    e.flush(None).expect("the flush fits");
    eventually("the compaction meets the full disk", || {
        e.health().compaction_blocked.is_some()
    });
    assert!(!e.is_poisoned());
    e.put("t", b"during", b"v")
        .expect("writes go on while the log has room");
    std::fs::remove_file(&filler).unwrap();
    eventually("the compaction is retried once space is back", || {
        e.health().compaction_blocked.is_none() && e.stats("t").unwrap().sstables == 1
    });
    e.close().unwrap();
    drop(e);
    let e = reopen(&dir);
    for run in 0..4u32 {
        for i in 0..250u32 {
            assert!(e
                .get("t", &(run * 1000 + i).to_be_bytes())
                .unwrap()
                .is_some());
        }
    }
    assert_eq!(e.get("t", b"during").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn disk_full_create_table_is_refused_without_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let e = open_faulty(dir.path(), &faults, EngineOptions::default());
    faults.set_disk_full(true);
    let err = e.create_table("u", TableOptions::default()).unwrap_err();
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    assert!(!e.is_poisoned());
    faults.set_disk_full(false);
    e.create_table("u", TableOptions::default()).unwrap();
    e.put("u", b"k", b"v").unwrap();
}
