//! Section 6 "Permissions", the check table: every client opcode has its row, and the
//! permission the row names is the one the node's check ([`each_required`]) asks for.

use sibyl::auth::permissions::each_required;
use sibyl_protocol::scram::ScramVerifier;
use sibyl_protocol::{
    DeleteTarget, Grant, Mutation, Opcode, Permission, Request, RowDelete, RowInsert, Selector,
    TableOptions, PROTOCOL_VERSION,
};

use super::{b, DOC};

fn insert() -> RowInsert {
    RowInsert {
        write_id: None,
        table: "kv".into(),
        key: b("k"),
        ttl_secs: None,
        timestamp_micros: None,
        columns: Vec::new(),
    }
}

fn verifier() -> ScramVerifier {
    ScramVerifier::derive("pw", b"saltsalt", 4096)
}

/// One request of `opcode` (STREAMS: without `set_throughput`, the other is added by the
/// caller). Exhaustive, so a new opcode cannot be left out of the check table.
fn request(opcode: Opcode) -> Request {
    let grant = || Grant {
        permission: Permission::Read,
        table: Some("kv".into()),
    };
    match opcode {
        Opcode::Handshake => Request::Handshake {
            version: PROTOCOL_VERSION,
            client: "c".into(),
        },
        Opcode::Ping => Request::Ping,
        Opcode::Topology => Request::Topology,
        Opcode::AuthStart => Request::AuthStart {
            mechanism: "SCRAM-SHA-256".into(),
            message: b("n,,n=u,r=x"),
        },
        Opcode::AuthFinish => Request::AuthFinish {
            message: b("c=biws"),
        },
        Opcode::CreateTable => Request::CreateTable {
            name: "kv".into(),
            options: TableOptions::default(),
            if_not_exists: false,
        },
        Opcode::DropTable => Request::DropTable {
            name: "kv".into(),
            if_exists: false,
        },
        Opcode::ListTables => Request::ListTables,
        Opcode::DescribeTable => Request::DescribeTable { name: "kv".into() },
        Opcode::CreateUser => Request::CreateUser {
            name: "u".into(),
            superuser: false,
            if_not_exists: false,
            verifier: verifier(),
        },
        Opcode::AlterUser => Request::AlterUser {
            name: "u".into(),
            verifier: verifier(),
        },
        Opcode::DropUser => Request::DropUser {
            name: "u".into(),
            if_exists: false,
        },
        Opcode::ListUsers => Request::ListUsers,
        Opcode::Grant => Request::Grant {
            user: "u".into(),
            grant: grant(),
        },
        Opcode::Revoke => Request::Revoke {
            user: "u".into(),
            grant: grant(),
        },
        Opcode::Insert => Request::Insert {
            insert: insert(),
            consistency: None,
        },
        Opcode::Get => Request::Get {
            table: "kv".into(),
            key: b("k"),
            selector: Selector::All,
            consistency: None,
        },
        Opcode::Delete => Request::Delete {
            delete: RowDelete {
                table: "kv".into(),
                key: b("k"),
                timestamp_micros: None,
                write_id: None,
                target: DeleteTarget::Row {
                    contexts: Vec::new(),
                },
            },
            consistency: None,
        },
        Opcode::Batch => Request::Batch {
            mutations: vec![Mutation::Insert(insert())],
            consistency: None,
        },
        Opcode::Flush => Request::Flush { table: None },
        Opcode::Compact => Request::Compact { table: "kv".into() },
        Opcode::TableStats => Request::TableStats { table: "kv".into() },
        Opcode::RemoveNode => Request::RemoveNode {
            node_id: "0000000000000001".into(),
            force: false,
        },
        Opcode::Decommission => Request::Decommission,
        Opcode::Repair => Request::Repair { table: None },
        Opcode::RepairStatus => Request::RepairStatus { id: 1 },
        Opcode::Hints => Request::Hints,
        Opcode::Streams => Request::Streams {
            set_throughput: None,
        },
        Opcode::Cleanup => Request::Cleanup { table: None },
        Opcode::Rebalance => Request::Rebalance,
        Opcode::Move => Request::Move { tokens: Vec::new() },
        Opcode::Metrics => Request::Metrics,
        Opcode::DescribeCluster => Request::DescribeCluster,
        Opcode::Health => Request::Health,
    }
}

/// The check table's rows: (request cell, needs cell).
fn check_rows() -> Vec<(String, String)> {
    DOC.lines()
        .skip_while(|l| !l.starts_with("**The check.**"))
        .skip_while(|l| !l.starts_with("| request | needs |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// The row whose request cell lists `name` (a STREAMS entry also by its qualifier).
fn needs_of(rows: &[(String, String)], name: &str, qualifier: Option<&str>) -> String {
    let found: Vec<&String> = rows
        .iter()
        .filter(|(requests, _)| {
            requests.split(", ").any(|entry| {
                let mut words = entry.splitn(2, ' ');
                words.next() == Some(name) && qualifier.is_none_or(|q| entry.contains(q))
            })
        })
        .map(|(_, needs)| needs)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name} {qualifier:?} in exactly one row: {found:?}"
    );
    found[0].clone()
}

/// What the node asks of `request`, as the spec words it: "nothing" or the permission.
fn asked(request: &Request) -> Option<Permission> {
    let mut asked = Vec::new();
    each_required(request, |p, _| {
        asked.push(p);
        Ok::<(), ()>(())
    })
    .unwrap();
    asked.dedup();
    assert!(asked.len() <= 1, "{asked:?}");
    asked.first().copied()
}

#[test]
fn permissions_check_table_lists_every_opcode_with_its_permission() {
    let rows = check_rows();
    assert!(rows.len() >= 8, "the check table was not found: {rows:?}");
    let mut cases: Vec<(Request, &str, Option<&str>)> = Opcode::ALL
        .into_iter()
        .map(|op| {
            let qualifier = (op == Opcode::Streams).then_some("without");
            (request(op), op.name(), qualifier)
        })
        .collect();
    cases.push((
        Request::Streams {
            set_throughput: Some(1 << 20),
        },
        "STREAMS",
        Some("with `set_throughput`"),
    ));
    for (request, name, qualifier) in cases {
        let needs = needs_of(&rows, name, qualifier);
        match asked(&request) {
            None => assert!(needs.starts_with("nothing"), "{name}: {needs}"),
            Some(p) => {
                assert!(
                    needs.starts_with(&format!("`{}`", p.name())),
                    "{name} needs {p} by the node, the spec says {needs}"
                );
                assert_eq!(
                    p.is_table_scoped(),
                    needs.contains("table"),
                    "{name}: scope of {needs}"
                );
            }
        }
    }
}
