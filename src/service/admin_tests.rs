//! Unit tests of the operator commands: a real engine in a temp dir; membership through
//! real gossip runtimes on loopback TCP (ports chosen by the OS).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl_protocol::{
    ColumnWrite, ErrorKind, NodeState, Request, Response, RowInsert, TableOptions, TableStatistics,
    Topology,
};

use crate::cluster::{
    ClusterHandle, ClusterRuntime, CommandInbox, GossipConfig, Gossiper, LocalNode, NodeStatus,
    TokenPlan,
};
use crate::net::{PeerNetwork, TcpNetwork, TcpOptions};
use crate::ring::{NodeId, NodeLocation, Token};
use crate::service::{Execution, Service, ServiceOptions};
use crate::versioning::ManualClock;

struct Node {
    _dir: tempfile::TempDir,
    svc: Arc<Service>,
    /// The membership handle's inbox, until gossip starts (members only).
    inbox: Mutex<Option<(Arc<ClusterHandle>, CommandInbox)>>,
    gossip: Mutex<Option<(ClusterRuntime, TcpNetwork)>>,
    rt: tokio::runtime::Runtime,
}

/// A service on its own (no cluster).
fn node() -> Node {
    open_node(false)
}

/// A service opened with a membership handle, ready to [`Node::join`].
fn member() -> Node {
    open_node(true)
}

fn open_node(member: bool) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (handle, inbox) = ClusterHandle::new();
    let opts = ServiceOptions {
        memtable_size: 1 << 20,
        ..ServiceOptions::new(
            dir.path().to_path_buf(),
            Arc::new(ManualClock::at_secs(1_700_000_000)),
        )
    };
    let svc = Service::open_in_cluster(opts, member.then(|| handle.clone())).unwrap();
    Node {
        _dir: dir,
        svc: Arc::new(svc),
        inbox: Mutex::new(member.then_some((handle, inbox))),
        gossip: Mutex::new(None),
        rt: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    }
}

impl Node {
    fn create(&self, table: &str) {
        let r = self.svc.handle(Request::CreateTable {
            name: table.into(),
            options: TableOptions {
                replication_factor: 1,
                ..TableOptions::default()
            },
            if_not_exists: false,
        });
        assert!(matches!(r, Response::SchemaChanged { .. }), "{r:?}");
    }

    fn put(&self, table: &str, key: &str) {
        let r = self.svc.handle(Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: table.into(),
                key: Bytes::copy_from_slice(key.as_bytes()),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::from_static(b"c"),
                    value: Bytes::from_static(b"some value"),
                    context: Bytes::new(),
                }],
            },
            consistency: None,
        });
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
    }

    fn stats(&self, table: &str) -> TableStatistics {
        match self.svc.handle(Request::TableStats {
            table: table.into(),
        }) {
            Response::AdminTableStats(s) => s,
            other => panic!("expected table stats, got {other:?}"),
        }
    }

    fn topology(&self) -> Topology {
        match self.svc.handle(Request::Topology) {
            Response::Topology(t) => t,
            other => panic!("expected a topology, got {other:?}"),
        }
    }

    /// Starts gossip for this node (one token, so it is normal at once) and attaches it.
    /// Starts gossip; `seed` is another member's `(address, cluster)`. Returns this
    /// node's `(address, cluster)`.
    fn join(&self, id: u64, seed: Option<(SocketAddr, String)>) -> (SocketAddr, String) {
        static CLUSTERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (handle, inbox) = self.inbox.lock().unwrap().take().expect("a member, once");
        // One cluster name per first node: parallel tests never merge through a reused port.
        let cluster = seed.as_ref().map(|s| s.1.clone()).unwrap_or_else(|| {
            let n = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("admin-test-{}-{n}", std::process::id())
        });
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let net = self
            .rt
            .block_on(TcpNetwork::bind(any, TcpOptions::new(&cluster, NodeId(id))))
            .unwrap();
        let addr = net.local_addr();
        let seed = seed.map(|s| s.0);
        let mut config = GossipConfig::new(&cluster, vec![seed.unwrap_or(addr)]);
        config.interval_ms = 100;
        let local = LocalNode {
            id: NodeId(id),
            generation: 1,
            peer_address: addr,
            client_address: None,
            location: NodeLocation::default(),
            tokens: Vec::new(),
            status: NodeStatus::Joining,
            schema_version: 0,
            load: 0,
        };
        let gossiper = Gossiper::new(config, local, id, 0);
        let token = Token::Murmur3(i64::try_from(id).unwrap() * 1_000_000);
        let _entered = self.rt.enter();
        let runtime = ClusterRuntime::start(
            handle,
            inbox,
            gossiper,
            Arc::new(net.clone()),
            self.svc.clone(),
            TokenPlan::Existing(vec![token]),
            Box::new(|_| {}),
        )
        .unwrap();
        *self.gossip.lock().unwrap() = Some((runtime, net));
        (addr, cluster)
    }

    fn stop_gossip(&self) {
        let (mut runtime, net) = self.gossip.lock().unwrap().take().expect("joined");
        self.rt.block_on(async {
            runtime.shutdown().await;
            net.shutdown().await;
        });
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_of(t: &Topology, id: u64) -> Option<(NodeState, bool)> {
    let id = format!("{id:016x}");
    t.nodes.iter().find(|n| n.id == id).map(|n| (n.state, n.up))
}

fn invalid_message(r: Response) -> String {
    match r {
        Response::Error(e) if e.kind == ErrorKind::Invalid => e.message,
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn flush_table_writes_an_sstable_that_table_stats_counts() {
    let n = node();
    n.create("t");
    for k in ["a", "b", "c"] {
        n.put("t", k);
    }
    assert_eq!(n.stats("t").sstables, 0);
    let r = n.svc.handle(Request::Flush {
        table: Some("t".into()),
    });
    assert_eq!(r, Response::Tables(vec!["t".into()]));
    let s = n.stats("t");
    assert!(s.sstables >= 1, "{s:?}");
    assert_eq!(s.sstable_entries, 3, "{s:?}");
    assert!(s.sstable_bytes > 0, "{s:?}");
    assert_eq!(s.memtable_entries, 0, "{s:?}");
    assert!(s.flushes >= 1, "{s:?}");
    assert_eq!(s.sstables_per_level.iter().sum::<u32>(), s.sstables);
}

#[test]
fn flush_all_names_every_table_in_order() {
    let n = node();
    n.create("zeta");
    n.create("alpha");
    n.put("zeta", "k");
    let r = n.svc.handle(Request::Flush { table: None });
    assert_eq!(r, Response::Tables(vec!["alpha".into(), "zeta".into()]));
    assert!(n.stats("zeta").sstables >= 1);
}

#[test]
fn flush_unknown_table_is_unknown_table() {
    let n = node();
    let r = n.svc.handle(Request::Flush {
        table: Some("nope".into()),
    });
    assert!(
        matches!(&r, Response::Error(e) if e.kind == ErrorKind::UnknownTable { table: "nope".into() }),
        "{r:?}"
    );
}

#[test]
fn compact_merges_sstables_into_one() {
    let n = node();
    n.create("t");
    for k in ["a", "b"] {
        n.put("t", k);
        n.svc.handle(Request::Flush {
            table: Some("t".into()),
        });
    }
    assert_eq!(n.stats("t").sstables, 2);
    let r = n.svc.handle(Request::Compact { table: "t".into() });
    let Response::AdminTableStats(s) = r else {
        panic!("expected table stats, got {r:?}")
    };
    assert_eq!(s.sstables, 1, "{s:?}");
    assert_eq!(s.sstable_entries, 2, "{s:?}");
    assert!(s.compactions >= 1, "{s:?}");
}

#[test]
fn table_stats_unknown_table_is_unknown_table() {
    let n = node();
    let r = n.svc.handle(Request::TableStats {
        table: "nope".into(),
    });
    assert!(
        matches!(&r, Response::Error(e) if matches!(e.kind, ErrorKind::UnknownTable { .. })),
        "{r:?}"
    );
}

#[test]
fn execution_runs_flush_compact_and_membership_commands_blocking() {
    let n = node();
    for req in [
        Request::Flush { table: None },
        Request::Compact { table: "t".into() },
        Request::RemoveNode {
            node_id: "1".into(),
            force: false,
        },
        Request::Decommission,
    ] {
        assert_eq!(n.svc.execution(&req), Execution::Blocking, "{req:?}");
    }
    let stats = Request::TableStats { table: "t".into() };
    assert_eq!(n.svc.execution(&stats), Execution::Inline);
}

#[test]
fn topology_without_cluster_reports_the_load() {
    let n = node();
    n.create("t");
    n.put("t", "k");
    let t = n.topology();
    assert!(t.nodes[0].load_bytes > 0, "{t:?}");
}

#[test]
fn remove_node_malformed_id_is_invalid() {
    let n = node();
    for bad in ["", "xyz", "00000000000000001"] {
        let msg = invalid_message(n.svc.handle(Request::RemoveNode {
            node_id: bad.into(),
            force: false,
        }));
        assert!(msg.contains("hex digits"), "{bad:?}: {msg}");
    }
}

#[test]
fn remove_node_without_cluster_is_an_unknown_node() {
    let n = node();
    let msg = invalid_message(n.svc.handle(Request::RemoveNode {
        node_id: "00000000000000ab".into(),
        force: false,
    }));
    assert!(msg.contains("unknown node 00000000000000ab"), "{msg}");
}

#[test]
fn decommission_without_cluster_is_invalid() {
    let n = node();
    let msg = invalid_message(n.svc.handle(Request::Decommission));
    assert!(msg.contains("not part of a cluster"), "{msg}");
}

#[test]
fn remove_node_refuses_up_unknown_self_and_a_last_copy_then_removes_a_down_node() {
    let (a, b) = (member(), member());
    let seed = a.join(1, None);
    b.join(2, Some(seed));
    wait_for("a to see b up and normal", || {
        state_of(&a.topology(), 2) == Some((NodeState::Normal, true))
    });
    let remove_with = |id: &str, force: bool| {
        a.svc.handle(Request::RemoveNode {
            node_id: id.into(),
            force,
        })
    };
    let remove = |id: &str| remove_with(id, false);
    let up = invalid_message(remove("0000000000000002"));
    assert!(up.contains("is up"), "{up}");
    let unknown = invalid_message(remove("0000000000000009"));
    assert!(unknown.contains("unknown node"), "{unknown}");
    let itself = invalid_message(remove("1"));
    assert!(itself.contains("cannot remove itself"), "{itself}");

    b.stop_gossip();
    wait_for("a to see b down", || {
        state_of(&a.topology(), 2).is_some_and(|(_, up)| !up)
    });
    // An rf 1 table: node 2's ranges have no other replica to copy them from.
    a.create("t");
    let last_copy = invalid_message(remove("2"));
    assert!(
        last_copy.contains("no other replica") && last_copy.contains("--force"),
        "{last_copy}"
    );
    assert_eq!(state_of(&a.topology(), 2), Some((NodeState::Normal, false)));
    let r = remove_with("2", true);
    assert!(
        matches!(&r, Response::AdminDone { message } if message.contains("removed")),
        "{r:?}"
    );
    wait_for("a to show b left", || {
        state_of(&a.topology(), 2) == Some((NodeState::Left, false))
    });
    a.stop_gossip();
}

#[test]
fn decommission_announces_left_and_refuses_a_second_time() {
    let a = member();
    a.join(1, None);
    wait_for("a normal", || {
        state_of(&a.topology(), 1) == Some((NodeState::Normal, true))
    });
    let r = a.svc.handle(Request::Decommission);
    assert!(
        matches!(&r, Response::AdminDone { message } if message.contains("leaving, then left")),
        "{r:?}"
    );
    assert_eq!(
        state_of(&a.topology(), 1).map(|s| s.0),
        Some(NodeState::Left)
    );
    let again = invalid_message(a.svc.handle(Request::Decommission));
    assert!(again.contains("already left"), "{again}");
    // It keeps serving.
    assert_eq!(a.svc.handle(Request::Ping), Response::Pong);
    a.stop_gossip();
}

/// A view of the member `n` (normal, token 0) and, when `joining`, of a node 2 joining with
/// token 100, published through its membership handle (no gossip runs).
fn publish_view(n: &Node, joining: bool) {
    use crate::cluster::{ClusterView, NodeView};
    let local = NodeId(n.svc.actor().node);
    let node = |id: NodeId, status: NodeStatus, token: i64| {
        NodeView::for_test(id.0, status, &[token], true)
    };
    let mut nodes = std::collections::BTreeMap::new();
    nodes.insert(local, node(local, NodeStatus::Normal, 0));
    if joining {
        nodes.insert(NodeId(2), node(NodeId(2), NodeStatus::Joining, 100));
    }
    let guard = n.inbox.lock().unwrap();
    let (handle, _) = guard.as_ref().expect("a member");
    handle.publish(Arc::new(ClusterView::new(
        local,
        crate::ring::Partitioner::Murmur3,
        nodes,
    )));
}

#[test]
fn cleanup_is_refused_during_a_ring_change_and_keeps_what_the_node_replicates() {
    let n = member();
    n.create("t");
    for k in ["a", "b", "c"] {
        n.put("t", k);
    }
    publish_view(&n, true);
    let busy = invalid_message(n.svc.handle(Request::Cleanup { table: None }));
    assert!(
        busy.contains("ring change is under way") && busy.contains("0000000000000002 joining"),
        "{busy}"
    );
    // The only owner of every range: nothing to drop, and the data stays.
    publish_view(&n, false);
    match n.svc.handle(Request::Cleanup { table: None }) {
        Response::AdminCleanup(tables) => {
            assert_eq!(tables.len(), 1, "{tables:?}");
            assert_eq!((tables[0].table.as_str(), tables[0].dropped), ("t", 0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(n.svc.engine.stats("t").unwrap().sstable_entries, 3);
    let unknown = n.svc.handle(Request::Cleanup {
        table: Some("nope".into()),
    });
    assert!(
        matches!(&unknown, Response::Error(e) if matches!(e.kind, ErrorKind::UnknownTable { .. })),
        "{unknown:?}"
    );
}
