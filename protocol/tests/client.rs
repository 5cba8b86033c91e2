//! The client against an in-process server speaking the real wire format
//! (`tests/support`): table operations, contexts, multiplexing, out-of-order replies,
//! timeouts, reconnect and failover.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl_protocol::client::ClientError;
use sibyl_protocol::{Client, ClientOptions, Consistency, ErrorCode, ErrorKind, TableOptions};
use support::TestServer;

fn options(pool_size: usize) -> ClientOptions {
    ClientOptions {
        pool_size,
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

async fn client_for(servers: &[&TestServer], pool_size: usize) -> Client {
    let addrs: Vec<String> = servers.iter().map(|s| s.address()).collect();
    Client::connect_with(&addrs, options(pool_size))
        .await
        .unwrap()
}

/// Polls `cond` until it holds or 10 s pass.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn client_put_then_get_returns_value() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    t.put("alice", [("email", "a@x"), ("name", "Alice")])
        .await
        .unwrap();
    let row = t.get("alice").await.unwrap();
    assert_eq!(row.len(), 2);
    assert_eq!(row.value("email").unwrap(), &Bytes::from_static(b"a@x"));
    assert_eq!(row.value("name").unwrap(), &Bytes::from_static(b"Alice"));
}

#[tokio::test]
async fn client_get_columns_returns_only_named_columns() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    t.put("k", [("a", "1"), ("b", "2"), ("c", "3")])
        .await
        .unwrap();
    let row = t.get_columns("k", &["a", "c"]).await.unwrap();
    let names: Vec<&[u8]> = row.iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(names, vec![&b"a"[..], &b"c"[..]]);
}

#[tokio::test]
async fn client_slice_pages_through_a_wide_row() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("wide");
    let columns: Vec<(String, String)> = (0..100)
        .map(|i| (format!("c{i:03}"), format!("v{i}")))
        .collect();
    t.put("row", columns.clone()).await.unwrap();
    let mut seen = Vec::new();
    let mut page = t.slice("row", "c010".."c090", 30).await.unwrap();
    let mut pages = 1;
    loop {
        seen.extend(
            page.row
                .iter()
                .map(|c| String::from_utf8(c.name.to_vec()).unwrap()),
        );
        if !page.has_more() {
            break;
        }
        page = t
            .slice("row", "c010".."c090", 30)
            .after(&page)
            .await
            .unwrap();
        pages += 1;
    }
    let expected: Vec<String> = (10..90).map(|i| format!("c{i:03}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn client_slice_inclusive_range_includes_its_end() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("wide");
    t.put("row", [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")])
        .await
        .unwrap();
    let page = t.slice("row", "b"..="c", 0).await.unwrap();
    let names: Vec<&[u8]> = page.row.iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(names, vec![&b"b"[..], &b"c"[..]]);
    assert!(!page.has_more());
}

#[tokio::test]
async fn client_put_with_context_from_supersedes_what_was_read() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    t.put("k", [("a", "v1")]).await.unwrap();
    let row = t.get("k").await.unwrap();
    t.put("k", [("a", "v2")]).context_from(&row).await.unwrap();
    let after = t.get("k").await.unwrap();
    let cell = after.cell("a").unwrap();
    assert!(!cell.has_conflict(), "context was not carried: {cell:?}");
    assert_eq!(cell.value().unwrap(), &Bytes::from_static(b"v2"));
}

#[tokio::test]
async fn client_put_without_context_is_a_blind_write() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    t.put("k", [("a", "v1")]).await.unwrap();
    t.put("k", [("a", "v2")]).await.unwrap();
    let row = t.get("k").await.unwrap();
    assert_eq!(row.values("a").len(), 2);
}

#[tokio::test]
async fn client_delete_with_context_leaves_only_a_tombstone() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    t.put("k", [("a", "v1"), ("b", "v2")]).await.unwrap();
    let row = t.get("k").await.unwrap();
    t.delete("k", "a").context_from(&row).await.unwrap();
    let after = t.get("k").await.unwrap();
    assert!(after.cell("a").unwrap().is_deleted());
    assert_eq!(after.cell("a").unwrap().siblings.len(), 1);
    assert_eq!(after.value("b").unwrap(), &Bytes::from_static(b"v2"));
}

#[tokio::test]
async fn client_delete_row_with_context_supersedes_every_cell() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    t.put("k", [("a", "1"), ("b", "2")]).await.unwrap();
    let row = t.get("k").await.unwrap();
    t.delete_row("k").context_from(&row).await.unwrap();
    let after = t.get("k").await.unwrap();
    assert_eq!(after.len(), 2);
    assert!(after
        .iter()
        .all(|c| c.is_deleted() && c.siblings.len() == 1));
}

#[tokio::test]
async fn client_consistency_travels_with_the_request() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("users");
    let meta = t
        .put("k", [("a", "1")])
        .consistency(Consistency::ALL.strict())
        .await
        .unwrap();
    assert_eq!(meta.replicas[0], "n1");
    assert_eq!(
        meta.replicas[1],
        format!("{:?}", Some(Consistency::ALL.strict()))
    );
    let row = t
        .get("k")
        .consistency(Consistency::explicit(2))
        .await
        .unwrap();
    assert_eq!(
        row.meta.replicas[1],
        format!("{:?}", Some(Consistency::explicit(2)))
    );
}

#[tokio::test]
async fn client_multiplexes_many_requests_on_one_connection() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            t.put(key.clone(), [("c", format!("v{i}"))]).await.unwrap();
            let row = t.get(key).await.unwrap();
            assert_eq!(row.value("c").unwrap(), &Bytes::from(format!("v{i}")));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(server.state.requests.load(Ordering::SeqCst), 400);
}

#[tokio::test]
async fn client_receives_replies_out_of_order() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    let slow = tokio::spawn({
        let t = t.clone();
        async move { t.get("wait:g").await }
    });
    eventually("the slow request to reach the server", || {
        server.state.requests.load(Ordering::SeqCst) == 1
    })
    .await;
    // Sent after the slow one on the same connection, answered first.
    t.put("fast", [("c", "v")]).await.unwrap();
    assert!(!slow.is_finished());
    t.get("open:g").await.unwrap();
    slow.await.unwrap().unwrap();
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn client_request_times_out_and_connection_survives() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let err = client
        .table("t")
        .get("hang")
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    client.ping().await.unwrap();
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn client_late_reply_after_timeout_is_discarded() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    t.put("k", [("c", "mine")]).await.unwrap();
    let err = t
        .get("wait:late")
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    t.get("open:late").await.unwrap();
    let row = t.get("k").await.unwrap();
    assert_eq!(row.value("c").unwrap(), &Bytes::from_static(b"mine"));
}

#[tokio::test]
async fn client_reconnects_after_the_server_drops_the_connection() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    let err = t.get("drop").await.unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionClosed { sent: true, .. }),
        "{err:?}"
    );
    t.put("k", [("c", "v")]).await.unwrap();
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_connection_error_fails_every_waiting_request_with_the_servers_reason() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    let waiting = {
        let t = client.table("t");
        tokio::spawn(async move { t.get("hang").timeout(Duration::from_secs(30)).await })
    };
    // Poll until the hanging request has reached the server (no sleep for a condition).
    while server.state.requests.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    let err = t.get("connection-error").await.unwrap_err();
    let reason = |e: &ClientError| match e {
        ClientError::ConnectionClosed { reason, .. } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(reason(&err).contains("input unreadable"), "{err:?}");
    let other = waiting.await.unwrap().unwrap_err();
    assert!(reason(&other).contains("input unreadable"), "{other:?}");
    // The next request reconnects.
    t.put("k", [("c", "v")]).await.unwrap();
}

#[tokio::test]
async fn client_fails_over_when_a_node_goes_away() {
    let s1 = TestServer::start("n1").await;
    let s2 = TestServer::start("n2").await;
    let client = client_for(&[&s1, &s2], 1).await;
    s1.shutdown().await;
    for _ in 0..6 {
        client.ping().await.unwrap();
    }
    assert!(s2.state.requests.load(Ordering::SeqCst) >= 6);
}

#[tokio::test]
async fn client_write_without_a_write_id_is_not_resent_after_the_connection_drops() {
    let s1 = TestServer::start("n1").await;
    let s2 = TestServer::start("n2").await;
    let client = client_for(&[&s1, &s2], 1).await;
    let mut put = match client.table("t").put("drop", [("c", "v")]).to_mutation() {
        sibyl_protocol::Mutation::Insert(i) => i,
        other => panic!("{other:?}"),
    };
    put.write_id = None;
    let err = client
        .request(sibyl_protocol::Request::Insert {
            insert: put,
            consistency: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionClosed { sent: true, .. }),
        "{err:?}"
    );
    let total = s1.state.requests.load(Ordering::SeqCst) + s2.state.requests.load(Ordering::SeqCst);
    assert_eq!(
        total, 1,
        "a write that may have been applied is not sent again"
    );
}

#[tokio::test]
async fn client_write_with_its_write_id_is_resent_to_another_node_after_the_connection_drops() {
    let s1 = TestServer::start("n1").await;
    let s2 = TestServer::start("n2").await;
    let client = client_for(&[&s1, &s2], 1).await;
    // The builder gives every write a write id: resending it is safe (the test servers
    // drop the connection of key "drop" each time, so both are tried).
    let err = client
        .table("t")
        .put("drop", [("c", "v")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectionClosed { sent: true, .. }),
        "{err:?}"
    );
    assert_eq!(s1.state.requests.load(Ordering::SeqCst), 1);
    assert_eq!(s2.state.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn client_overloaded_node_is_skipped_for_another() {
    let s1 = TestServer::start("n1").await;
    let s2 = TestServer::start("n2").await;
    let client = client_for(&[&s1, &s2], 1).await;
    let err = client.table("t").get("overload").await.unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::Overloaded));
    assert_eq!(s1.state.requests.load(Ordering::SeqCst), 1);
    assert_eq!(s2.state.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn client_connect_to_unsupported_version_names_server_versions() {
    let server = TestServer::start_with_versions("n1", vec![2, 3]).await;
    let err = Client::connect(&[server.address()]).await.unwrap_err();
    match err {
        ClientError::Server(e) => assert_eq!(
            e.kind,
            ErrorKind::UnsupportedVersion {
                supported: vec![2, 3]
            }
        ),
        other => panic!("expected UNSUPPORTED_VERSION, got {other:?}"),
    }
}

#[tokio::test]
async fn client_large_value_passes_after_handshake_raises_the_cap() {
    let server = TestServer::start("n1").await;
    let t = client_for(&[&server], 1).await.table("t");
    let big = Bytes::from(vec![0xabu8; 256 * 1024]);
    t.put("k", [("c", big.clone())]).await.unwrap();
    assert_eq!(t.get("k").await.unwrap().value("c").unwrap(), &big);
}

#[tokio::test]
async fn client_create_table_twice_reports_table_exists() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    client
        .create_table("users", TableOptions::default())
        .await
        .unwrap();
    let err = client
        .create_table("users", TableOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some(ErrorCode::TableExists));
    assert!(!client
        .create_table_if_not_exists("users", TableOptions::default())
        .await
        .unwrap());
    assert_eq!(
        client.list_tables().await.unwrap(),
        vec!["users".to_owned()]
    );
    assert_eq!(
        client.describe_table("users").await.unwrap(),
        TableOptions::default()
    );
}

#[tokio::test]
async fn client_batch_applies_every_mutation() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    t.put("k2", [("gone", "x")]).await.unwrap();
    let k2 = t.get("k2").await.unwrap();
    client
        .batch()
        .put(t.put("k1", [("a", "1")]))
        .delete(t.delete_row("k2").context_from(&k2))
        .await
        .unwrap();
    assert_eq!(
        t.get("k1").await.unwrap().value("a").unwrap(),
        &Bytes::from_static(b"1")
    );
    assert!(t
        .get("k2")
        .await
        .unwrap()
        .cell("gone")
        .unwrap()
        .is_deleted());
}

#[tokio::test]
async fn client_connect_fails_when_no_node_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let err = Client::connect(&[addr]).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn client_corrupt_frame_fails_pending_requests_and_reconnects() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 1).await;
    let t = client.table("t");
    let blocked = tokio::spawn({
        let t = t.clone();
        async move { t.get("wait:never").await }
    });
    eventually("the blocked request to reach the server", || {
        server.state.requests.load(Ordering::SeqCst) == 1
    })
    .await;
    let err = t.get("corrupt").await.unwrap_err();
    match &err {
        ClientError::ConnectionClosed {
            reason, sent: true, ..
        } => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("expected a closed connection, got {other:?}"),
    }
    let blocked_err = blocked.await.unwrap().unwrap_err();
    assert!(
        matches!(
            blocked_err,
            ClientError::ConnectionClosed { sent: true, .. }
        ),
        "{blocked_err:?}"
    );
    client.ping().await.unwrap();
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_pool_opens_pool_size_connections_per_node() {
    let server = TestServer::start("n1").await;
    let client = client_for(&[&server], 3).await;
    for _ in 0..6 {
        client.ping().await.unwrap();
    }
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 3);
    assert_eq!(client.open_connections(), 3);
}
