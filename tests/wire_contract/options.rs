//! Sections 5.1 (table option defaults), 5.2 (consistency against rf) and 5.6 (response
//! metadata).

use super::*;

#[test]
fn contract_table_created_with_the_client_defaults_describes_them_unchanged() {
    let f = fixture();
    f.create("t", TableOptions::default());
    let r = f.svc.handle(Request::DescribeTable { name: "t".into() });
    let Response::Table { options, .. } = r else {
        panic!("{r:?}")
    };
    // The values section 5.1 documents (its wire bytes are checked in wire_doc.rs).
    let documented = TableOptions {
        replication_factor: 3,
        read_consistency: Consistency::QUORUM,
        write_consistency: Consistency::QUORUM,
        conflict_mode: ConflictMode::Causal,
        default_ttl_secs: None,
        compaction: sibyl_protocol::Compaction::SizeTiered,
        placement: sibyl_protocol::Placement::Simple,
    };
    assert_eq!(options, documented);
    assert_eq!(TableOptions::default(), documented);
}

fn write_at(f: &Fixture, table: &str, level: Consistency) -> Response {
    f.svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: table.into(),
            key: b("k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: b("c"),
                value: b("v"),
                context: Bytes::new(),
            }],
        },
        consistency: Some(level),
    })
}

#[test]
fn contract_two_on_rf_1_is_unavailable_while_quorum_and_all_succeed() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    for ok in [
        Consistency::ONE,
        Consistency::QUORUM,
        Consistency::ALL,
        Consistency::LOCAL_QUORUM,
    ] {
        assert_written(&write_at(&f, "t", ok));
    }
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::TWO)),
        ErrorKind::Unavailable {
            required: 2,
            alive: 1
        }
    );
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::THREE)),
        ErrorKind::Unavailable {
            required: 3,
            alive: 1
        }
    );
    let explicit = |n| Consistency {
        level: ConsistencyLevel::Explicit(n),
        ..Consistency::ONE
    };
    assert_written(&write_at(&f, "t", explicit(1)));
    assert_eq!(
        error_kind(write_at(&f, "t", explicit(0))),
        ErrorKind::Invalid
    );
}

#[test]
fn contract_quorum_on_rf_3_needs_two_replicas_and_a_single_node_is_one() {
    let f = fixture();
    f.create(
        "t",
        TableOptions {
            replication_factor: 3,
            ..rf1(ConflictMode::Causal)
        },
    );
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::QUORUM)),
        ErrorKind::Unavailable {
            required: 2,
            alive: 1
        }
    );
    assert_eq!(
        error_kind(write_at(&f, "t", Consistency::ALL)),
        ErrorKind::Unavailable {
            required: 3,
            alive: 1
        }
    );
    // The table's own default (ONE here) applies when the request names none.
    assert_written(&f.insert_full("t", "c", "v", Bytes::new(), None, None));
}

#[test]
fn contract_replicas_are_named_by_their_topology_node_id() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Causal));
    let Response::Topology(topology) = f.svc.handle(Request::Topology) else {
        panic!("no topology")
    };
    let ids: Vec<String> = topology.nodes.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].len(), 16);
    assert!(ids[0]
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let Response::Written { meta } = f.insert_full("t", "c", "v", Bytes::new(), None, None) else {
        panic!("not written")
    };
    assert_eq!(meta.replicas, ids);
    let Response::Row { meta, .. } = f.svc.handle(Request::Get {
        table: "t".into(),
        key: b("k"),
        selector: Selector::All,
        consistency: None,
    }) else {
        panic!("no row")
    };
    assert_eq!(meta.replicas, ids);
    // The server's shared, pre-encoded answer to a write says the same.
    let shared =
        Response::decode_body(sibyl_protocol::Opcode::Insert, false, f.svc.written_body()).unwrap();
    let Response::Written { meta } = shared else {
        panic!("{shared:?}")
    };
    assert_eq!(meta.replicas, ids);
    assert_eq!(topology.nodes[0].address, "127.0.0.1:7400");
}
