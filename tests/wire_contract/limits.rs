//! Section 7: the limits table against the code, and the page bounds.

use super::*;

#[test]
fn contract_slice_limit_0_returns_the_default_page_of_1000_cells() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let columns: Vec<ColumnWrite> = (0..DEFAULT_PAGE_SIZE + 5)
        .map(|i| ColumnWrite {
            name: b(&format!("c{i:05}")),
            value: b("v"),
            context: Bytes::new(),
        })
        .collect();
    assert_written(&f.svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "t".into(),
            key: b("k"),
            ttl_secs: None,
            timestamp_micros: None,
            columns,
        },
        consistency: None,
    }));
    let first = |paging| Selector::Slice {
        from: None,
        to: None,
        limit: 0,
        paging,
    };
    let (cells, next) = f.get_with("t", first(None));
    assert_eq!(cells.len(), 1000);
    let next = next.expect("more columns follow");
    let (rest, end) = f.get_with("t", first(Some(next)));
    assert_eq!(rest.len(), 5);
    assert!(end.is_none(), "the slice is complete");
}

#[test]
fn contract_slice_page_ends_before_the_cell_that_would_pass_the_8_mib_budget() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let value = "v".repeat(DEFAULT_MAX_VALUE_LEN);
    for i in 0..10 {
        f.insert("t", &format!("c{i}"), &value, Bytes::new(), None);
    }
    let slice = |paging| Selector::Slice {
        from: None,
        to: None,
        limit: 0,
        paging,
    };
    let (cells, next) = f.get_with("t", slice(None));
    // Each cell counts its name, context, value and 16 bytes per sibling: the 8th would
    // pass 8 MiB, so it starts the next page.
    assert_eq!(cells.len(), 7);
    let (rest, end) = f.get_with("t", slice(next));
    assert_eq!(rest.len(), 3);
    assert!(end.is_none());
    // A whole-row GET of the same row is over the budget: refused, read it with slices.
    assert_eq!(
        error_kind(f.svc.handle(Request::Get {
            table: "t".into(),
            key: b("k"),
            selector: Selector::All,
            consistency: None,
        })),
        ErrorKind::Invalid
    );
}

#[test]
fn contract_value_over_1_mib_is_invalid_and_1_mib_is_accepted() {
    let f = fixture();
    f.create("t", rf1(ConflictMode::Lww));
    let put = |len: usize| {
        f.svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "t".into(),
                key: b("k"),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: b("c"),
                    value: Bytes::from(vec![7u8; len]),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        })
    };
    assert_written(&put(1 << 20));
    assert_eq!(error_kind(put((1 << 20) + 1)), ErrorKind::Invalid);
}

/// The exact number of the limits table row whose first cell is `name`.
fn documented_limit(name: &str) -> u64 {
    let row = format!("| {name} |");
    let line = DOC
        .lines()
        .find(|l| l.starts_with(&row))
        .unwrap_or_else(|| panic!("no limits row {row}"));
    let value = line.split('|').nth(2).unwrap_or("");
    let number = value.split('`').nth(1).unwrap_or("");
    number
        .parse()
        .unwrap_or_else(|_| panic!("row {name}: no number in `{value}`"))
}

#[test]
fn contract_limits_table_matches_the_code() {
    use sibyl::config::{
        DEFAULT_HANDSHAKE_TIMEOUT_SECS, DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CONNECTIONS,
        DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MIN_FREE_DISK_MB,
    };
    use sibyl::server::DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT;
    use sibyl::service::keys::{MAX_COLUMN_NAME_LEN, MAX_PARTITION_KEY_LEN};
    use sibyl::service::schema::{MAX_REPLICATION_FACTOR, MAX_TABLE_NAME_LEN};
    let checks: [(&str, u64); 26] = [
        (
            "frame before the handshake",
            sibyl_protocol::HANDSHAKE_MAX_FRAME_LEN as u64,
        ),
        (
            "frame after the handshake",
            sibyl_protocol::DEFAULT_MAX_FRAME_LEN as u64,
        ),
        (
            "decoded message memory",
            sibyl_protocol::wire::MAX_DECODED_BYTES as u64,
        ),
        ("client connections", DEFAULT_MAX_CONNECTIONS as u64),
        (
            "time to complete the handshake",
            DEFAULT_HANDSHAKE_TIMEOUT_SECS,
        ),
        (
            "connections in their handshake",
            DEFAULT_MAX_PENDING_HANDSHAKES as u64,
        ),
        (
            "bytes of frames over 16 KiB in flight per node",
            DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT as u64,
        ),
        ("requests in flight per node", DEFAULT_MAX_IN_FLIGHT as u64),
        ("idle connection", DEFAULT_IDLE_TIMEOUT_SECS),
        ("cell value", DEFAULT_MAX_VALUE_LEN as u64),
        ("partition key", MAX_PARTITION_KEY_LEN as u64),
        ("column name", MAX_COLUMN_NAME_LEN as u64),
        ("table name", MAX_TABLE_NAME_LEN as u64),
        ("replication factor", u64::from(MAX_REPLICATION_FACTOR)),
        ("siblings of a causal cell", DEFAULT_MAX_SIBLINGS as u64),
        ("stored causal cell (all siblings)", MAX_CELL_BYTES as u64),
        (
            "default slice page (`limit` 0)",
            u64::from(DEFAULT_PAGE_SIZE),
        ),
        ("largest slice page", u64::from(MAX_PAGE_SIZE)),
        ("stored cells stepped per page", MAX_SCANNED_PER_PAGE as u64),
        ("response budget of a read", MAX_RESPONSE_BYTES as u64),
        (
            "free space of the node's data directory",
            DEFAULT_MIN_FREE_DISK_MB << 20,
        ),
        (
            "frame before authentication (node with `--auth required`)",
            sibyl_protocol::HANDSHAKE_MAX_FRAME_LEN as u64,
        ),
        (
            "SCRAM message",
            sibyl_protocol::scram::MAX_MESSAGE_LEN as u64,
        ),
        (
            "longest delay before an `AUTHENTICATION_FAILED`",
            sibyl::auth::throttle::MAX_DELAY.as_millis() as u64,
        ),
        ("user name", sibyl::auth::MAX_USER_NAME_LEN as u64),
        (
            "SCRAM iterations of a stored verifier",
            u64::from(sibyl_protocol::scram::MIN_ITERATIONS),
        ),
    ];
    for (name, code) in checks {
        assert_eq!(documented_limit(name), code, "limits row {name:?}");
    }
    let rows = DOC
        .lines()
        .skip_while(|l| !l.starts_with("## 7. Limits"))
        .take_while(|l| !l.starts_with("## 8."))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| limit |"))
        .count();
    assert_eq!(rows, checks.len(), "a limits row is not checked here");
}
