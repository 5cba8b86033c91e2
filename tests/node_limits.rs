//! A node at its limits keeps serving what it can, against the real `sibyl` binary: a
//! disk below the free-space reserve refuses writes with `DISK_FULL` (not applied) and
//! HEALTH (what `sibyl-admin status` shows) says why; silent connections cannot lock
//! working clients out. One node process per test, on free ports, in its own temp dir.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

mod common;

use bytes::Bytes;
use common::NodeProcess;
use sibyl_protocol::{ConflictMode, ErrorKind, Request, Response};

fn node(extra: &[&str]) -> (tempfile::TempDir, NodeProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let n = NodeProcess::start(
        &tmp.path().join("data"),
        &tmp.path().join("node.log"),
        extra,
    );
    (tmp, n)
}

#[test]
fn node_below_the_disk_reserve_refuses_writes_as_disk_full_and_reports_it() {
    // A reserve larger than any disk: every write finds the disk "full".
    let (_tmp, mut n) = node(&["--min-free-disk-mb", "1000000000000"]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Lww);
    match c.put("t", b"k", b"c", b"v", Bytes::new()) {
        Response::Error(e) => {
            assert!(
                matches!(e.kind, ErrorKind::DiskFull { reserve, .. } if reserve == 1_000_000_000_000 << 20),
                "{e:?}"
            );
            assert!(e.retry_safe(), "DISK_FULL says nothing was applied");
        }
        other => panic!("expected DISK_FULL, got {other:?}"),
    }
    assert!(c.get("t", b"k", b"c").is_none(), "nothing applied");
    match c.call(Request::Health).unwrap() {
        Response::AdminHealth(h) => {
            assert!(h.is_degraded());
            assert!(h.poisoned.is_none());
            assert!(h.writes_refused.is_some(), "{h:?}");
        }
        other => panic!("expected a health report, got {other:?}"),
    }
    assert!(n.terminate().success(), "{}", n.log_text());
}

#[test]
fn node_health_is_ok_on_a_healthy_node() {
    let (_tmp, mut n) = node(&["--min-free-disk-mb", "0"]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Lww);
    assert!(matches!(
        c.put("t", b"k", b"c", b"v", Bytes::new()),
        Response::Written { .. }
    ));
    match c.call(Request::Health).unwrap() {
        Response::AdminHealth(h) => assert!(!h.is_degraded(), "{h:?}"),
        other => panic!("expected a health report, got {other:?}"),
    }
    assert!(n.terminate().success(), "{}", n.log_text());
}
