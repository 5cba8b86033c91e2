//! Integration tests against the real `sibyl` binary: one node process per test, on free
//! ports, in its own temp data directory.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{insert_request, values, NodeProcess, TestClient};
use sibyl_protocol::frame::{MAGIC, OFFSET_BODY_LEN, OFFSET_CHECKSUM, OFFSET_STREAM_ID};
use sibyl_protocol::{
    CellContext, ConflictMode, DeleteTarget, ErrorKind, Opcode, Request, Response, RowDelete,
    Selector, HEADER_LEN,
};

fn node(extra: &[&str]) -> (tempfile::TempDir, NodeProcess) {
    common::start_node(extra)
}

fn error_kind(r: Response) -> ErrorKind {
    match r {
        Response::Error(e) => e.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn assert_written(r: &Response) {
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

#[test]
fn node_put_get_round_trips() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("users", ConflictMode::Causal);
    assert_written(&c.put("users", b"alice", b"email", b"a@example.com", Bytes::new()));
    let cell = c.get("users", b"alice", b"email").unwrap();
    assert_eq!(values(&cell), vec![b"a@example.com".to_vec()]);
    assert!(c.get("users", b"alice", b"phone").is_none());
    assert!(c.get("users", b"bob", b"email").is_none());
}

#[test]
fn node_concurrent_blind_writes_become_siblings_and_a_context_resolves_them() {
    let (_tmp, n) = node(&[]);
    let mut a = n.client();
    let mut b = n.client();
    a.create_table("t", ConflictMode::Causal);
    assert_written(&a.put("t", b"k", b"c", b"from-a", Bytes::new()));
    assert_written(&b.put("t", b"k", b"c", b"from-b", Bytes::new()));
    let cell = a.get("t", b"k", b"c").unwrap();
    assert_eq!(values(&cell), vec![b"from-a".to_vec(), b"from-b".to_vec()]);
    assert!(cell.has_conflict());
    assert_written(&a.put("t", b"k", b"c", b"merged", cell.context.clone()));
    let resolved = b.get("t", b"k", b"c").unwrap();
    assert_eq!(values(&resolved), vec![b"merged".to_vec()]);
    assert!(!resolved.has_conflict());
}

#[test]
fn node_causal_delete_hides_the_value() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Causal);
    assert_written(&c.put("t", b"k", b"c", b"v", Bytes::new()));
    let ctx = c.get("t", b"k", b"c").unwrap().context;
    let r = c
        .call(Request::Delete {
            delete: RowDelete {
                write_id: None,
                table: "t".into(),
                key: Bytes::from_static(b"k"),
                timestamp_micros: None,
                target: DeleteTarget::Columns(vec![CellContext {
                    name: Bytes::from_static(b"c"),
                    context: ctx,
                }]),
            },
            consistency: None,
        })
        .unwrap();
    assert_written(&r);
    assert!(c.get("t", b"k", b"c").is_none());
}

#[test]
fn node_ttl_expired_value_vanishes() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Causal);
    let r = c
        .call(insert_request(
            "t",
            b"k",
            b"c",
            b"v",
            Bytes::new(),
            Some(1),
            None,
        ))
        .unwrap();
    assert_written(&r);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get("t", b"k", b"c").is_some() {
        assert!(
            Instant::now() < deadline,
            "value with a 1 s TTL never expired"
        );
        std::thread::sleep(Duration::from_millis(50)); // polling interval
    }
}

#[test]
fn node_lww_last_write_wins() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Lww);
    for (v, ts) in [
        (&b"second"[..], 2_000),
        (b"first", 1_000),
        (b"third", 3_000),
    ] {
        let r = c
            .call(insert_request(
                "t",
                b"k",
                b"c",
                v,
                Bytes::new(),
                None,
                Some(ts),
            ))
            .unwrap();
        assert_written(&r);
    }
    let cell = c.get("t", b"k", b"c").unwrap();
    assert_eq!(values(&cell), vec![b"third".to_vec()]);
    assert_eq!(cell.siblings.len(), 1);
    assert_eq!(cell.siblings[0].timestamp_micros, 3_000);
}

#[test]
fn node_unknown_table_is_a_typed_error() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    let r = c.put("missing", b"k", b"c", b"v", Bytes::new());
    assert_eq!(
        error_kind(r),
        ErrorKind::UnknownTable {
            table: "missing".into()
        }
    );
}

#[test]
fn node_empty_key_is_invalid() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Causal);
    assert_eq!(
        error_kind(c.put("t", b"", b"c", b"v", Bytes::new())),
        ErrorKind::Invalid
    );
}

#[test]
fn node_oversized_value_is_invalid_and_connection_stays_usable() {
    let (_tmp, n) = node(&["--max-value-kb", "64"]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Causal);
    let big = vec![7u8; 64 * 1024 + 1];
    assert_eq!(
        error_kind(c.put("t", b"k", b"c", &big, Bytes::new())),
        ErrorKind::Invalid
    );
    assert_written(&c.put("t", b"k", b"c", b"small", Bytes::new()));
}

#[test]
fn node_forged_context_is_invalid() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Causal);
    let forged = Bytes::from_static(b"SC\x01\x01not-a-real-context");
    assert_eq!(
        error_kind(c.put("t", b"k", b"c", b"v", forged)),
        ErrorKind::Invalid
    );
}

#[test]
fn node_garbage_bytes_get_an_error_frame_and_close_while_others_carry_on() {
    let (_tmp, n) = node(&[]);
    let mut good = n.client();
    good.create_table("t", ConflictMode::Causal);
    let mut bad = TestClient::connect_raw(n.addr).unwrap();
    bad.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .unwrap();
    let (_, resp) = bad.recv().unwrap();
    assert_eq!(error_kind(resp), ErrorKind::Protocol);
    assert!(bad.is_closed_by_server());
    assert_written(&good.put("t", b"k", b"c", b"v", Bytes::new()));
}

#[test]
fn node_oversized_frame_is_refused_while_others_carry_on() {
    let (_tmp, n) = node(&[]);
    let mut good = n.client();
    good.create_table("t", ConflictMode::Causal);
    // Before the handshake the cap is 64 KiB: announce a 1 MiB body.
    let mut bad = TestClient::connect_raw(n.addr).unwrap();
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = 1;
    header[6] = 0x01;
    header[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4].copy_from_slice(&(1u32 << 20).to_be_bytes());
    bad.stream.write_all(&header).unwrap();
    let (_, resp) = bad.recv().unwrap();
    assert_eq!(error_kind(resp), ErrorKind::Protocol);
    assert!(bad.is_closed_by_server());
    assert_written(&good.put("t", b"k", b"c", b"v", Bytes::new()));
    assert!(good.get("t", b"k", b"c").is_some());
}

/// Reads the one error frame a connection closed for a protocol error gets; returns its
/// (stream id, opcode) after checking it is a `PROTOCOL` error and the server closes.
fn protocol_error_frame(c: &mut TestClient) -> (u32, u8) {
    let frame = c.recv_frame().unwrap().expect("an error frame");
    assert!(frame.is_response() && frame.is_error(), "{frame:?}");
    assert_eq!(frame.version, 1);
    let resp = Response::from_frame(&frame).unwrap();
    assert_eq!(error_kind(resp), ErrorKind::Protocol);
    assert!(c.is_closed_by_server());
    (frame.stream_id, frame.opcode)
}

/// An encoded PING on `stream_id`.
fn ping_bytes(stream_id: u32) -> Vec<u8> {
    Request::Ping
        .to_frame(stream_id)
        .unwrap()
        .to_vec(sibyl_protocol::DEFAULT_MAX_FRAME_LEN)
        .unwrap()
}

#[test]
fn node_bad_checksum_gets_its_error_on_stream_0_with_opcode_0() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    let mut frame = ping_bytes(7);
    frame[OFFSET_CHECKSUM] ^= 0xff;
    c.stream.write_all(&frame).unwrap();
    assert_eq!(protocol_error_frame(&mut c), (0, 0x00));
}

#[test]
fn node_oversized_header_gets_its_error_on_stream_0_with_opcode_0() {
    let (_tmp, n) = node(&[]);
    // After the handshake the cap is 16 MiB: announce a 32 MiB GET on stream 9.
    let mut c = n.client();
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = 1;
    header[6] = Opcode::Get.as_u8();
    header[OFFSET_STREAM_ID..OFFSET_STREAM_ID + 4].copy_from_slice(&9u32.to_be_bytes());
    header[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4].copy_from_slice(&(32u32 << 20).to_be_bytes());
    c.stream.write_all(&header).unwrap();
    assert_eq!(protocol_error_frame(&mut c), (0, 0x00));
    // Before the handshake (64 KiB cap) the same rule.
    let mut raw = TestClient::connect_raw(n.addr).unwrap();
    header[OFFSET_BODY_LEN..OFFSET_BODY_LEN + 4].copy_from_slice(&(1u32 << 20).to_be_bytes());
    raw.stream.write_all(&header).unwrap();
    assert_eq!(protocol_error_frame(&mut raw), (0, 0x00));
}

#[test]
fn node_bad_header_bytes_get_their_error_on_stream_0_with_opcode_0() {
    let (_tmp, n) = node(&[]);
    for (offset, value) in [(0usize, b'X'), (5, 0x80), (7, 0x01)] {
        let mut c = n.client();
        let mut frame = ping_bytes(5);
        frame[offset] = value;
        c.stream.write_all(&frame).unwrap();
        assert_eq!(
            protocol_error_frame(&mut c),
            (0, 0x00),
            "header byte {offset} = {value:#04x}"
        );
    }
}

#[test]
fn node_intact_frame_with_a_bad_message_gets_its_stream_and_opcode_echoed() {
    let (_tmp, n) = node(&[]);
    // An unassigned opcode with a correct checksum.
    let mut c = n.client();
    let unassigned = sibyl_protocol::Frame {
        version: 1,
        flags: 0,
        opcode: 0x7e,
        stream_id: 11,
        body: Bytes::new(),
    };
    c.stream
        .write_all(
            &unassigned
                .to_vec(sibyl_protocol::DEFAULT_MAX_FRAME_LEN)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(protocol_error_frame(&mut c), (11, 0x7e));
    // A PING whose body is not empty (trailing bytes) on stream 12.
    let mut c = n.client();
    let bad_body = sibyl_protocol::Frame {
        version: 1,
        flags: 0,
        opcode: Opcode::Ping.as_u8(),
        stream_id: 12,
        body: Bytes::from_static(b"x"),
    };
    c.stream
        .write_all(
            &bad_body
                .to_vec(sibyl_protocol::DEFAULT_MAX_FRAME_LEN)
                .unwrap(),
        )
        .unwrap();
    assert_eq!(protocol_error_frame(&mut c), (12, Opcode::Ping.as_u8()));
}

#[test]
fn node_first_frame_must_be_a_handshake() {
    let (_tmp, n) = node(&[]);
    let mut raw = TestClient::connect_raw(n.addr).unwrap();
    let r = raw.call(Request::Ping).unwrap();
    assert_eq!(error_kind(r), ErrorKind::Protocol);
    assert!(raw.is_closed_by_server());
}

#[test]
fn node_pipelined_requests_are_all_answered() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Lww);
    let mut ids = Vec::new();
    for i in 0..500u32 {
        let key = format!("k{i}");
        ids.push(
            c.send(&insert_request(
                "t",
                key.as_bytes(),
                b"c",
                b"v",
                Bytes::new(),
                None,
                None,
            ))
            .unwrap(),
        );
    }
    let mut answered = Vec::new();
    for _ in 0..ids.len() {
        let (id, r) = c.recv().unwrap();
        assert_written(&r);
        answered.push(id);
    }
    answered.sort_unstable();
    assert_eq!(answered, ids);
}

#[test]
fn node_slice_pages_through_a_wide_row() {
    let (_tmp, n) = node(&[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Causal);
    for i in 0..30 {
        assert_written(&c.put(
            "t",
            b"wide",
            format!("col{i:03}").as_bytes(),
            b"v",
            Bytes::new(),
        ));
    }
    let mut names = Vec::new();
    let mut paging = None;
    loop {
        let r = c
            .call(Request::Get {
                table: "t".into(),
                key: Bytes::from_static(b"wide"),
                selector: Selector::Slice {
                    from: None,
                    to: None,
                    limit: 7,
                    paging: paging.take(),
                },
                consistency: None,
            })
            .unwrap();
        let Response::Row {
            cells, next_page, ..
        } = r
        else {
            panic!("{r:?}")
        };
        names.extend(cells.into_iter().map(|c| c.name.to_vec()));
        match next_page {
            Some(p) => paging = Some(p),
            None => break,
        }
    }
    let expected: Vec<Vec<u8>> = (0..30).map(|i| format!("col{i:03}").into_bytes()).collect();
    assert_eq!(names, expected);
}

#[test]
fn node_sigkill_with_batch_sync_keeps_every_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut n = NodeProcess::start(&data, &tmp.path().join("a.log"), &["--sync-mode", "batch"]);
    n.client().create_table("t", ConflictMode::Causal);
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (acked, count, stop, addr) = (acked.clone(), count.clone(), stop.clone(), n.addr);
            std::thread::spawn(move || {
                let Ok(mut c) = TestClient::connect(addr) else {
                    return;
                };
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (key, value) = (format!("w{w}-k{i}"), format!("v{i}"));
                    let req = insert_request(
                        "t",
                        key.as_bytes(),
                        b"c",
                        value.as_bytes(),
                        Bytes::new(),
                        None,
                        None,
                    );
                    match c.call(req) {
                        Ok(Response::Written { .. }) => {
                            acked.lock().unwrap().insert(key, value);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        // Killed mid-request: the write is not acknowledged.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < 300 {
        assert!(
            Instant::now() < deadline,
            "writers too slow:\n{}",
            n.log_text()
        );
        std::thread::sleep(Duration::from_millis(10)); // polling interval
    }
    n.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);
    let restarted = NodeProcess::start(&data, &tmp.path().join("b.log"), &["--sync-mode", "batch"]);
    let mut c = restarted.client();
    for (key, value) in &acked {
        let cell = c
            .get("t", key.as_bytes(), b"c")
            .unwrap_or_else(|| panic!("acknowledged write {key} lost"));
        assert_eq!(values(&cell), vec![value.as_bytes().to_vec()], "{key}");
    }
}

#[test]
fn node_second_node_on_the_same_data_dir_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let _first = NodeProcess::start(&data, &tmp.path().join("a.log"), &[]);
    let mut second = NodeProcess::spawn(&data, &tmp.path().join("b.log"), &[]);
    let status = second.wait_exit();
    assert!(!status.success());
    let log = second.log_text();
    assert!(
        log.contains("in use by another process"),
        "unclear message: {log}"
    );
}

#[test]
fn node_sigterm_exits_zero_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut n = NodeProcess::start(&data, &tmp.path().join("a.log"), &[]);
    let mut c = n.client();
    c.create_table("t", ConflictMode::Lww);
    assert_written(&c.put("t", b"k", b"c", b"kept", Bytes::new()));
    let status = n.terminate();
    assert!(status.success(), "{status}:\n{}", n.log_text());
    let again = NodeProcess::start(&data, &tmp.path().join("b.log"), &[]);
    let mut c = again.client();
    let r = c.call(Request::DescribeTable { name: "t".into() }).unwrap();
    assert!(
        matches!(&r, Response::Table { options, .. } if options.conflict_mode == ConflictMode::Lww),
        "{r:?}"
    );
    assert_eq!(
        values(&c.get("t", b"k", b"c").unwrap()),
        vec![b"kept".to_vec()]
    );
}

#[test]
fn node_connection_over_the_limit_is_refused_with_overloaded() {
    let (_tmp, n) = node(&["--max-connections", "1"]);
    // The readiness probe's connection may still hold the only slot for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = loop {
        if let Ok(c) = TestClient::connect(n.addr) {
            break c;
        }
        assert!(Instant::now() < deadline, "no connection slot came free");
        std::thread::sleep(Duration::from_millis(10)); // polling interval
    };
    let mut second = TestClient::connect_raw(n.addr).unwrap();
    let frame = second.recv_frame().unwrap().expect("an error frame");
    // It answers no request: stream 0, opcode 0x00 (wire spec, section 1).
    assert_eq!((frame.stream_id, frame.opcode), (0, 0x00));
    let r = Response::from_frame(&frame).unwrap();
    assert_eq!(error_kind(r), ErrorKind::Overloaded);
    assert!(matches!(first.call(Request::Ping).unwrap(), Response::Pong));
}

#[test]
fn node_idle_connection_is_closed_after_the_timeout() {
    let (_tmp, n) = node(&["--idle-timeout-secs", "1"]);
    let mut c = n.client();
    assert!(matches!(c.call(Request::Ping).unwrap(), Response::Pong));
    // The client's read blocks (up to its 30 s timeout) until the server closes.
    assert!(c.is_closed_by_server());
}

#[test]
fn node_unsupported_protocol_version_is_refused_with_the_supported_list() {
    let (_tmp, n) = node(&[]);
    let mut raw = TestClient::connect_raw(n.addr).unwrap();
    let r = raw
        .call(Request::Handshake {
            version: 9,
            client: "future".into(),
        })
        .unwrap();
    assert_eq!(
        error_kind(r),
        ErrorKind::UnsupportedVersion { supported: vec![1] }
    );
    assert!(raw.is_closed_by_server());
}
