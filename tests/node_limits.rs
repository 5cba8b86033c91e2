//! A node at its limits keeps serving what it can, against the real `sibyl` binary: a
//! disk below the free-space reserve refuses writes with `DISK_FULL` (not applied) and
//! HEALTH (what `sibyl-admin status` shows) says why; silent connections cannot lock
//! working clients out. One node process per test, on free ports, in its own temp dir.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{NodeProcess, TestClient};
use sibyl_protocol::{ConflictMode, ErrorKind, Request, Response};

/// Time allowed past a deadline under test for the node to act on it (a loaded machine
/// runs the tests, the node and other builds at once).
const MARGIN: Duration = Duration::from_secs(10);

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

/// Connects clients that never send a byte.
fn silent_connections(addr: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect()
}

/// Polls until a client handshakes and gets a PING answered; returns how long it took.
/// Panics past `deadline`.
fn served_within(addr: std::net::SocketAddr, deadline: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = TestClient::connect(addr) {
            if matches!(c.call(Request::Ping), Ok(Response::Pong)) {
                return start.elapsed();
            }
        }
        assert!(
            start.elapsed() < deadline,
            "no client served within {deadline:?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn node_silent_connections_over_the_connection_cap_do_not_lock_out_a_client() {
    // The attack: 1,100 connections that never send a byte, against the default
    // cap of 1,024 connections (128 of them at most in their handshake).
    let (_tmp, mut n) = node(&["--handshake-timeout-secs", "3"]);
    let silent = silent_connections(n.addr, 1100);
    let took = served_within(n.addr, Duration::from_secs(3) + MARGIN);
    eprintln!("a client was served {took:?} after 1,100 silent connections");
    drop(silent);
    assert!(n.terminate().success(), "{}", n.log_text());
}

#[test]
fn node_silent_connections_holding_every_slot_are_closed_at_the_handshake_deadline() {
    // A pending cap as large as the connection cap: only the deadline frees the slots.
    let (_tmp, mut n) = node(&[
        "--max-connections",
        "64",
        "--max-pending-handshakes",
        "64",
        "--handshake-timeout-secs",
        "1",
    ]);
    let silent = silent_connections(n.addr, 100);
    let took = served_within(n.addr, Duration::from_secs(1) + MARGIN);
    eprintln!("a client was served {took:?} after 100 silent connections took every slot");
    drop(silent);
    assert!(n.terminate().success(), "{}", n.log_text());
}
