//! Unit tests of the commit log: append/replay, torn tails, corruption, group commit,
//! poisoning and segment deletion.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::{segment_file_name, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::*;
use crate::error::Error;
use crate::fault::Faults;
use crate::types::SeqNo;

fn payload(i: u64) -> Vec<u8> {
    format!("record-{i}-")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

fn batch_opts(segment_size: u64) -> CommitLogOptions {
    CommitLogOptions {
        segment_size,
        sync: SyncMode::Batch,
    }
}

fn open(dir: &Path, opts: CommitLogOptions, faults: &Arc<Faults>, first: u64) -> CommitLog {
    CommitLog::open(dir, opts, Arc::clone(faults), first).expect("open")
}

type Records = Vec<(SeqNo, Vec<u8>)>;

fn replay_all(dir: &Path) -> crate::Result<(Records, ReplayReport)> {
    let mut out = Vec::new();
    let report = replay(dir, &Faults::default(), |s, p| {
        out.push((s, p.to_vec()));
        Ok(())
    })?;
    Ok((out, report))
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_file_name(id))
}

/// Writes records 1..=n to a fresh log in `dir` and closes it; returns the tickets.
fn write_records(dir: &Path, n: u64, segment_size: u64) -> Vec<AppendTicket> {
    let faults = Arc::new(Faults::default());
    let log = open(dir, batch_opts(segment_size), &faults, 1);
    let tickets = (1..=n)
        .map(|i| log.append(i, &payload(i)).expect("append"))
        .collect();
    log.close().expect("close");
    tickets
}

fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn commitlog_round_trips_across_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 200, 512);
    let (records, report) = replay_all(tmp.path()).expect("replay");
    let expected: Vec<_> = (1..=200).map(|i| (i, payload(i))).collect();
    assert_eq!(records, expected);
    assert!(report.segments > 5, "segments: {}", report.segments);
    assert_eq!(report.records, 200);
    assert_eq!(report.last_seqno, Some(200));
    assert_eq!(report.truncated_tail, None);
    assert_eq!(report.next_segment_id, report.segments as u64 + 1);
}

#[test]
fn commitlog_replay_of_missing_dir_is_empty() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (records, report) = replay_all(&tmp.path().join("nope")).expect("replay");
    assert!(records.is_empty());
    assert_eq!(report.segments, 0);
    assert_eq!(report.next_segment_id, 1);
}

#[test]
fn commitlog_torn_tail_at_every_offset_is_truncated() {
    let src = tempfile::tempdir().expect("tempdir");
    let tickets = write_records(src.path(), 3, 1 << 20);
    let original = fs::read(seg_path(src.path(), 1)).expect("read");
    let valid_end = tickets[1].end_offset();
    assert_eq!(tickets[2].end_offset(), original.len() as u64);
    for cut in valid_end + 1..original.len() as u64 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = seg_path(tmp.path(), 1);
        fs::write(&path, &original[..cut as usize]).expect("write");
        let (records, report) = replay_all(tmp.path()).expect("replay");
        assert_eq!(records, vec![(1, payload(1)), (2, payload(2))], "cut {cut}");
        assert_eq!(report.truncated_tail, Some((path.clone(), valid_end)));
        assert_eq!(fs::metadata(&path).expect("stat").len(), valid_end);
    }
}

#[test]
fn commitlog_zero_filled_tail_is_truncated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tickets = write_records(tmp.path(), 3, 1 << 20);
    let path = seg_path(tmp.path(), 1);
    let mut bytes = fs::read(&path).expect("read");
    // The last record's pages never reached the disk, and the file grew by zeros.
    let valid_end = tickets[1].end_offset() as usize;
    bytes[valid_end..].fill(0);
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, &bytes).expect("write");
    let (records, report) = replay_all(tmp.path()).expect("replay");
    assert_eq!(records.len(), 2);
    assert_eq!(
        report.truncated_tail,
        Some((path.clone(), valid_end as u64))
    );
    assert_eq!(fs::metadata(&path).expect("stat").len(), valid_end as u64);
}

#[test]
fn commitlog_torn_segment_header_removes_the_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 3, 1 << 20);
    let torn = seg_path(tmp.path(), 2);
    fs::write(&torn, [b'S', b'B', b'Y']).expect("write");
    let (records, report) = replay_all(tmp.path()).expect("replay");
    assert_eq!(records.len(), 3);
    assert_eq!(report.truncated_tail, Some((torn.clone(), 0)));
    assert!(!torn.exists());
    assert_eq!(report.next_segment_id, 3);
}

#[test]
fn commitlog_bit_flip_mid_segment_is_checksum_mismatch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tickets = write_records(tmp.path(), 5, 1 << 20);
    let path = seg_path(tmp.path(), 1);
    let mut bytes = fs::read(&path).expect("read");
    let record_start = tickets[1].end_offset();
    bytes[record_start as usize + RECORD_HEADER_LEN + 3] ^= 0x10;
    fs::write(&path, &bytes).expect("write");
    match replay_all(tmp.path()) {
        Err(Error::ChecksumMismatch {
            path: p, offset, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, record_start);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert_eq!(
        fs::read(&path).expect("read"),
        bytes,
        "file must be untouched"
    );
}

#[test]
fn commitlog_truncated_non_last_segment_is_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 50, 256);
    let path = seg_path(tmp.path(), 1);
    let len = fs::metadata(&path).expect("stat").len();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len - 3).expect("truncate");
    match replay_all(tmp.path()) {
        Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Corruption, got {other:?}"),
    }
}

#[test]
fn commitlog_bad_segment_magic_is_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 5, 1 << 20);
    let path = seg_path(tmp.path(), 1);
    let mut bytes = fs::read(&path).expect("read");
    bytes[0] = b'X';
    fs::write(&path, &bytes).expect("write");
    assert!(matches!(
        replay_all(tmp.path()),
        Err(Error::Corruption { offset: 0, .. })
    ));
}

#[test]
fn commitlog_apply_error_aborts_replay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 10, 1 << 20);
    let mut seen = 0;
    let result = replay(tmp.path(), &Faults::default(), |s, _| {
        seen += 1;
        if s == 4 {
            return Err(Error::InvalidArgument("stop".into()));
        }
        Ok(())
    });
    assert!(matches!(result, Err(Error::InvalidArgument(_))));
    assert_eq!(seen, 4);
}

#[test]
fn commitlog_reopen_continues_after_replayed_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 40, 256);
    let (_, report) = replay_all(tmp.path()).expect("replay");
    let faults = Arc::new(Faults::default());
    let log = open(tmp.path(), batch_opts(256), &faults, report.next_segment_id);
    assert!(matches!(
        log.append(40, b"x"),
        Err(Error::InvalidArgument(_))
    ));
    log.append(41, &payload(41)).expect("append");
    log.close().expect("close");
    let (records, _) = replay_all(tmp.path()).expect("replay");
    assert_eq!(records.len(), 41);
    assert_eq!(records.last(), Some(&(41, payload(41))));
}

#[test]
fn commitlog_open_refuses_existing_segment_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 3, 1 << 20);
    let result = CommitLog::open(tmp.path(), batch_opts(1 << 20), Arc::default(), 1);
    assert!(matches!(result, Err(Error::InvalidArgument(_))));
}

#[test]
fn commitlog_one_fsync_covers_earlier_appends() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let log = open(tmp.path(), batch_opts(1 << 20), &faults, 1);
    let tickets: Vec<_> = (1..=10)
        .map(|i| log.append(i, &payload(i)).expect("append"))
        .collect();
    let before = log.fsync_count();
    log.sync(&tickets[9]).expect("sync");
    assert_eq!(log.fsync_count(), before + 1);
    for t in &tickets {
        assert!(log.is_durable(t));
        log.sync(t).expect("sync");
    }
    assert_eq!(
        log.fsync_count(),
        before + 1,
        "covered tickets need no fsync"
    );
}

#[test]
fn commitlog_group_commit_from_many_threads() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50;
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let log = Arc::new(open(tmp.path(), batch_opts(64 << 10), &faults, 1));
    let next = Arc::new(std::sync::Mutex::new(0u64));
    let before = log.fsync_count();
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let log = Arc::clone(&log);
            let next = Arc::clone(&next);
            std::thread::spawn(move || {
                let mut tickets = Vec::new();
                for _ in 0..PER_THREAD {
                    // Like the engine: seqno assignment and append under one mutex.
                    let ticket = {
                        let mut n = next.lock().expect("lock");
                        *n += 1;
                        log.append(*n, &payload(*n)).expect("append")
                    };
                    log.sync(&ticket).expect("sync");
                    assert!(log.is_durable(&ticket));
                    tickets.push(ticket);
                }
                tickets
            })
        })
        .collect();
    let tickets: Vec<AppendTicket> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("join"))
        .collect();
    let appends = THREADS * PER_THREAD;
    let fsyncs = log.fsync_count() - before;
    assert!(fsyncs <= appends, "{fsyncs} fsyncs for {appends} appends");
    assert!(tickets.iter().all(|t| log.is_durable(t)));
    log.close().expect("close");
    let (records, _) = replay_all(tmp.path()).expect("replay");
    assert_eq!(records.len() as u64, appends);
}

#[test]
fn commitlog_fsync_failure_poisons_batch_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let log = open(tmp.path(), batch_opts(1 << 20), &faults, 1);
    let ticket = log.append(1, b"a").expect("append");
    faults.set_fail_fsync(true);
    assert!(matches!(log.sync(&ticket), Err(Error::Poisoned { .. })));
    assert!(!log.is_durable(&ticket));
    faults.set_fail_fsync(false);
    assert!(log.is_poisoned());
    assert!(matches!(log.append(2, b"b"), Err(Error::Poisoned { .. })));
    assert!(
        matches!(log.sync(&ticket), Err(Error::Poisoned { .. })),
        "an fsync is never retried"
    );
}

#[test]
fn commitlog_write_failure_poisons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let log = open(tmp.path(), batch_opts(1 << 20), &faults, 1);
    log.append(1, b"a").expect("append");
    faults.set_fail_write(true);
    assert!(matches!(log.append(2, b"b"), Err(Error::Poisoned { .. })));
    faults.set_fail_write(false);
    assert!(log.is_poisoned());
    assert!(matches!(log.append(3, b"c"), Err(Error::Poisoned { .. })));
    assert!(matches!(log.sync_all(), Err(Error::Poisoned { .. })));
}

#[test]
fn commitlog_periodic_sync_failure_poisons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let opts = CommitLogOptions {
        segment_size: 1 << 20,
        sync: SyncMode::Periodic {
            interval: Duration::from_millis(1),
        },
    };
    let log = open(tmp.path(), opts, &faults, 1);
    faults.set_fail_fsync(true);
    let ticket = log.append(1, b"a").expect("append");
    poll_until("the periodic thread to poison the log", || {
        log.is_poisoned()
    });
    assert!(matches!(log.sync(&ticket), Err(Error::Poisoned { .. })));
    assert!(matches!(log.append(2, b"b"), Err(Error::Poisoned { .. })));
}

#[test]
fn commitlog_periodic_thread_makes_appends_durable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    let log = open(tmp.path(), CommitLogOptions::default(), &faults, 1);
    let ticket = log.append(1, b"a").expect("append");
    log.sync(&ticket).expect("periodic sync returns at once");
    poll_until("the periodic fsync", || log.is_durable(&ticket));
    log.close().expect("close");
    assert!(matches!(log.append(2, b"b"), Err(Error::Closed)));
}

#[test]
fn commitlog_delete_through_removes_only_covered_closed_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(Faults::default());
    // Each segment holds exactly two 16-byte-payload records.
    let record = (RECORD_HEADER_LEN + 16) as u64;
    let log = open(
        tmp.path(),
        batch_opts(SEGMENT_HEADER_LEN as u64 + 2 * record),
        &faults,
        1,
    );
    for i in 1..=7 {
        log.append(i, &[i as u8; 16]).expect("append");
    }
    // Segments: 1 = {1,2}, 2 = {3,4}, 3 = {5,6}, 4 (active) = {7}.
    assert_eq!(log.segments().0, 4);
    assert_eq!(log.delete_through(3).expect("delete"), 1);
    assert!(!seg_path(tmp.path(), 1).exists());
    assert!(seg_path(tmp.path(), 2).exists());
    assert_eq!(log.delete_through(100).expect("delete"), 2);
    assert_eq!(log.segments(), (1, SEGMENT_HEADER_LEN as u64 + record));
    assert!(seg_path(tmp.path(), 4).exists(), "the active segment stays");
    log.close().expect("close");
    let (records, _) = replay_all(tmp.path()).expect("replay");
    assert_eq!(records, vec![(7, vec![7u8; 16])]);
}

#[test]
fn commitlog_delete_through_covers_segments_from_before_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write_records(tmp.path(), 30, 256);
    let (_, report) = replay_all(tmp.path()).expect("replay");
    let faults = Arc::new(Faults::default());
    let log = open(tmp.path(), batch_opts(256), &faults, report.next_segment_id);
    assert_eq!(log.segments().0, report.segments + 1);
    assert_eq!(log.delete_through(30).expect("delete"), report.segments);
    assert_eq!(log.segments().0, 1);
}

#[test]
fn commitlog_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CommitLog>();
}

#[test]
fn commitlog_bad_crc_of_final_record_is_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tickets = write_records(tmp.path(), 3, 1 << 20);
    let path = seg_path(tmp.path(), 1);
    let mut bytes = fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).expect("write");
    let (records, report) = replay_all(tmp.path()).expect("replay");
    assert_eq!(records.len(), 2);
    assert_eq!(report.truncated_tail, Some((path, tickets[1].end_offset())));
}

mod damage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any single damaged byte in a log is either a typed error or, when replay
        /// succeeds, yields a prefix of what was written: never a wrong record, never a
        /// panic.
        #[test]
        fn commitlog_damaged_byte_yields_error_or_prefix(
            n in 1u64..20,
            at in any::<proptest::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let tmp = tempfile::tempdir().expect("tempdir");
            write_records(tmp.path(), n, 300);
            let segments = super::super::reader::list_segments(tmp.path()).expect("list");
            let sizes: Vec<u64> = segments
                .iter()
                .map(|(_, p)| fs::metadata(p).expect("stat").len())
                .collect();
            let mut i = at.index(sizes.iter().sum::<u64>() as usize) as u64;
            let mut target = 0;
            while i >= sizes[target] {
                i -= sizes[target];
                target += 1;
            }
            let path = &segments[target].1;
            let mut bytes = fs::read(path).expect("read");
            bytes[i as usize] ^= xor;
            fs::write(path, &bytes).expect("write");
            if let Ok((records, _)) = replay_all(tmp.path()) {
                let expected: Records = (1..=n).map(|i| (i, payload(i))).collect();
                prop_assert!(records.len() <= expected.len());
                prop_assert_eq!(&records[..], &expected[..records.len()]);
            }
        }
    }
}

#[test]
fn commitlog_open_creates_missing_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("commitlog");
    let faults = Arc::new(Faults::default());
    let log = open(&dir, batch_opts(1 << 20), &faults, 1);
    log.append(1, b"a").expect("append");
    log.close().expect("close");
    let (records, _) = replay_all(&dir).expect("replay");
    assert_eq!(records, vec![(1, b"a".to_vec())]);
}
