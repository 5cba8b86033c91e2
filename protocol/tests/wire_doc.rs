//! Checks that `doc/wire_format.md` tells the truth: every worked hex example equals the
//! encoder's output for the message it describes, and the error and opcode tables list
//! every code with its number and retry safety.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

mod samples;

use std::collections::BTreeMap;

use bytes::Bytes;
use sibyl_protocol::frame::{
    CONNECTION_ERROR_OPCODE, CONNECTION_ERROR_STREAM_ID, FLAG_ERROR, FLAG_RESPONSE,
};
use sibyl_protocol::message::types::{Cell, ColumnWrite, ResponseMeta, Selector, Sibling};

#[path = "support/doc_examples.rs"]
mod doc_examples;
use doc_examples::{doc_example, hex};
use sibyl_protocol::{
    ErrorCode, ErrorKind, Frame, Opcode, Request, Response, RowInsert, ServerError, TableOptions,
    TableStatistics, DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
};

const DOC: &str = include_str!("../doc/wire_format.md");
/// The node id the examples' response metadata names (a topology `node.id`).
const NODE_ID: &str = "3f2a9c0e5b7d1846";

/// The frames the doc's examples show, by example name.
fn examples() -> BTreeMap<&'static str, Frame> {
    let mut m = BTreeMap::new();
    m.insert(
        "handshake-request",
        Request::Handshake {
            version: PROTOCOL_VERSION,
            client: "demo".into(),
        }
        .to_frame(0)
        .unwrap(),
    );
    m.insert(
        "handshake-response",
        Response::Handshake {
            version: 1,
            server: "sibyl".into(),
            max_frame_len: 16 * 1024 * 1024,
        }
        .to_frame(0, Opcode::Handshake)
        .unwrap(),
    );
    m.insert(
        "unsupported-version",
        Response::Error(ServerError::new(
            ErrorKind::UnsupportedVersion { supported: vec![1] },
            "no v9",
        ))
        .to_frame_version(9, 0, Opcode::Handshake)
        .unwrap(),
    );
    m.insert(
        "auth-start-request",
        Request::AuthStart {
            mechanism: "SCRAM-SHA-256".into(),
            message: Bytes::from_static(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"),
        }
        .to_frame(1)
        .unwrap(),
    );
    m.insert(
        "auth-failed",
        Response::Error(ServerError::new(
            ErrorKind::AuthenticationFailed,
            "authentication failed",
        ))
        .to_frame(2, Opcode::AuthFinish)
        .unwrap(),
    );
    m.insert(
        "insert-request",
        Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "users".into(),
                key: Bytes::from_static(b"alice"),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::from_static(b"email"),
                    value: Bytes::from_static(b"a@x.io"),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        }
        .to_frame(1)
        .unwrap(),
    );
    m.insert(
        "written-response",
        Response::Written {
            meta: ResponseMeta {
                replicas: vec![NODE_ID.into()],
                read_repair: false,
                stand_ins: Vec::new(),
            },
        }
        .to_frame(1, Opcode::Insert)
        .unwrap(),
    );
    m.insert(
        "get-slice-request",
        Request::Get {
            table: "users".into(),
            key: Bytes::from_static(b"alice"),
            selector: Selector::Slice {
                from: Some(Bytes::from_static(b"a")),
                to: None,
                limit: 2,
                paging: None,
            },
            consistency: Some(sibyl_protocol::Consistency::QUORUM),
        }
        .to_frame(2)
        .unwrap(),
    );
    m.insert(
        "row-response",
        Response::Row {
            cells: vec![Cell {
                name: Bytes::from_static(b"email"),
                siblings: vec![
                    Sibling {
                        value: Some(Bytes::from_static(b"a@x.io")),
                        timestamp_micros: 1,
                        ttl_secs: None,
                    },
                    Sibling {
                        value: None,
                        timestamp_micros: 2,
                        ttl_secs: None,
                    },
                ],
                context: Bytes::from_static(&[0xc0, 0xde]),
            }],
            next_page: Some(Bytes::from_static(b"email\0")),
            meta: ResponseMeta {
                replicas: vec![NODE_ID.into()],
                read_repair: true,
                stand_ins: Vec::new(),
            },
        }
        .to_frame(2, Opcode::Get)
        .unwrap(),
    );
    m.insert(
        "unavailable-error",
        Response::Error(ServerError::new(
            ErrorKind::Unavailable {
                required: 2,
                alive: 1,
            },
            "1 of 2",
        ))
        .to_frame(3, Opcode::Insert)
        .unwrap(),
    );
    m.insert(
        "create-table-defaults",
        Request::CreateTable {
            name: "users".into(),
            if_not_exists: false,
            options: TableOptions::default(),
        }
        .to_frame(5)
        .unwrap(),
    );
    m.insert(
        "insert-no-ttl",
        Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "users".into(),
                key: Bytes::from_static(b"alice"),
                ttl_secs: Some(0),
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::from_static(b"email"),
                    value: Bytes::from_static(b"a@x.io"),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        }
        .to_frame(6)
        .unwrap(),
    );
    m.insert("frame-error", frame_error("bad checksum"));
    m.insert(
        "table-stats-response",
        Response::AdminTableStats(TableStatistics {
            table: "t".into(),
            sstables: 2,
            sstables_per_level: vec![2],
            sstable_bytes: 4096,
            sstable_entries: 10,
            sstable_tombstones: 1,
            memtable_bytes: 256,
            memtable_entries: 3,
            frozen_memtables: 0,
            flushes: 2,
            compactions: 0,
            compacted_bytes: 0,
            ..TableStatistics::default()
        })
        .to_frame(4, Opcode::TableStats)
        .unwrap(),
    );
    m
}

/// The error frame a server sends for a frame it cannot read (section 1): stream 0,
/// opcode 0x00, whatever the unreadable header said.
fn frame_error(message: &str) -> Frame {
    Frame {
        version: PROTOCOL_VERSION,
        flags: FLAG_RESPONSE | FLAG_ERROR,
        opcode: CONNECTION_ERROR_OPCODE,
        stream_id: CONNECTION_ERROR_STREAM_ID,
        body: Response::Error(ServerError::new(ErrorKind::Protocol, message))
            .encode_body()
            .unwrap(),
    }
}

#[test]
fn wire_doc_examples_match_the_encoder() {
    for (name, frame) in examples() {
        let expected = frame.to_vec(DEFAULT_MAX_FRAME_LEN).unwrap();
        let Some(in_doc) = doc_example(DOC, name) else {
            panic!(
                "doc lacks example {name}; the encoder says:\n{}",
                hex(&expected)
            );
        };
        assert_eq!(
            in_doc,
            expected,
            "example {name} differs; the encoder says:\n{}",
            hex(&expected)
        );
    }
}

#[test]
fn wire_doc_error_table_lists_every_code() {
    for code in ErrorCode::ALL {
        let row = format!("| `{:#06x}` | {} |", code.as_u16(), code.name());
        let line = DOC
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("no table row {row}"));
        let retry = if code.retry_safe() { "yes" } else { "no" };
        assert!(
            line.contains(&format!("| {retry} |")),
            "row for {} should say retry-safe {retry}: {line}",
            code.name()
        );
    }
}

#[test]
fn wire_doc_opcode_table_lists_every_opcode() {
    for op in Opcode::ALL {
        let row = format!("| `{:#04x}` | {} |", op.as_u8(), op.name());
        assert!(
            DOC.lines().any(|l| l.starts_with(&row)),
            "no opcode row {row}"
        );
    }
}

#[test]
#[ignore = "prints the examples' hex for editing the doc"]
fn wire_doc_print_examples() {
    for (name, frame) in examples() {
        println!(
            "{name}:\n{}\n",
            hex(&frame.to_vec(DEFAULT_MAX_FRAME_LEN).unwrap())
        );
    }
    let _ = samples::requests();
}

/// The fixed-width and composite types the field-encodings table (section 3) lists.
fn listed_types() -> Vec<String> {
    let start = DOC.find("## 3. Field encodings").expect("section 3");
    let end = start + DOC[start..].find("\n## 4.").expect("section 4");
    let mut out = Vec::new();
    for line in DOC[start..end].lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap_or("");
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 {
                out.push(part.split('<').next().unwrap_or(part).to_owned());
            }
        }
    }
    out
}

/// Every `name:type` of the grammar blocks, with the names grammar rules define.
fn grammar_types_and_rules() -> (Vec<String>, Vec<String>) {
    let mut types = Vec::new();
    let mut rules = Vec::new();
    // (inside a fence, it is a grammar block)
    let mut fence: Option<bool> = None;
    for line in DOC.lines() {
        if line.starts_with("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(line == "```"),
            };
            continue;
        }
        if fence != Some(true) {
            continue;
        }
        let code = line.split(';').next().unwrap_or("");
        if let Some((lhs, _)) = code.split_once(" = ") {
            let lhs = lhs.trim();
            if !lhs.is_empty() && !lhs.contains(' ') {
                rules.push(lhs.to_owned());
            }
        }
        for word in code.split_whitespace() {
            if let Some((_, ty)) = word.split_once(':') {
                for t in ty.split(['<', '>']).filter(|t| !t.is_empty()) {
                    types.push(t.to_owned());
                }
            }
        }
    }
    (types, rules)
}

#[test]
fn wire_doc_every_field_type_is_listed_or_defined() {
    let listed = listed_types();
    assert!(
        listed.contains(&"u64".to_owned()),
        "u64 missing: {listed:?}"
    );
    let (types, rules) = grammar_types_and_rules();
    assert!(types.iter().any(|t| t == "u64"), "no u64 field found");
    for t in types {
        assert!(
            listed.contains(&t) || rules.contains(&t),
            "field type {t:?} is neither in the field encodings table nor a grammar rule"
        );
    }
}

#[test]
fn wire_doc_table_option_defaults_are_the_client_defaults() {
    // The default table of section 5.1 lists each option's wire bytes; together, in order,
    // they are TableOptions::default() encoded (the create-table-defaults example checks
    // the same bytes inside a frame).
    let start = DOC.find("### 5.1").expect("section 5.1");
    let end = start + DOC[start..].find("### 5.2").expect("section 5.2");
    let mut doc_bytes = Vec::new();
    let mut rows = 0;
    for line in DOC[start..end].lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(wire) = cells.get(3).and_then(|c| c.strip_prefix('`')) else {
            continue;
        };
        let wire = wire.trim_end_matches('`');
        for tok in wire.split_whitespace() {
            doc_bytes.push(u8::from_str_radix(tok, 16).unwrap());
        }
        rows += 1;
    }
    assert_eq!(rows, 7, "one row per table option");
    let frame = Request::CreateTable {
        name: String::new(),
        if_not_exists: false,
        options: TableOptions::default(),
    }
    .to_frame(0)
    .unwrap();
    // Body: name "" (2 bytes), if_not_exists (1), then the options.
    assert_eq!(&frame.body[3..], &doc_bytes[..]);
}
