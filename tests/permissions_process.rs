//! Permissions on real `sibyl` processes (issue 14; `doc/wire_format.md`, section 6
//! "Permissions"): nodes with `--auth required`, users granted and revoked through the
//! client library, every denied request checked to have applied nothing (read back as
//! the superuser). Free ports, a temp directory per test, conditions polled with
//! deadlines, every child killed by its own PID when the test ends.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::time::Instant;

use bytes::Bytes;
use sibyl_protocol::{
    Client, ClientError, Consistency, ErrorKind, Grant, Permission, TableOptions,
};

#[path = "common/auth_node.rs"]
mod auth_node;
use auth_node::{admin, auth_node, login, server_kind, Node, POLL, SPREAD_DEADLINE};

/// One replica, consistency ONE: the tables of these tests live on any single node.
fn rf1() -> TableOptions {
    TableOptions {
        replication_factor: 1,
        read_consistency: Consistency::ONE,
        write_consistency: Consistency::ONE,
        ..TableOptions::default()
    }
}

fn unauthorized(permission: Permission) -> ErrorKind {
    ErrorKind::Unauthorized {
        permission: permission.name().to_owned(),
    }
}

/// The value of column `c` of `key` in `table`, as `client` reads it.
async fn value(client: &Client, table: &str, key: &str) -> Option<Bytes> {
    let row = client.table(table).get(key.to_owned()).await.unwrap();
    row.value("c").cloned()
}

/// Creates user `name` (password `NAME-pw`) with `grants` and logs it in.
async fn user_with(
    n: &Node,
    admin: &Client,
    name: &str,
    grants: &[(Permission, Option<&str>)],
) -> Client {
    admin
        .create_user(name, &format!("{name}-pw"), false, false)
        .await
        .unwrap();
    for (permission, table) in grants {
        assert!(admin.grant(name, *permission, *table).await.unwrap());
    }
    login(&n.addr(), name, &format!("{name}-pw")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_read_without_write_reads_and_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let a = admin(&n.addr()).await;
    a.create_table("kv", rf1()).await.unwrap();
    a.table("kv").put("k1", [("c", "v1")]).await.unwrap();
    let alice = user_with(&n, &a, "alice", &[(Permission::Read, Some("kv"))]).await;
    assert_eq!(value(&alice, "kv", "k1").await.unwrap(), Bytes::from("v1"));
    let denied = alice.table("kv").put("k2", [("c", "v2")]).await;
    assert_eq!(server_kind(denied), unauthorized(Permission::Write));
    match alice.table("kv").delete_row("k1").await {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.kind, unauthorized(Permission::Write));
            assert!(e.message.contains("kv"), "names the table: {}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        value(&a, "kv", "k2").await,
        None,
        "the denied put wrote nothing"
    );
    assert!(
        value(&a, "kv", "k1").await.is_some(),
        "the denied delete deleted nothing"
    );
    // LIST_USERS shows the grant.
    let users = a.list_users().await.unwrap();
    let listed = users.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(
        listed.grants,
        vec![Grant {
            permission: Permission::Read,
            table: Some("kv".into())
        }]
    );
    // Granting write lets the same connection write at its next request.
    assert!(a
        .grant("alice", Permission::Write, Some("kv"))
        .await
        .unwrap());
    alice.table("kv").put("k2", [("c", "v2")]).await.unwrap();
    assert_eq!(value(&a, "kv", "k2").await.unwrap(), Bytes::from("v2"));
    // And revoking read refuses its next read.
    assert!(a
        .revoke("alice", Permission::Read, Some("kv"))
        .await
        .unwrap());
    let denied = alice.table("kv").get("k1").await;
    assert_eq!(server_kind(denied), unauthorized(Permission::Read));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_batch_with_one_denied_table_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let a = admin(&n.addr()).await;
    a.create_table("a", rf1()).await.unwrap();
    a.create_table("b", rf1()).await.unwrap();
    let bob = user_with(&n, &a, "bob", &[(Permission::Write, Some("a"))]).await;
    let batch = bob
        .batch()
        .put(bob.table("a").put("x", [("c", "1")]))
        .put(bob.table("b").put("y", [("c", "2")]))
        .send()
        .await;
    assert_eq!(server_kind(batch), unauthorized(Permission::Write));
    assert_eq!(
        value(&a, "a", "x").await,
        None,
        "nothing of the batch applied"
    );
    assert_eq!(value(&a, "b", "y").await, None);
    // With write on both tables the same batch goes through.
    assert!(a.grant("bob", Permission::Write, Some("b")).await.unwrap());
    bob.batch()
        .put(bob.table("a").put("x", [("c", "1")]))
        .put(bob.table("b").put("y", [("c", "2")]))
        .send()
        .await
        .unwrap();
    assert_eq!(value(&a, "b", "y").await.unwrap(), Bytes::from("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_operate_guards_flush_and_create_guards_create_table() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let a = admin(&n.addr()).await;
    let carol = user_with(&n, &a, "carol", &[]).await;
    assert_eq!(
        server_kind(carol.flush(None).await),
        unauthorized(Permission::Operate)
    );
    assert_eq!(
        server_kind(carol.create_table("t", rf1()).await),
        unauthorized(Permission::Create)
    );
    assert!(a.list_tables().await.unwrap().is_empty(), "nothing created");
    // Status reads stay open to any authenticated user.
    carol.health().await.unwrap();
    carol.list_tables().await.unwrap();
    // GRANT on an unknown table is refused, as in Cassandra.
    assert!(matches!(
        server_kind(a.grant("carol", Permission::Read, Some("t")).await),
        ErrorKind::UnknownTable { .. }
    ));
    assert!(a.grant("carol", Permission::Create, None).await.unwrap());
    carol.create_table("t", rf1()).await.unwrap();
    // Creating a table grants nothing on it.
    assert_eq!(
        server_kind(carol.table("t").put("k", [("c", "v")]).await),
        unauthorized(Permission::Write)
    );
    assert_eq!(
        server_kind(carol.drop_table("t").await),
        unauthorized(Permission::Alter)
    );
    assert!(a.grant("carol", Permission::Operate, None).await.unwrap());
    carol.flush(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_revoke_on_one_node_takes_effect_on_another() {
    let tmp = tempfile::tempdir().unwrap();
    let n1 = auth_node(tmp.path());
    let mut n2 = Node::new(tmp.path(), "n2");
    let mut flags = n2.auth_flags();
    flags.extend(["--seeds".to_owned(), n1.process.peer.to_string()]);
    n2.start(&flags);
    let a = admin(&n1.addr()).await;
    a.create_table("kv", rf1()).await.unwrap();
    a.create_user("dana", "dana-pw", false, false)
        .await
        .unwrap();
    assert!(a.grant("dana", Permission::Read, Some("kv")).await.unwrap());
    // Wait for the table, the user and the grant to reach n2: dana logs in and reads there.
    let deadline = Instant::now() + SPREAD_DEADLINE;
    let dana = loop {
        if let Ok(c) = login(&n2.addr(), "dana", "dana-pw").await {
            if c.table("kv").get("k").await.is_ok() {
                break c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "dana's grant never reached n2\n{}",
            n2.logs()
        );
        tokio::time::sleep(POLL).await; // polling interval
    };
    // Revoked on n1: dana's open connection to n2 is refused within the deadline.
    assert!(a
        .revoke("dana", Permission::Read, Some("kv"))
        .await
        .unwrap());
    let deadline = Instant::now() + SPREAD_DEADLINE;
    loop {
        match dana.table("kv").get("k").await {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the revoke never reached n2\n{}",
                    n2.logs()
                );
                tokio::time::sleep(POLL).await; // polling interval
            }
            denied => {
                assert_eq!(server_kind(denied), unauthorized(Permission::Read));
                break;
            }
        }
    }
}
