//! Token-aware routing of the client against in-process servers (`tests/support`) whose
//! TOPOLOGY answer each test sets: keyed requests reach the owner of the key's token,
//! fail over clockwise, follow topology changes (polled, and fetched after a connection
//! failure), use nodes learned from the topology; unkeyed requests stay round-robin.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap (workspace lint)

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sibyl_protocol::token::token_of;
use sibyl_protocol::{Client, ClientOptions, NodeInfo, NodeState, Topology};
use support::TestServer;

/// Node tokens of the three test servers: n1 owns (3*2^61, -2^62], n2 (-2^62, 0],
/// n3 (0, 3*2^61].
const TOKENS: [i128; 3] = [-(1 << 62), 0, 3 << 61];

fn node(server: &TestServer, name: &str, tokens: &[i128], up: bool) -> NodeInfo {
    NodeInfo {
        id: name.into(),
        address: server.address(),
        datacenter: "dc1".into(),
        rack: "rack1".into(),
        state: NodeState::Normal,
        up,
        tokens: tokens.to_vec(),
        load_bytes: 0,
    }
}

/// The topology of `servers` named n1, n2, ... with one token each from [`TOKENS`].
fn topology(servers: &[&TestServer]) -> Topology {
    Topology {
        partitioner: "murmur3".into(),
        nodes: servers
            .iter()
            .enumerate()
            .map(|(i, s)| node(s, &format!("n{}", i + 1), &[TOKENS[i]], true))
            .collect(),
    }
}

/// The owner of `key` in `t`, computed from the spec's rule alone: the node with the
/// first token >= the key's token, wrapping to the smallest token.
fn owner(t: &Topology, key: &str) -> String {
    let token = token_of(&t.partitioner, key.as_bytes()).unwrap();
    let mut all: Vec<(i128, &str)> = t
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Normal || n.state == NodeState::Leaving)
        .flat_map(|n| n.tokens.iter().map(move |tk| (*tk, n.id.as_str())))
        .collect();
    all.sort();
    all.iter()
        .find(|(tk, _)| *tk >= token)
        .or(all.first())
        .map(|(_, id)| id.to_string())
        .unwrap()
}

async fn three() -> (TestServer, TestServer, TestServer, Topology) {
    let s1 = TestServer::start("n1").await;
    let s2 = TestServer::start("n2").await;
    let s3 = TestServer::start("n3").await;
    let t = topology(&[&s1, &s2, &s3]);
    for s in [&s1, &s2, &s3] {
        s.state.set_topology(t.clone());
    }
    (s1, s2, s3, t)
}

fn options() -> ClientOptions {
    ClientOptions {
        pool_size: 1,
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

async fn connect(servers: &[&TestServer], options: ClientOptions) -> Client {
    let addrs: Vec<String> = servers.iter().map(|s| s.address()).collect();
    Client::connect_with(&addrs, options).await.unwrap()
}

/// Keys `k0..`, spread over the ring.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

/// Polls `cond` until it holds or 10 s pass.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn routing_keyed_requests_reach_the_owner_of_the_key() {
    let (s1, s2, s3, t) = three().await;
    let client = connect(&[&s1, &s2, &s3], options()).await;
    let table = client.table("t");
    let mut owners = std::collections::BTreeSet::new();
    for key in keys(40) {
        let want = owner(&t, &key);
        let meta = table.put(key.clone(), [("c", "v")]).await.unwrap();
        assert_eq!(meta.replicas[0], want, "put {key}");
        let row = table.get(key.clone()).await.unwrap();
        assert_eq!(row.meta.replicas[0], want, "get {key}");
        let meta = table.delete(key.clone(), "c").await.unwrap();
        assert_eq!(meta.replicas[0], want, "delete {key}");
        owners.insert(want);
    }
    assert_eq!(owners.len(), 3, "the keys cover every node");
}

#[tokio::test]
async fn routing_batch_goes_to_the_owner_of_its_first_key() {
    let (s1, s2, s3, t) = three().await;
    let client = connect(&[&s1, &s2, &s3], options()).await;
    let table = client.table("t");
    for key in keys(12) {
        let meta = client
            .batch()
            .put(table.put(key.clone(), [("a", "1")]))
            .put(table.put("other", [("a", "1")]))
            .await
            .unwrap();
        assert_eq!(meta.replicas[0], owner(&t, &key), "batch led by {key}");
    }
}

#[tokio::test]
async fn routing_uses_nodes_learned_from_the_topology() {
    let (s1, s2, s3, t) = three().await;
    let client = connect(&[&s1], options()).await;
    let mut nodes = client.nodes();
    nodes.sort();
    let mut want = vec![s1.addr, s2.addr, s3.addr];
    want.sort();
    assert_eq!(nodes, want);
    let table = client.table("t");
    for key in keys(20) {
        let meta = table.put(key.clone(), [("c", "v")]).await.unwrap();
        assert_eq!(meta.replicas[0], owner(&t, &key), "put {key}");
    }
    assert!(s2.state.requests.load(Ordering::SeqCst) > 0);
    assert!(s3.state.requests.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn routing_fails_over_clockwise_when_the_owner_is_gone() {
    let (s1, s2, s3, t) = three().await;
    let client = connect(&[&s1, &s2, &s3], options()).await;
    // A key n2 owns; clockwise after n2 comes n3.
    let key = keys(100)
        .into_iter()
        .find(|k| owner(&t, k) == "n2")
        .unwrap();
    assert_eq!(client.route(key.as_bytes()), [s2.addr, s3.addr, s1.addr]);
    s2.shutdown().await;
    let meta = client
        .table("t")
        .put(key.clone(), [("c", "v")])
        .await
        .unwrap();
    assert_eq!(meta.replicas[0], "n3");
}

#[tokio::test]
async fn routing_skips_a_node_the_topology_marks_down() {
    let (s1, s2, s3, mut t) = three().await;
    t.nodes[0].up = false;
    for s in [&s1, &s2, &s3] {
        s.state.set_topology(t.clone());
    }
    let client = connect(&[&s1, &s2, &s3], options()).await;
    let key = keys(100)
        .into_iter()
        .find(|k| owner(&t, k) == "n1")
        .unwrap();
    // n1 is down: the next clockwise (n2) first, n1 last.
    assert_eq!(client.route(key.as_bytes()), [s2.addr, s3.addr, s1.addr]);
    let meta = client
        .table("t")
        .put(key.clone(), [("c", "v")])
        .await
        .unwrap();
    assert_eq!(meta.replicas[0], "n2");
    assert_eq!(s1.state.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn routing_follows_a_polled_topology_change() {
    let (s1, s2, s3, t) = three().await;
    let options = ClientOptions {
        topology_poll_interval: Duration::from_millis(20),
        ..options()
    };
    let client = connect(&[&s1, &s2, &s3], options).await;
    let key = keys(100)
        .into_iter()
        .find(|k| owner(&t, k) == "n1")
        .unwrap();
    assert_eq!(client.route(key.as_bytes())[0], s1.addr);
    // n1 leaves the ring (state left): n2 takes its range.
    let mut changed = t.clone();
    changed.nodes[0].state = NodeState::Left;
    for s in [&s1, &s2, &s3] {
        s.state.set_topology(changed.clone());
    }
    eventually("the client to poll the new topology", || {
        client.route(key.as_bytes()).first() == Some(&s2.addr)
    })
    .await;
    let meta = client
        .table("t")
        .put(key.clone(), [("c", "v")])
        .await
        .unwrap();
    assert_eq!(meta.replicas[0], "n2");
    assert_eq!(client.ring().unwrap().members().len(), 2);
}

#[tokio::test]
async fn routing_fetches_the_topology_again_after_a_connection_failure() {
    let (s1, s2, s3, t) = three().await;
    let options = ClientOptions {
        topology_poll_interval: Duration::ZERO,
        reconnect_backoff: Duration::from_millis(10),
        ..options()
    };
    let client = connect(&[&s1, &s2, &s3], options).await;
    let states = [&s1, &s2, &s3].map(|s| std::sync::Arc::clone(&s.state));
    let fetched = || {
        states
            .iter()
            .map(|s| s.topology_requests.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    assert_eq!(fetched(), 1, "one fetch on connect, no polling");
    let key = keys(100)
        .into_iter()
        .find(|k| owner(&t, k) == "n3")
        .unwrap();
    s3.shutdown().await;
    client
        .table("t")
        .put(key.clone(), [("c", "v")])
        .await
        .unwrap();
    eventually("a topology fetch after the failed connect", || {
        fetched() >= 2
    })
    .await;
}

#[tokio::test]
async fn routing_off_sends_round_robin_and_never_asks_for_the_topology() {
    let (s1, s2, s3, _) = three().await;
    let options = ClientOptions {
        token_aware: false,
        ..options()
    };
    let client = connect(&[&s1, &s2, &s3], options).await;
    let table = client.table("t");
    for key in keys(9) {
        table.put(key.clone(), [("c", "v")]).await.unwrap();
    }
    for s in [&s1, &s2, &s3] {
        assert_eq!(s.state.topology_requests.load(Ordering::SeqCst), 0);
        assert_eq!(s.state.requests.load(Ordering::SeqCst), 3);
    }
    assert!(client.ring().is_none());
}

#[tokio::test]
async fn routing_unkeyed_requests_stay_round_robin_over_the_nodes_given() {
    let (s1, s2, s3, _) = three().await;
    // Only s1 and s2 given; s3 is learned from the topology.
    let client = connect(&[&s1, &s2], options()).await;
    for _ in 0..6 {
        client.ping().await.unwrap();
    }
    assert_eq!(s1.state.requests.load(Ordering::SeqCst), 3);
    assert_eq!(s2.state.requests.load(Ordering::SeqCst), 3);
    assert_eq!(s3.state.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn routing_without_a_usable_topology_falls_back_to_round_robin() {
    let s1 = TestServer::start("n1").await;
    let s2 = TestServer::start("n2").await;
    let mut t = topology(&[&s1, &s2]);
    t.partitioner = "sha1".into();
    s1.state.set_topology(t.clone());
    s2.state.set_topology(t);
    let client = connect(&[&s1, &s2], options()).await;
    assert!(client.ring().is_none());
    let table = client.table("t");
    for key in keys(4) {
        table.put(key.clone(), [("c", "v")]).await.unwrap();
    }
    assert_eq!(s1.state.requests.load(Ordering::SeqCst), 2);
    assert_eq!(s2.state.requests.load(Ordering::SeqCst), 2);
}
