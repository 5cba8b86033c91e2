//! Real `sibyl` processes forming a cluster on loopback: free ports, a temp directory per
//! test, conditions polled with deadlines (never slept for), every child killed by its own
//! PID when the test ends. Membership is checked through the client protocol's topology
//! request, the same answer `sibyl-admin status` renders.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl_protocol::{
    Client, ClientOptions, ColumnWrite, Consistency, ConsistencyLevel, ErrorKind, NodeInfo,
    NodeState, Request, Response, RowInsert, Selector, TableOptions, Topology,
};

/// How long nodes may take to start and join (debug builds on a shared machine).
const JOIN_DEADLINE: Duration = Duration::from_secs(60);
/// How long the failure detector may take to convict a killed node (phi 8 with one
/// gossip round a second takes about 6-10 s).
const DOWN_DEADLINE: Duration = Duration::from_secs(30);
/// Polling interval of every wait.
const POLL: Duration = Duration::from_millis(100);

#[path = "common/launcher.rs"]
mod launcher;
use launcher::{free_addr, SibylProcess, EXIT_DEADLINE};

/// One `sibyl` child with fixed ports and data directory (so it can be restarted); each
/// start writes its own `stdout.N` and `log.N` in the node's directory.
struct NodeProc {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    dir: PathBuf,
    starts: usize,
    process: SibylProcess,
}

impl NodeProc {
    fn new(root: &Path, name: &str) -> NodeProc {
        let process = SibylProcess::new(&root.join(name).join("data"));
        NodeProc {
            name: name.into(),
            client: process.client,
            peer: process.peer,
            dir: root.join(name),
            starts: 0,
            process,
        }
    }

    fn stdout_path(&self) -> PathBuf {
        self.dir.join(format!("stdout.{}", self.starts))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("log.{}", self.starts))
    }

    /// Starts the process (again) with `extra` flags.
    fn start(&mut self, extra: &[String]) {
        assert!(!self.process.is_running(), "{} already running", self.name);
        std::fs::create_dir_all(&self.dir).unwrap();
        self.starts += 1;
        let mut args = self.default_cluster_name(extra);
        args.extend_from_slice(extra);
        let (stdout, log) = (self.stdout_path(), self.log_path());
        self.process.spawn(&args, &stdout, &log);
    }

    /// Unless `extra` names a cluster, one per test directory: tests run in parallel and
    /// a port freed by one test's stopped node may be reused by another test's node, which
    /// must then refuse the first test's gossip instead of joining its cluster.
    fn default_cluster_name(&self, extra: &[String]) -> Vec<String> {
        if extra.iter().any(|a| a == "--cluster-name") {
            return Vec::new();
        }
        let root = self.dir.parent().and_then(|p| p.file_name());
        let name = format!(
            "test-{}",
            root.map(|n| n.to_string_lossy()).unwrap_or_default()
        );
        vec!["--cluster-name".to_owned(), name]
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            let log = std::fs::read_to_string(self.dir.join(format!("log.{i}")));
            out.push_str(&format!(
                "--- {} start {i} ---\n{}\n",
                self.name,
                log.unwrap_or_default()
            ));
        }
        out
    }

    /// The generation printed on the ready line of the latest start.
    fn generation(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.stdout_path()).ok()?;
        let rest = text.split("generation ").nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }

    fn signal(&self, sig: i32) {
        self.process.signal(sig);
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let logs = self.logs();
        self.process.wait_exit(|| logs.clone())
    }
}

/// A blocking façade over the async client.
struct Probe {
    rt: tokio::runtime::Runtime,
}

impl Probe {
    fn new() -> Probe {
        Probe {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    fn client(&self, addr: SocketAddr) -> Option<Client> {
        let options = ClientOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            pool_size: 1,
            ..ClientOptions::default()
        };
        self.rt
            .block_on(Client::connect_with(&[addr.to_string()], options))
            .ok()
    }

    fn topology(&self, addr: SocketAddr) -> Option<Topology> {
        let c = self.client(addr)?;
        self.rt.block_on(c.topology()).ok()
    }

    fn tables(&self, addr: SocketAddr) -> Option<Vec<String>> {
        let c = self.client(addr)?;
        self.rt.block_on(c.list_tables()).ok()
    }

    fn create_table(&self, addr: SocketAddr, name: &str) {
        let c = self.client(addr).expect("connect");
        self.rt
            .block_on(c.create_table(name, TableOptions::default()))
            .unwrap();
    }
}

fn node_at<'a>(t: &'a Topology, n: &NodeProc) -> Option<&'a NodeInfo> {
    let addr = n.client.to_string();
    t.nodes.iter().find(|i| i.address == addr)
}

/// Polls `cond` until it holds; on the deadline fails with `what` and every node's log.
fn wait_for(what: &str, deadline: Duration, nodes: &[&NodeProc], mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        if Instant::now() >= end {
            let logs: String = nodes.iter().map(|n| n.logs()).collect();
            panic!("timed out waiting for {what}\n{logs}");
        }
        std::thread::sleep(POLL); // polling interval
    }
}

/// True when `t` lists exactly `nodes`, each up and normal with `tokens` tokens.
fn all_up_normal(t: &Topology, nodes: &[&NodeProc], tokens: usize) -> bool {
    t.nodes.len() == nodes.len()
        && nodes.iter().all(|n| {
            node_at(t, n)
                .is_some_and(|i| i.up && i.state == NodeState::Normal && i.tokens.len() == tokens)
        })
}

/// Starts nodes one at a time (node 1 alone, the others seeded by it), each once the
/// previous ones are normal in its topology; returns once every node sees all of them.
fn start_cluster(probe: &Probe, root: &Path, count: usize, extra: &[String]) -> Vec<NodeProc> {
    start_cluster_with(probe, root, count, |_| extra.to_vec())
}

/// [`start_cluster`] with the flags of node `i` (from 0) given by `extra(i)`.
fn start_cluster_with(
    probe: &Probe,
    root: &Path,
    count: usize,
    extra: impl Fn(usize) -> Vec<String>,
) -> Vec<NodeProc> {
    let mut nodes: Vec<NodeProc> = (1..=count)
        .map(|i| NodeProc::new(root, &format!("node{i}")))
        .collect();
    let seed = nodes[0].peer.to_string();
    for i in 0..count {
        let mut args = extra(i);
        if i > 0 {
            args.extend(["--seeds".to_owned(), seed.clone()]);
        }
        nodes[i].start(&args);
        let started: Vec<&NodeProc> = nodes[..=i].iter().collect();
        let addr = nodes[i].client;
        wait_for(
            &format!("node {} to join", i + 1),
            JOIN_DEADLINE,
            &started,
            || {
                probe
                    .topology(addr)
                    .is_some_and(|t| all_up_normal(&t, &started, 16))
            },
        );
    }
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "every node to see all the others",
        JOIN_DEADLINE,
        &all,
        || {
            all.iter().all(|n| {
                probe
                    .topology(n.client)
                    .is_some_and(|t| all_up_normal(&t, &all, 16))
            })
        },
    );
    drop(all);
    nodes
}

#[test]
fn cluster_three_processes_agree_on_a_ring_of_distinct_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    let t = probe.topology(nodes[2].client).unwrap();
    assert_eq!(t.partitioner, "murmur3");
    let tokens: BTreeSet<i128> = t.nodes.iter().flat_map(|n| n.tokens.clone()).collect();
    assert_eq!(tokens.len(), 48, "tokens are distinct: {t:?}");
    let ids: BTreeSet<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    for n in &t.nodes {
        assert_eq!((n.datacenter.as_str(), n.rack.as_str()), ("dc1", "rack1"));
    }
}

#[test]
fn cluster_table_created_on_one_node_is_listed_by_another() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    probe.create_table(nodes[0].client, "users");
    wait_for("node 3 to list the table", JOIN_DEADLINE, &all, || {
        probe
            .tables(nodes[2].client)
            .is_some_and(|t| t == vec!["users".to_owned()])
    });
}

#[test]
fn cluster_killed_node_is_marked_down_then_up_after_restart_with_its_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    let before = probe.topology(nodes[0].client).unwrap();
    let node2_before = node_at(&before, &nodes[1]).unwrap().clone();
    let generation_before = nodes[1].generation().expect("ready line with a generation");

    nodes[1].signal(libc::SIGKILL);
    nodes[1].wait_exit();
    {
        let all: Vec<&NodeProc> = nodes.iter().collect();
        wait_for(
            "nodes 1 and 3 to mark node 2 down",
            DOWN_DEADLINE,
            &all,
            || {
                [&nodes[0], &nodes[2]].iter().all(|n| {
                    probe.topology(n.client).is_some_and(|t| {
                        node_at(&t, &nodes[1]).is_some_and(|i| !i.up)
                            && node_at(&t, &nodes[0]).is_some_and(|i| i.up)
                            && node_at(&t, &nodes[2]).is_some_and(|i| i.up)
                    })
                })
            },
        );
    }

    let seed = vec!["--seeds".to_owned(), nodes[0].peer.to_string()];
    nodes[1].start(&seed);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "every node to see node 2 up again",
        JOIN_DEADLINE,
        &all,
        || {
            nodes.iter().all(|n| {
                probe
                    .topology(n.client)
                    .is_some_and(|t| all_up_normal(&t, &all, 16))
            })
        },
    );
    let after = probe.topology(nodes[2].client).unwrap();
    let node2_after = node_at(&after, &nodes[1]).unwrap();
    assert_eq!(
        node2_after.id, node2_before.id,
        "same node id after restart"
    );
    assert_eq!(
        node2_after.tokens, node2_before.tokens,
        "same tokens after restart"
    );
    let generation_after = nodes[1].generation().expect("ready line with a generation");
    assert!(
        generation_after > generation_before,
        "generation {generation_after} after restart, {generation_before} before"
    );
}

#[test]
fn cluster_node_with_another_partitioner_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 1, &[]);
    let mut md5 = NodeProc::new(tmp.path(), "md5");
    md5.start(&[
        "--partitioner".into(),
        "md5".into(),
        "--seeds".into(),
        nodes[0].peer.to_string(),
    ]);
    wait_for(
        "the md5 node to log that it was refused",
        JOIN_DEADLINE,
        &[&md5],
        || {
            std::fs::read_to_string(md5.log_path())
                .is_ok_and(|l| l.contains("refused this node") && l.contains("murmur3"))
        },
    );
    let t = probe.topology(nodes[0].client).unwrap();
    assert_eq!(t.nodes.len(), 1, "the md5 node is not a member: {t:?}");
}

#[test]
fn cluster_restart_with_another_partitioner_fails_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 1, &[]);
    nodes[0].signal(libc::SIGTERM);
    assert!(nodes[0].wait_exit().success());
    nodes[0].start(&["--partitioner".into(), "md5".into()]);
    let status = nodes[0].wait_exit();
    assert!(!status.success());
    let log = std::fs::read_to_string(nodes[0].dir.join("stdout.2")).unwrap()
        + &std::fs::read_to_string(nodes[0].log_path()).unwrap();
    assert!(
        log.contains("murmur3 partitioner") && log.contains("cannot change partitioner"),
        "{log}"
    );
}

#[test]
fn cluster_dev_cluster_starts_nodes_and_stops_them_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    // A base port with its neighbours free: node i uses base + 10*(i-1) and one above.
    let base = loop {
        let a = free_addr().port();
        if a < 60000
            && [a + 1, a + 10, a + 11]
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        {
            break a;
        }
    };
    let out = tmp.path().join("dev.out");
    let mut dev = Command::new(launcher::sibyl_binary())
        .args([
            "dev-cluster",
            "--nodes",
            "2",
            "--base-port",
            &base.to_string(),
            "--dir",
        ])
        .arg(tmp.path().join("dev"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(
            File::create(tmp.path().join("dev.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let guard = KillOnDrop(Some(dev.id()));
    let first: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
    let second: SocketAddr = format!("127.0.0.1:{}", base + 10).parse().unwrap();
    let end = Instant::now() + JOIN_DEADLINE;
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.contains("sibyl-cli --host") {
            break;
        }
        assert!(
            dev.try_wait().unwrap().is_none(),
            "dev-cluster exited:\n{text}"
        );
        assert!(Instant::now() < end, "dev-cluster not up:\n{text}");
        std::thread::sleep(POLL); // polling interval
    }
    // dev-cluster reports "up" once every node sees both up and normal.
    for addr in [first, second] {
        let t = probe.topology(addr).expect("node answers");
        assert_eq!(t.nodes.len(), 2, "{t:?}");
        assert!(
            t.nodes.iter().all(|n| n.up && n.state == NodeState::Normal),
            "{t:?}"
        );
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.split(" pid ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{text}");
    // SAFETY: kill(2) on our own child's PID.
    assert_eq!(unsafe { libc::kill(dev.id() as i32, libc::SIGTERM) }, 0);
    let end = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(s) = dev.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "dev-cluster did not stop");
        std::thread::sleep(POLL); // polling interval
    };
    drop(guard);
    assert!(status.success(), "{status}");
    for pid in pids {
        // SAFETY: signal 0 only checks whether the PID exists. The children were reaped
        // by dev-cluster, so their PIDs are gone (reuse within this test is unlikely).
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "node pid {pid} still running");
    }
}

/// Kills a process by PID when dropped (a failed assertion must not leak a dev cluster).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            if std::thread::panicking() {
                // SAFETY: kill(2) on our own child's PID; SIGTERM lets it stop its nodes.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
    }
}

/// `--cluster-name NAME`, so a test's nodes never gossip with another test's.
fn own_cluster(name: &str) -> Vec<String> {
    vec!["--cluster-name".to_owned(), name.to_owned()]
}

/// `removenode` and `decommission` through the client protocol (what `sibyl-admin` sends).
impl Probe {
    fn remove_node(&self, addr: SocketAddr, node_id: &str) -> Result<String, String> {
        let c = self.client(addr).expect("connect");
        self.rt
            .block_on(c.remove_node(node_id, false))
            .map_err(|e| e.to_string())
    }

    fn decommission(&self, addr: SocketAddr) -> String {
        let c = self.client(addr).expect("connect");
        self.rt.block_on(c.decommission()).unwrap()
    }
}

#[test]
fn cluster_removenode_of_a_stopped_node_shows_it_left_on_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    // A cluster name of its own: a peer port freed by the stopped node and reused by
    // another test's node must not join the two clusters.
    let mut nodes = start_cluster(&probe, tmp.path(), 2, &own_cluster("removenode"));
    let t = probe.topology(nodes[0].client).unwrap();
    let id2 = node_at(&t, &nodes[1]).unwrap().id.clone();

    let refused = probe.remove_node(nodes[0].client, &id2).unwrap_err();
    assert!(refused.contains("is up"), "{refused}");

    nodes[1].signal(libc::SIGTERM);
    nodes[1].wait_exit();
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 1 to see node 2 down", DOWN_DEADLINE, &all, || {
        probe
            .topology(nodes[0].client)
            .is_some_and(|t| node_at(&t, &nodes[1]).is_some_and(|i| !i.up))
    });
    let done = probe.remove_node(nodes[0].client, &id2).unwrap();
    assert!(done.contains("removed"), "{done}");
    wait_for("node 1 to show node 2 left", JOIN_DEADLINE, &all, || {
        probe.topology(nodes[0].client).is_some_and(|t| {
            node_at(&t, &nodes[1]).is_some_and(|i| i.state == NodeState::Left && !i.up)
        })
    });
}

#[test]
fn cluster_decommissioned_node_is_left_for_its_peer_keeps_serving_and_never_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 2, &own_cluster("decommission"));
    let said = probe.decommission(nodes[1].client);
    assert!(said.contains("is leaving"), "{said}");
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 1 to see node 2 left", JOIN_DEADLINE, &all, || {
        probe
            .topology(nodes[0].client)
            .is_some_and(|t| node_at(&t, &nodes[1]).is_some_and(|i| i.state == NodeState::Left))
    });
    // The leaving node still answers, and says it left.
    let own = probe.topology(nodes[1].client).unwrap();
    assert_eq!(node_at(&own, &nodes[1]).unwrap().state, NodeState::Left);
    assert!(
        nodes[1].logs().contains("every range handed off"),
        "{}",
        nodes[1].logs()
    );
    // Stopped and started again on its data directory, it refuses: it left the ring.
    nodes[1].signal(libc::SIGTERM);
    nodes[1].wait_exit();
    let mut args = own_cluster("decommission");
    args.extend(["--seeds".to_owned(), nodes[0].peer.to_string()]);
    nodes[1].start(&args);
    let status = nodes[1].wait_exit();
    assert!(!status.success(), "{status:?}");
    let log = std::fs::read_to_string(nodes[1].log_path()).unwrap_or_default();
    assert!(
        log.contains("belongs to a node that left the ring"),
        "{log}"
    );
}

/// Requests to one node exactly (no token-aware routing), at a chosen consistency.
impl Probe {
    /// A client of `addr` alone: the node reached coordinates every request, and at ONE
    /// it reads its own replica first.
    fn direct(&self, addr: SocketAddr) -> Client {
        self.try_direct(addr).expect("connect")
    }

    fn try_direct(&self, addr: SocketAddr) -> Option<Client> {
        let options = ClientOptions {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            pool_size: 1,
            token_aware: false,
            ..ClientOptions::default()
        };
        self.rt
            .block_on(Client::connect_with(&[addr.to_string()], options))
            .ok()
    }

    fn put(&self, addr: SocketAddr, key: &str, value: &str, level: ConsistencyLevel) -> Response {
        let c = self.direct(addr);
        let request = Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "kv".into(),
                key: Bytes::copy_from_slice(key.as_bytes()),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::from_static(b"c"),
                    value: Bytes::copy_from_slice(value.as_bytes()),
                    context: Bytes::new(),
                }],
            },
            consistency: Some(Consistency::sloppy(level).strict()),
        };
        match self.rt.block_on(c.request(request)) {
            Ok(r) => r,
            Err(sibyl_protocol::ClientError::Server(e)) => Response::Error(e),
            Err(e) => panic!("write failed: {e}"),
        }
    }

    /// The values of column `c` of `key` read through `addr` at ONE.
    fn values_at_one(&self, addr: SocketAddr, key: &str) -> Option<Vec<String>> {
        let c = self.try_direct(addr)?;
        let request = Request::Get {
            table: "kv".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
            consistency: Some(Consistency::sloppy(ConsistencyLevel::One).strict()),
        };
        match self.rt.block_on(c.request(request)).ok()? {
            Response::Row { cells, .. } => Some(
                cells
                    .iter()
                    .flat_map(|c| c.values())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Creates table `kv` of replication factor `rf` through node 1 and waits until every
/// node lists it.
fn create_kv(probe: &Probe, nodes: &[NodeProc], rf: u16) {
    let c = probe.client(nodes[0].client).unwrap();
    let options = TableOptions {
        replication_factor: rf,
        ..TableOptions::default()
    };
    probe.rt.block_on(c.create_table("kv", options)).unwrap();
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("every node to list the table", JOIN_DEADLINE, &all, || {
        nodes.iter().all(|n| {
            probe
                .tables(n.client)
                .is_some_and(|t| t == vec!["kv".to_owned()])
        })
    });
}

/// SIGKILLs node 3 and waits until node 1 marks it down.
fn kill_node_3(probe: &Probe, nodes: &mut [NodeProc]) {
    nodes[2].signal(libc::SIGKILL);
    nodes[2].wait_exit();
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 1 to mark node 3 down", DOWN_DEADLINE, &all, || {
        probe
            .topology(nodes[0].client)
            .is_some_and(|t| node_at(&t, all[2]).is_some_and(|i| !i.up))
    });
}

#[test]
fn cluster_writes_reach_every_replica_and_a_restarted_replica_gets_its_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);

    // A write at ALL through node 1 is on every replica: each node reads it at ONE from
    // its own replica (every node is a home replica at rf 3 on 3 nodes).
    match probe.put(nodes[0].client, "k1", "v1", ConsistencyLevel::All) {
        Response::Written { meta } => assert_eq!(meta.replicas.len(), 3, "{meta:?}"),
        other => panic!("write at ALL: {other:?}"),
    }
    for n in &nodes {
        assert_eq!(
            probe.values_at_one(n.client, "k1"),
            Some(vec!["v1".to_owned()]),
            "{} reads its replica",
            n.name
        );
    }

    // Node 3 down: QUORUM still writes (and hints node 3), ALL is refused up front.
    kill_node_3(&probe, &mut nodes);
    match probe.put(nodes[0].client, "k2", "v2", ConsistencyLevel::Quorum) {
        Response::Written { meta } => assert_eq!(meta.replicas.len(), 2, "{meta:?}"),
        other => panic!("write at QUORUM with one replica down: {other:?}"),
    }
    match probe.put(nodes[0].client, "k3", "v3", ConsistencyLevel::All) {
        Response::Error(e) => assert!(
            matches!(
                e.kind,
                ErrorKind::Unavailable {
                    required: 3,
                    alive: 2
                }
            ),
            "{e:?}"
        ),
        other => panic!("write at ALL with one replica down: {other:?}"),
    }
    assert_eq!(
        probe.values_at_one(nodes[1].client, "k2"),
        Some(vec!["v2".to_owned()])
    );
    // HINTS (sibyl-admin hints): node 1 keeps the hint for node 3 (no stand-in exists in
    // a cluster of rf nodes).
    let node3_id = node_at(&probe.topology(nodes[0].client).unwrap(), &nodes[2])
        .unwrap()
        .id
        .clone();
    let node1 = nodes[0].client;
    let pending_for_3 = || -> u64 {
        probe
            .rt
            .block_on(probe.direct(node1).hints())
            .unwrap()
            .iter()
            .filter(|o| o.owner == node3_id)
            .map(|o| o.pending)
            .sum()
    };
    // The hint is stored by a task of its own after the write answered: poll for it.
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("the hint for node 3 on node 1", JOIN_DEADLINE, &all, || {
        pending_for_3() == 1
    });
    drop(all);

    // Node 3 back: its hint is replayed, so its own replica holds k2.
    let seed = vec!["--seeds".to_owned(), nodes[0].peer.to_string()];
    nodes[2].start(&seed);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 3 to receive its hint", JOIN_DEADLINE, &all, || {
        probe.values_at_one(nodes[2].client, "k2") == Some(vec!["v2".to_owned()])
    });
    wait_for(
        "the delivered hint to leave node 1",
        JOIN_DEADLINE,
        &all,
        || pending_for_3() == 0,
    );
    assert_eq!(
        metric(&probe, nodes[0].client, "sibyl_hints_delivered_total"),
        1.0,
        "node 1 counts the hint delivered"
    );
}

/// The sum of the series of `name` in `addr`'s METRICS (parsed as Prometheus text).
fn metric(probe: &Probe, addr: SocketAddr, name: &str) -> f64 {
    let c = probe.direct(addr);
    let Response::AdminMetrics(text) = probe.rt.block_on(c.request(Request::Metrics)).unwrap()
    else {
        panic!("expected the metrics text");
    };
    sibyl_tools::admin::exposition::parse(&text)
        .expect("Prometheus text")
        .sum(name, &[])
}

#[test]
fn cluster_a_quorum_read_repairs_the_replica_that_missed_a_write() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);

    // Node 3 misses a write; node 1, which coordinated it and holds its hint, dies
    // before node 3 is back, so only a read can repair node 3.
    kill_node_3(&probe, &mut nodes);
    match probe.put(nodes[0].client, "k", "v", ConsistencyLevel::Quorum) {
        Response::Written { meta } => assert_eq!(meta.replicas.len(), 2, "{meta:?}"),
        other => panic!("write at QUORUM with one replica down: {other:?}"),
    }
    nodes[0].signal(libc::SIGKILL);
    nodes[0].wait_exit();
    let seed = vec!["--seeds".to_owned(), nodes[1].peer.to_string()];
    nodes[2].start(&seed);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "node 3 to serve with node 2 up",
        JOIN_DEADLINE,
        &all,
        || {
            probe
                .topology(nodes[2].client)
                .is_some_and(|t| node_at(&t, &nodes[1]).is_some_and(|i| i.up))
        },
    );
    assert_eq!(
        probe.values_at_one(nodes[2].client, "k"),
        Some(Vec::new()),
        "node 3 missed the write"
    );

    // QUORUM through node 3: its own replica and node 2's disagree; the answer is the
    // reconciled value, and the blocking repair leaves node 3's replica holding it.
    let c = probe.direct(nodes[2].client);
    let request = Request::Get {
        table: "kv".into(),
        key: Bytes::from_static(b"k"),
        selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
        consistency: Some(Consistency::sloppy(ConsistencyLevel::Quorum).blocking_read_repair()),
    };
    match probe.rt.block_on(c.request(request)).unwrap() {
        Response::Row { cells, meta, .. } => {
            let values: Vec<&[u8]> = cells
                .iter()
                .flat_map(|c| c.values())
                .map(|v| &v[..])
                .collect();
            assert_eq!(values, vec![&b"v"[..]]);
            assert!(meta.read_repair, "{meta:?}");
        }
        other => panic!("read at QUORUM: {other:?}"),
    }
    assert_eq!(
        metric(&probe, nodes[2].client, "sibyl_read_repairs_total"),
        1.0,
        "node 3, the coordinator, counts the read repair"
    );
    assert_eq!(
        probe.values_at_one(nodes[2].client, "k"),
        Some(vec!["v".to_owned()]),
        "node 3 was repaired"
    );
}

#[test]
fn cluster_any_node_writes_and_reads_keys_it_does_not_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    // rf 1: each key on one node; the two others forward its writes and read it from
    // its owner.
    create_kv(&probe, &nodes, 1);
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..10 {
            let key = format!("k{i}-{k}");
            match probe.put(n.client, &key, &key, ConsistencyLevel::One) {
                Response::Written { meta } => assert_eq!(meta.replicas.len(), 1, "{meta:?}"),
                other => panic!("write of {key} through {}: {other:?}", n.name),
            }
        }
    }
    for i in 0..nodes.len() {
        for k in 0..10 {
            let key = format!("k{i}-{k}");
            for n in &nodes {
                assert_eq!(
                    probe.values_at_one(n.client, &key),
                    Some(vec![key.clone()]),
                    "{key} read through {}",
                    n.name
                );
            }
        }
    }
}

impl Probe {
    /// The values of column `c` of `key` read through `addr` at QUORUM with blocking read
    /// repair.
    fn values_at_quorum(&self, addr: SocketAddr, key: &str) -> Option<Vec<String>> {
        let c = self.try_direct(addr)?;
        let request = Request::Get {
            table: "kv".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
            consistency: Some(Consistency::sloppy(ConsistencyLevel::Quorum).blocking_read_repair()),
        };
        match self.rt.block_on(c.request(request)).ok()? {
            Response::Row { cells, .. } => {
                let mut v: Vec<String> = cells
                    .iter()
                    .flat_map(|c| c.values())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                v.sort();
                Some(v)
            }
            _ => None,
        }
    }
}

/// Riak's KV679: a replica that lost its disk and came back must never make the others
/// drop new writes. Node 3's data directory is wiped (its identity with it) and it
/// starts again at the same address: it refuses to join while the old node owns tokens
/// there, joins as a new node once the operator removes the old one, and a write with an
/// empty context through it is concurrent with the value the other replicas held, so
/// both survive as siblings on every read.
#[test]
fn cluster_kv679_a_wiped_replica_writing_again_keeps_both_values() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);
    match probe.put(nodes[2].client, "k", "old", ConsistencyLevel::All) {
        Response::Written { meta } => assert_eq!(meta.replicas.len(), 3, "{meta:?}"),
        other => panic!("write at ALL: {other:?}"),
    }
    let old_id = node_at(&probe.topology(nodes[0].client).unwrap(), &nodes[2])
        .unwrap()
        .id
        .clone();

    kill_node_3(&probe, &mut nodes);
    let data = nodes[2].dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let seed = vec!["--seeds".to_owned(), nodes[0].peer.to_string()];
    nodes[2].start(&seed);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "the wiped node to refuse the join",
        JOIN_DEADLINE,
        &all,
        || {
            std::fs::read_to_string(nodes[2].log_path())
                .is_ok_and(|l| l.contains("not joining the ring") && l.contains(old_id.as_str()))
        },
    );
    // The wiped node serves only once it holds the cluster's schema: its very first
    // answer knows the table (it reads the others' value), never UNKNOWN_TABLE.
    let mut client = None;
    wait_for(
        "the wiped node to accept clients",
        JOIN_DEADLINE,
        &all,
        || {
            client = probe.try_direct(nodes[2].client);
            client.is_some()
        },
    );
    let first = probe.rt.block_on(client.unwrap().request(Request::Get {
        table: "kv".into(),
        key: Bytes::from_static(b"k"),
        selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
        consistency: Some(Consistency::sloppy(ConsistencyLevel::One)),
    }));
    assert!(
        matches!(&first, Ok(Response::Row { cells, .. }) if !cells.is_empty()),
        "the wiped node's first answer: {first:?}"
    );
    let removed = probe.remove_node(nodes[0].client, &old_id);
    assert!(removed.is_ok(), "removenode {old_id}: {removed:?}");
    wait_for(
        "the wiped node to join as a new node",
        JOIN_DEADLINE,
        &all,
        || {
            nodes.iter().all(|n| {
                probe.topology(n.client).is_some_and(|t| {
                    t.nodes
                        .iter()
                        .filter(|i| i.up && i.state == NodeState::Normal && i.tokens.len() == 16)
                        .count()
                        == 3
                        && t.nodes.iter().any(|i| {
                            i.address == nodes[2].client.to_string()
                                && i.id != old_id
                                && i.state == NodeState::Normal
                        })
                })
            })
        },
    );

    match probe.put(nodes[2].client, "k", "new", ConsistencyLevel::Quorum) {
        Response::Written { meta } => assert!(meta.replicas.len() >= 2, "{meta:?}"),
        other => panic!("write through the wiped node: {other:?}"),
    }
    let both = Some(vec!["new".to_owned(), "old".to_owned()]);
    for n in &nodes {
        assert_eq!(
            probe.values_at_quorum(n.client, "k"),
            both,
            "both values through {}",
            n.name
        );
    }
}

/// An INSERT of column `c` = `value` at `key` in table `kv`, without a write id.
fn insert_kv(key: String, value: String, consistency: Consistency) -> Request {
    insert_into("kv", key, value, consistency)
}

/// [`insert_kv`] into `table`.
fn insert_into(table: &str, key: String, value: String, consistency: Consistency) -> Request {
    Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: table.into(),
            key: Bytes::from(key),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"c"),
                value: Bytes::from(value),
                context: Bytes::new(),
            }],
        },
        consistency: Some(consistency),
    }
}

/// Writes `count` keys `r0..` with value `v<i>` at ALL through `addr`, 64 in flight.
fn put_many_at_all(probe: &Probe, addr: SocketAddr, count: usize) {
    put_many(probe, addr, 0..count, ConsistencyLevel::All, 3);
}

/// Writes keys `r<i>` for `i` in `keys` with value `v<i>` through `addr` at `level`
/// (strict), 64 in flight; each write must be acknowledged by `replicas` replicas.
fn put_many(
    probe: &Probe,
    addr: SocketAddr,
    keys: std::ops::Range<usize>,
    level: ConsistencyLevel,
    replicas: usize,
) {
    put_keys(
        probe,
        addr,
        keys.map(|i| format!("r{i}")),
        level,
        Some(replicas),
    );
}

/// Writes each key of `keys` (`<letter><i>`) with value `v<i>` through `addr` at `level`
/// (strict), 64 in flight; each write must be acknowledged, by `replicas` replicas when
/// given.
fn put_keys(
    probe: &Probe,
    addr: SocketAddr,
    keys: impl Iterator<Item = String>,
    level: ConsistencyLevel,
    replicas: Option<usize>,
) {
    let c = probe.direct(addr);
    probe.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for key in keys {
            if set.len() >= 64 {
                set.join_next().await.unwrap().unwrap();
            }
            let c = c.clone();
            set.spawn(async move {
                let value = format!("v{}", &key[1..]);
                let request = insert_kv(key.clone(), value, Consistency::sloppy(level).strict());
                match c.request(request).await {
                    Ok(Response::Written { meta }) => {
                        if let Some(replicas) = replicas {
                            assert_eq!(meta.replicas.len(), replicas)
                        }
                    }
                    other => panic!("write {key} at {level:?}: {other:?}"),
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
}

/// The keys of `keys` that `addr` reads at ONE from its own replica with their written
/// value (`r<i>` -> `v<i>`), 64 in flight.
fn present_at_one(probe: &Probe, addr: SocketAddr, keys: &[usize]) -> Vec<usize> {
    let Some(c) = probe.try_direct(addr) else {
        return Vec::new();
    };
    probe.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut found = Vec::new();
        for &i in keys {
            if set.len() >= 64 {
                if let Some(Ok(Some(k))) = set.join_next().await {
                    found.push(k);
                }
            }
            let c = c.clone();
            set.spawn(async move {
                let request = Request::Get {
                    table: "kv".into(),
                    key: Bytes::from(format!("r{i}")),
                    selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
                    consistency: Some(Consistency::sloppy(ConsistencyLevel::One).strict()),
                };
                let want = format!("v{i}");
                match c.request(request).await {
                    Ok(Response::Row { cells, .. })
                        if cells
                            .iter()
                            .flat_map(|c| c.values())
                            .any(|v| v == want.as_bytes()) =>
                    {
                        Some(i)
                    }
                    _ => None,
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Some(k)) = r {
                found.push(k);
            }
        }
        found
    })
}

/// Node 3 loses its disk: SIGKILL, empty data directory, restart with `extra` (it refuses
/// to join while its old id owns tokens), removenode of the old id through node 1, and
/// wait until all three nodes are up and normal again.
fn wipe_and_rejoin_node_3(probe: &Probe, nodes: &mut [NodeProc], extra: &[String]) -> String {
    let old_id = node_at(&probe.topology(nodes[0].client).unwrap(), &nodes[2])
        .unwrap()
        .id
        .clone();
    kill_node_3(probe, nodes);
    // A write while node 3 is down: node 1 (its coordinator) keeps a hint for the old id.
    match probe.put(nodes[0].client, "while-down", "x", ConsistencyLevel::Quorum) {
        Response::Written { .. } => {}
        other => panic!("write at QUORUM with node 3 down: {other:?}"),
    }
    let data = nodes[2].dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let mut args = vec!["--seeds".to_owned(), nodes[0].peer.to_string()];
    args.extend(extra.iter().cloned());
    nodes[2].start(&args);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "the wiped node to refuse the join",
        JOIN_DEADLINE,
        &all,
        || {
            std::fs::read_to_string(nodes[2].log_path())
                .is_ok_and(|l| l.contains("not joining the ring") && l.contains(old_id.as_str()))
        },
    );
    let removed = probe.remove_node(nodes[0].client, &old_id);
    assert!(removed.is_ok(), "removenode {old_id}: {removed:?}");
    wait_for(
        "the wiped node to join as a new node",
        JOIN_DEADLINE,
        &all,
        || {
            nodes.iter().all(|n| {
                probe.topology(n.client).is_some_and(|t| {
                    t.nodes
                        .iter()
                        .filter(|i| i.up && i.state == NodeState::Normal)
                        .count()
                        == 3
                })
            })
        },
    );
    old_id
}

/// Anti-entropy alone: a replica whose disk was lost comes back as a new node (after
/// removenode of the old one) and background repair, with no read repair and no hint
/// for it, fills its replica until it reads every key at ONE from its own data.
#[test]
fn cluster_background_repair_fills_a_wiped_replica() {
    const KEYS: usize = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let fast_repair = ["--repair-period-secs".to_owned(), "2".to_owned()];
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &fast_repair);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);
    // The wiped node owns its ranges at once, empty: repair alone must fill them.
    let rejoin: Vec<String> = fast_repair
        .iter()
        .cloned()
        .chain(["--auto-bootstrap".to_owned(), "off".to_owned()])
        .collect();
    let old_id = wipe_and_rejoin_node_3(&probe, &mut nodes, &rejoin);
    // The hint node 1 kept for the old id is discarded once that node is removed (it
    // would wait forever).
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "node 1 to discard the removed node's hint",
        JOIN_DEADLINE,
        &all,
        || {
            probe
                .rt
                .block_on(probe.direct(nodes[0].client).hints())
                .unwrap()
                .iter()
                .all(|o| o.owner != old_id || o.pending == 0)
        },
    );
    // Every key is back in the new node's own replica, by repair only.
    wait_all_present_at_one(&probe, &nodes[2], KEYS, Duration::from_secs(120));
    let log = std::fs::read_to_string(nodes[2].log_path()).unwrap_or_default()
        + &std::fs::read_to_string(nodes[0].log_path()).unwrap_or_default()
        + &std::fs::read_to_string(nodes[1].log_path()).unwrap_or_default();
    assert!(
        log.contains("repair: range differed and was synced"),
        "repair did the work"
    );
}

/// Polls until `addr` reads every key of `0..count` at ONE from its own replica.
fn wait_all_present_at_one(probe: &Probe, node: &NodeProc, count: usize, deadline: Duration) {
    let mut missing: Vec<usize> = (0..count).collect();
    let deadline = Instant::now() + deadline;
    while !missing.is_empty() {
        let found: BTreeSet<usize> = present_at_one(probe, node.client, &missing)
            .into_iter()
            .collect();
        missing.retain(|k| !found.contains(k));
        assert!(
            Instant::now() < deadline,
            "{} of {count} keys still missing at ONE on {} (e.g. r{}); its log:\n{}",
            missing.len(),
            node.name,
            missing[0],
            node.logs()
        );
        if !missing.is_empty() {
            std::thread::sleep(POLL * 5);
        }
    }
}

/// Anti-entropy after a hint window overflowed and the tree state was lost: a replica
/// down long enough that its coordinators stopped keeping hints for it restarts (its
/// hash trees, held in memory, rebuild from its data), and background repair fills in
/// what no hint will bring, until it reads every key at ONE from its own data and an
/// on-demand repair finds every range identical (equal hashes) and moves no cell.
#[test]
fn cluster_background_repair_fills_a_replica_down_past_its_hint_window() {
    const BEFORE: usize = 2_000;
    const CHUNK: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let flags: Vec<String> = ["--repair-period-secs", "2", "--hint-window-secs", "1"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &flags);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, BEFORE);
    let node3_id = node_at(&probe.topology(nodes[0].client).unwrap(), &nodes[2])
        .unwrap()
        .id
        .clone();
    kill_node_3(&probe, &mut nodes);

    // Writes at QUORUM while node 3 is down, a chunk at a time, until node 1 (their
    // coordinator, which keeps node 3's hints itself in a cluster of three) has dropped
    // hints for it at the window; then one more chunk, all of it past the window.
    let dropped = |probe: &Probe| -> u64 {
        probe
            .rt
            .block_on(probe.direct(nodes[0].client).hints())
            .unwrap()
            .iter()
            .filter(|o| o.owner == node3_id)
            .map(|o| o.dropped_window)
            .sum()
    };
    let mut written = BEFORE;
    let deadline = Instant::now() + Duration::from_secs(60);
    while dropped(&probe) == 0 {
        assert!(Instant::now() < deadline, "no hint dropped at the window");
        put_many(
            &probe,
            nodes[0].client,
            written..written + CHUNK,
            ConsistencyLevel::Quorum,
            2,
        );
        written += CHUNK;
    }
    put_many(
        &probe,
        nodes[0].client,
        written..written + CHUNK,
        ConsistencyLevel::Quorum,
        2,
    );
    written += CHUNK;
    assert!(
        dropped(&probe) >= CHUNK as u64,
        "the last chunk's hints were dropped"
    );

    // Node 3 restarts: its trees rebuild from disk; hints bring only what the window let
    // through, repair the rest.
    nodes[2].start(&flags);
    wait_all_present_at_one(&probe, &nodes[2], written, Duration::from_secs(120));
    let check = repair_through(&probe, nodes[2].client);
    assert!(check.failed.is_empty(), "{check:?}");
    assert_eq!(
        (check.differed, check.cells_sent, check.cells_received),
        (0, 0, 0),
        "replicas identical after background repair: {check:?}"
    );
    assert!(check.jobs > 0, "{check:?}");
}

/// Runs an on-demand repair through `addr` and polls it until done.
fn repair_through(probe: &Probe, addr: SocketAddr) -> sibyl_protocol::RepairStatus {
    let c = probe.direct(addr);
    probe.rt.block_on(async {
        let mut s = c.repair(None).await.expect("repair starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        while s.state == sibyl_protocol::RepairState::Running {
            assert!(Instant::now() < deadline, "repair still running: {s:?}");
            tokio::time::sleep(POLL).await;
            s = c.repair_status(s.id).await.expect("repair status");
        }
        s
    })
}

/// `sibyl-admin repair`'s request on a cluster: a wiped replica repaired on demand while
/// another replica is dead reports the jobs with the dead one as not done and fills
/// itself from the live one; once the dead one is back a rerun completes with nothing
/// failed, and a third run finds identical replicas and moves no cell.
#[test]
fn cluster_on_demand_repair_reports_a_dead_replica_and_a_rerun_completes() {
    const KEYS: usize = 2_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    // Background repair out of the way: only the on-demand repairs below run.
    let slow = ["--repair-period-secs".to_owned(), "1000000".to_owned()];
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &slow);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);
    // The wiped node owns its ranges at once, empty: the repair must fill them.
    let rejoin: Vec<String> = slow
        .iter()
        .cloned()
        .chain(["--auto-bootstrap".to_owned(), "off".to_owned()])
        .collect();
    let _ = wipe_and_rejoin_node_3(&probe, &mut nodes, &rejoin);
    let node1_id = node_at(&probe.topology(nodes[1].client).unwrap(), &nodes[0])
        .unwrap()
        .id
        .clone();
    nodes[0].signal(libc::SIGKILL);
    nodes[0].wait_exit();

    let first = repair_through(&probe, nodes[2].client);
    assert!(first.jobs > 0 && first.jobs_done == first.jobs, "{first:?}");
    assert!(
        !first.failed.is_empty(),
        "jobs with the dead node fail: {first:?}"
    );
    assert!(
        first.failed.iter().all(|f| f.contains(node1_id.as_str())),
        "only jobs with node 1 ({node1_id}) fail: {:?}",
        first.failed
    );
    assert!(first.cells_received >= KEYS as u64, "{first:?}");
    let missing: Vec<usize> = (0..KEYS).collect();
    assert_eq!(
        present_at_one(&probe, nodes[2].client, &missing).len(),
        KEYS,
        "every key on the repaired replica"
    );

    nodes[0].start(&slow);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 3 to see node 1 up", JOIN_DEADLINE, &all, || {
        probe
            .topology(nodes[2].client)
            .is_some_and(|t| node_at(&t, all[0]).is_some_and(|i| i.up))
    });
    let second = repair_through(&probe, nodes[2].client);
    assert!(second.failed.is_empty(), "{second:?}");
    let third = repair_through(&probe, nodes[2].client);
    assert!(third.failed.is_empty(), "{third:?}");
    assert_eq!(
        (third.differed, third.cells_sent, third.cells_received),
        (0, 0, 0),
        "identical replicas: {third:?}"
    );
    assert!(
        third.tables.iter().any(|t| t.table == "kv" && t.jobs > 0),
        "{:?}",
        third.tables
    );
}

/// Deletes column `c` of `key` through `addr` at `level` (strict).
fn delete_at(probe: &Probe, addr: SocketAddr, key: &str, level: ConsistencyLevel) {
    let c = probe.direct(addr);
    let request = Request::Delete {
        delete: sibyl_protocol::RowDelete {
            write_id: None,
            table: "kv".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            timestamp_micros: None,
            target: sibyl_protocol::DeleteTarget::Columns(vec![sibyl_protocol::CellContext {
                name: Bytes::from_static(b"c"),
                context: Bytes::new(),
            }]),
        },
        consistency: Some(Consistency::sloppy(level).strict()),
    };
    match probe.rt.block_on(c.request(request)) {
        Ok(Response::Written { .. }) => {}
        other => panic!("delete {key}: {other:?}"),
    }
}

/// The engine entries of table `kv` on `addr` after a flush and a major compaction.
fn entries_after_compaction(probe: &Probe, addr: SocketAddr) -> u64 {
    let c = probe.direct(addr);
    probe.rt.block_on(async {
        c.flush(Some("kv")).await.expect("flush");
        let s = c.compact("kv").await.expect("compact");
        s.sstable_entries + s.memtable_entries
    })
}

/// Tombstones go only when every replica holds them: a delete while one replica is down
/// past its hint window and TTL survives compaction on the others; once the replica is
/// back, repair gives it the tombstone, the deleted value never reads again, and only
/// then (every replica synced after it arrived) compaction purges it everywhere.
#[test]
fn cluster_deleted_value_stays_deleted_and_its_tombstone_goes_only_after_every_replica_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let flags: Vec<String> = [
        "--repair-period-secs",
        "2",
        "--hint-window-secs",
        "1",
        "--hint-ttl-secs",
        "2",
        "--tombstone-min-age-secs",
        "3",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &flags);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, 20);
    match probe.put(nodes[0].client, "gone", "old", ConsistencyLevel::All) {
        Response::Written { .. } => {}
        other => panic!("write at ALL: {other:?}"),
    }
    kill_node_3(&probe, &mut nodes);
    delete_at(&probe, nodes[0].client, "gone", ConsistencyLevel::Quorum);
    // The tombstone ages past the hint TTL and its minimum age (time, not a condition).
    std::thread::sleep(Duration::from_secs(4));
    for n in &nodes[..2] {
        assert_eq!(
            entries_after_compaction(&probe, n.client),
            21,
            "{}: the tombstone stays while a replica has not synced",
            n.name
        );
    }
    nodes[2].start(&flags);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let gone_at = |addr: SocketAddr, level: ConsistencyLevel| -> Option<Vec<String>> {
        let c = probe.try_direct(addr)?;
        let request = Request::Get {
            table: "kv".into(),
            key: Bytes::from_static(b"gone"),
            selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
            consistency: Some(Consistency::sloppy(level).strict()),
        };
        match probe.rt.block_on(c.request(request)).ok()? {
            Response::Row { cells, .. } => Some(
                cells
                    .iter()
                    .flat_map(|c| c.values())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect(),
            ),
            _ => None,
        }
    };
    // Repair brings the tombstone to node 3; the value never reads at QUORUM meanwhile.
    wait_for("node 3 to hold the tombstone", JOIN_DEADLINE, &all, || {
        assert_ne!(
            gone_at(nodes[0].client, ConsistencyLevel::Quorum),
            Some(vec!["old".to_owned()]),
            "the deleted value came back"
        );
        gone_at(nodes[2].client, ConsistencyLevel::One) == Some(Vec::new())
    });
    // Every replica synced after the tombstone arrived: compaction purges it everywhere.
    wait_for(
        "the tombstone to be purged on every node",
        JOIN_DEADLINE,
        &all,
        || {
            nodes
                .iter()
                .all(|n| entries_after_compaction(&probe, n.client) == 20)
        },
    );
    for n in &nodes {
        assert_eq!(
            gone_at(n.client, ConsistencyLevel::One),
            Some(Vec::new()),
            "{} after the purge",
            n.name
        );
    }
    let keys: Vec<usize> = (0..20).collect();
    assert_eq!(present_at_one(&probe, nodes[2].client, &keys).len(), 20);
}

/// A disk lost and the node restarted at once (before the others marked the old node
/// down: sibyl-nemesis's wipe does this): the new node still refuses to join while the old
/// id owns tokens at its address.
#[test]
fn cluster_a_wiped_node_restarted_at_once_still_refuses_to_join() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    let old_id = node_at(&probe.topology(nodes[0].client).unwrap(), &nodes[2])
        .unwrap()
        .id
        .clone();
    nodes[2].signal(libc::SIGKILL);
    nodes[2].wait_exit();
    let data = nodes[2].dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let seed = vec!["--seeds".to_owned(), nodes[0].peer.to_string()];
    nodes[2].start(&seed);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "the wiped node to refuse the join",
        JOIN_DEADLINE,
        &all,
        || {
            let log = std::fs::read_to_string(nodes[2].log_path()).unwrap_or_default();
            assert!(
                !log.contains("joining the ring: owning")
                    && !log.contains("tokens announced as pending"),
                "the wiped node joined beside its old id {old_id}:\n{log}"
            );
            log.contains("not joining the ring") && log.contains(old_id.as_str())
        },
    );
}

/// Writes keys `w<i>` at QUORUM through a token-aware client of `hosts` until `stop`,
/// from a thread of its own; returns the keys acknowledged and every error seen.
fn write_load(
    hosts: Vec<SocketAddr>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<usize>, Vec<String>)> {
    write_load_into("kv", hosts, stop)
}

/// [`write_load`] into `table`.
fn write_load_into(
    table: &'static str,
    hosts: Vec<SocketAddr>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<usize>, Vec<String>)> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let hosts: Vec<String> = hosts.iter().map(SocketAddr::to_string).collect();
            let options = ClientOptions {
                request_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(2),
                ..ClientOptions::default()
            };
            let c = Client::connect_with(&hosts, options).await.unwrap();
            let (mut acked, mut errors) = (Vec::new(), Vec::new());
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut set = tokio::task::JoinSet::new();
                for k in i..i + 16 {
                    let c = c.clone();
                    set.spawn(async move {
                        let request = insert_into(
                            table,
                            format!("w{k}"),
                            format!("v{k}"),
                            Consistency::sloppy(ConsistencyLevel::Quorum),
                        );
                        (k, c.request(request).await)
                    });
                }
                i += 16;
                while let Some(r) = set.join_next().await {
                    match r.unwrap() {
                        (k, Ok(Response::Written { .. })) => acked.push(k),
                        (k, other) => errors.push(format!("w{k}: {other:?}")),
                    }
                }
            }
            (acked, errors)
        })
    })
}

/// The keys of `keys` (column `c`) that do not read back as exactly their value
/// (`r<i>`/`w<i>` -> `v<i>`) at `level` through `addr`, 64 in flight, with what was read.
fn wrong_at(
    probe: &Probe,
    addr: SocketAddr,
    keys: &[String],
    level: ConsistencyLevel,
) -> Vec<String> {
    wrong_in("kv", probe, addr, keys, level)
}

/// [`wrong_at`] in `table`.
fn wrong_in(
    table: &'static str,
    probe: &Probe,
    addr: SocketAddr,
    keys: &[String],
    level: ConsistencyLevel,
) -> Vec<String> {
    let c = probe.direct(addr);
    probe.rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut wrong = Vec::new();
        for key in keys {
            if set.len() >= 64 {
                if let Some(Ok(Some(w))) = set.join_next().await {
                    wrong.push(w);
                }
            }
            let (c, key) = (c.clone(), key.clone());
            set.spawn(async move {
                let request = Request::Get {
                    table: table.into(),
                    key: Bytes::copy_from_slice(key.as_bytes()),
                    selector: Selector::Columns(vec![Bytes::from_static(b"c")]),
                    consistency: Some(Consistency::sloppy(level).strict()),
                };
                let want = format!("v{}", &key[1..]);
                match c.request(request).await {
                    Ok(Response::Row { cells, .. })
                        if cells
                            .iter()
                            .flat_map(|c| c.values())
                            .map(|v| v.to_vec())
                            .collect::<Vec<_>>()
                            == vec![want.into_bytes()] =>
                    {
                        None
                    }
                    other => Some(format!("{key}: {other:?}")),
                }
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Some(w)) = r {
                wrong.push(w);
            }
        }
        wrong
    })
}

/// After a resumed ring change: every stream of `finished` is done, none that `same` finds
/// among those `done_at_restart` was streamed again, and the restart streamed less than
/// everything. Returns (bytes streamed after the restart, bytes in all).
fn check_resumed(
    finished: &sibyl_protocol::StreamsReport,
    done_at_restart: &[&sibyl_protocol::StreamEntry],
    same: impl Fn(&sibyl_protocol::StreamEntry, &sibyl_protocol::StreamEntry) -> bool,
) -> (u64, u64) {
    assert!(
        finished.streams.iter().all(|s| s.state == "done"),
        "{finished:?}"
    );
    for s in &finished.streams {
        if done_at_restart.iter().any(|d| same(d, s)) {
            assert_eq!(s.run_bytes, 0, "a finished stream sent again: {s:?}");
        }
    }
    let total: u64 = finished.streams.iter().map(|s| s.bytes).sum();
    let again: u64 = finished.streams.iter().map(|s| s.run_bytes).sum();
    assert!(
        again < total,
        "the restart streamed {again} of {total} bytes: not everything again"
    );
    (again, total)
}

/// The streams report of `addr`.
fn streams_of(probe: &Probe, addr: SocketAddr) -> Option<sibyl_protocol::StreamsReport> {
    let c = probe.try_direct(addr)?;
    probe.rt.block_on(c.streams(None)).ok()
}

/// Elasticity, bootstrap: a fourth node joins a cluster of three holding data while a
/// client writes at QUORUM. It streams every range it gains before it owns any, no
/// client write fails meanwhile, every acknowledged write reads back at QUORUM through
/// every node afterwards, and the new node answers every key at ONE from its own data.
#[test]
fn cluster_a_joining_node_streams_its_ranges_under_load_with_no_client_error() {
    const KEYS: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = write_load(nodes.iter().map(|n| n.client).collect(), stop.clone());
    let mut fourth = NodeProc::new(tmp.path(), "node4");
    fourth.start(&["--seeds".to_owned(), nodes[0].peer.to_string()]);
    nodes.push(fourth);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "node 4 to stream and become normal",
        JOIN_DEADLINE,
        &all,
        || {
            all.iter().all(|n| {
                probe
                    .topology(n.client)
                    .is_some_and(|t| all_up_normal(&t, &all, 16))
            })
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, errors) = load.join().unwrap();
    assert!(
        errors.is_empty(),
        "client errors during the join: {errors:?}"
    );
    assert!(acked.len() > 100, "the load ran: {} writes", acked.len());

    let report = streams_of(&probe, nodes[3].client).unwrap();
    assert!(!report.streams.is_empty(), "node 4 planned streams");
    assert!(
        report.streams.iter().all(|s| s.state == "done"),
        "{report:?}"
    );
    let cells: u64 = report.streams.iter().map(|s| s.cells).sum();
    assert!(cells >= KEYS as u64 / 2, "node 4 streamed {cells} cells");
    // Each range was sized at its source when it began (`sibyl-admin streams` shows
    // bytes left): estimates from block indexes and memtables, near what moved.
    let bytes: u64 = report.streams.iter().map(|s| s.bytes).sum();
    let total: u64 = report.streams.iter().map(|s| s.total).sum();
    assert!(
        report.streams.iter().all(|s| s.total > 0 || s.bytes == 0),
        "every range with data was sized: {report:?}"
    );
    assert!(
        total > bytes / 3 && total < bytes * 3,
        "estimated {total} bytes, streamed {bytes}"
    );
    let log = std::fs::read_to_string(nodes[3].log_path()).unwrap_or_default();
    assert!(log.contains("bootstrap complete"), "{log}");

    // Every key, the ones written during the join included, from node 4's own data at
    // ONE where it is a home replica (strict ONE reads the coordinator's replica).
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("r{i}"))
        .chain(acked.iter().map(|k| format!("w{k}")))
        .collect();
    // First (before any read repairs it), at ONE through node 4: its own replica answers
    // the keys it is a home replica of, what it streamed and what it received as a
    // pending replica meanwhile.
    let wrong = wrong_at(&probe, nodes[3].client, &keys, ConsistencyLevel::One);
    assert!(
        wrong.is_empty(),
        "{} of {} keys wrong at ONE through node 4: {:?}",
        wrong.len(),
        keys.len(),
        &wrong[..wrong.len().min(5)]
    );
    for n in &nodes {
        let wrong = wrong_at(&probe, n.client, &keys, ConsistencyLevel::Quorum);
        assert!(
            wrong.is_empty(),
            "{} of {} keys wrong at QUORUM through {}: {:?}",
            wrong.len(),
            keys.len(),
            n.name,
            &wrong[..wrong.len().min(5)]
        );
    }
    eprintln!(
        "join under load: {} writes acknowledged during the join, {} cells ({bytes} bytes, \
         {total} estimated at the sources) streamed in {} ranges",
        acked.len(),
        cells,
        report.streams.len()
    );
}

/// Elasticity, resumed bootstrap: a join killed mid-stream restarts joining and resumes
/// each range after its last checkpoint (the ranges it finished are not streamed again,
/// the rest move once), and a source killed mid-stream hands over to another replica.
#[test]
fn cluster_a_join_killed_mid_stream_resumes_without_resending_finished_ranges() {
    const KEYS: usize = 6_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);

    // 64 KiB/s: the stream of about 700 KB takes long enough to be cut.
    let slow = [
        "--seeds".to_owned(),
        nodes[0].peer.to_string(),
        "--stream-throughput-mb".to_owned(),
        "0.0625".to_owned(),
    ];
    let mut fourth = NodeProc::new(tmp.path(), "node4");
    fourth.start(&slow);
    let mut before = None;
    wait_for(
        "node 4 to finish some ranges",
        JOIN_DEADLINE,
        &[&fourth],
        || {
            before = streams_of(&probe, fourth.client)
                .filter(|r| r.streams.iter().filter(|s| s.state == "done").count() >= 3);
            before.is_some()
        },
    );
    fourth.signal(libc::SIGKILL);
    fourth.wait_exit();
    // Streams do not checkpoint past what the kill may have cut: read what was done from
    // the restarted node, which loads its checkpoints before it streams.
    fourth.start(&slow);
    let mut resumed = None;
    wait_for("node 4 to resume", JOIN_DEADLINE, &[&fourth], || {
        resumed = streams_of(&probe, fourth.client).filter(|r| !r.streams.is_empty());
        resumed.is_some()
    });
    let resumed = resumed.unwrap();
    let done_at_restart: Vec<&sibyl_protocol::StreamEntry> = resumed
        .streams
        .iter()
        .filter(|s| s.state == "done" && s.run_bytes == 0)
        .collect();
    assert!(
        done_at_restart.len() >= 3,
        "ranges finished before the kill are done at restart: {resumed:?}"
    );

    // A source dies mid-stream: node 4 goes on from another replica, at full speed.
    nodes[0].signal(libc::SIGKILL);
    nodes[0].wait_exit();
    let unlimited = probe
        .rt
        .block_on(probe.direct(fourth.client).streams(Some(0)));
    assert_eq!(unlimited.map(|r| r.throughput).ok(), Some(0));
    let mut finished = None;
    wait_for(
        "node 4 to complete its bootstrap",
        JOIN_DEADLINE,
        &[&fourth],
        || {
            finished = streams_of(&probe, fourth.client)
                .filter(|r| r.streams.iter().all(|s| s.state == "done"));
            finished.is_some()
        },
    );
    let finished = finished.unwrap();
    for s in &finished.streams {
        let was_done = done_at_restart.iter().any(|d| {
            (&d.table, &d.range_start, &d.range_end) == (&s.table, &s.range_start, &s.range_end)
        });
        if was_done {
            assert_eq!(s.run_bytes, 0, "a finished range streamed again: {s:?}");
        }
        assert!(s.run_bytes <= s.bytes, "{s:?}");
    }
    let total: u64 = finished.streams.iter().map(|s| s.bytes).sum();
    let again: u64 = finished.streams.iter().map(|s| s.run_bytes).sum();
    assert!(
        again < total,
        "the restart moved {again} of {total} bytes: not everything again"
    );
    eprintln!(
        "resumed join: {} of {} ranges done before the kill; {again} of {total} bytes moved after the restart",
        done_at_restart.len(),
        finished.streams.len()
    );

    // Node 4 owns its ranges and holds every key: at ONE through it, its own replica
    // answers where it is a home replica (node 1 is still down).
    nodes.push(fourth);
    let live: Vec<&NodeProc> = nodes[1..].iter().collect();
    wait_for("node 4 to be normal", JOIN_DEADLINE, &live, || {
        probe
            .topology(nodes[3].client)
            .is_some_and(|t| node_at(&t, &nodes[3]).is_some_and(|i| i.state == NodeState::Normal))
    });
    let keys: Vec<usize> = (0..KEYS).collect();
    assert_eq!(
        present_at_one(&probe, nodes[3].client, &keys).len(),
        KEYS,
        "every key at ONE through node 4"
    );
}

/// Elasticity, decommission: the fourth node of four leaves while a client writes at
/// QUORUM. It streams every range it replicates to the nodes that gain them before it
/// announces left: no client write fails, and afterwards each remaining node (rf 3 of 3)
/// holds every key, those written meanwhile included, in its own replica.
#[test]
fn cluster_a_decommissioned_node_streams_its_ranges_before_it_leaves() {
    const KEYS: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 4, &[]);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = write_load(nodes[..3].iter().map(|n| n.client).collect(), stop.clone());
    let said = probe.decommission(nodes[3].client);
    assert!(said.contains("is leaving"), "{said}");
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "node 4 to hand off its ranges and leave",
        JOIN_DEADLINE,
        &all,
        || {
            nodes[..3].iter().all(|n| {
                probe.topology(n.client).is_some_and(|t| {
                    node_at(&t, &nodes[3]).is_some_and(|i| i.state == NodeState::Left)
                })
            })
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, errors) = load.join().unwrap();
    assert!(
        errors.is_empty(),
        "client errors during the decommission: {errors:?}"
    );

    let report = streams_of(&probe, nodes[3].client).unwrap();
    let handed: Vec<_> = report
        .streams
        .iter()
        .filter(|s| s.operation == "decommission")
        .collect();
    assert!(!handed.is_empty(), "{report:?}");
    assert!(handed.iter().all(|s| s.state == "done"), "{report:?}");
    let cells: u64 = handed.iter().map(|s| s.cells).sum();

    // Before any read repairs them: each remaining node at ONE from its own replica.
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("r{i}"))
        .chain(acked.iter().map(|k| format!("w{k}")))
        .collect();
    for n in &nodes[..3] {
        let wrong = wrong_at(&probe, n.client, &keys, ConsistencyLevel::One);
        assert!(
            wrong.is_empty(),
            "{} of {} keys wrong at ONE through {}: {:?}",
            wrong.len(),
            keys.len(),
            n.name,
            &wrong[..wrong.len().min(5)]
        );
    }
    eprintln!(
        "decommission under load: {} writes acknowledged meanwhile, {cells} cells handed off in {} streams",
        acked.len(),
        handed.len()
    );
}

/// Elasticity, removenode: a dead node of four is removed; the ranges it replicated are
/// copied from the replicas that remain to the nodes that gain them (one pusher per range,
/// chosen alike by every node), so each remaining node (rf 3 of 3) then holds every key in
/// its own replica without waiting for anti-entropy.
#[test]
fn cluster_a_removed_nodes_ranges_are_rereplicated_from_the_remaining_replicas() {
    const KEYS: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 4, &[]);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);
    let id = node_at(&probe.topology(nodes[0].client).unwrap(), &nodes[3])
        .unwrap()
        .id
        .clone();
    nodes[3].signal(libc::SIGKILL);
    nodes[3].wait_exit();
    let live: Vec<&NodeProc> = nodes[..3].iter().collect();
    wait_for("node 1 to mark node 4 down", DOWN_DEADLINE, &live, || {
        probe
            .topology(nodes[0].client)
            .is_some_and(|t| node_at(&t, &nodes[3]).is_some_and(|i| !i.up))
    });
    let removed = probe.remove_node(nodes[0].client, &id);
    assert!(removed.is_ok(), "removenode {id}: {removed:?}");

    let mut streams = 0;
    wait_for(
        "the removed node's ranges to be re-replicated",
        JOIN_DEADLINE,
        &live,
        || {
            let reports: Vec<_> = nodes[..3]
                .iter()
                .filter_map(|n| streams_of(&probe, n.client))
                .collect();
            let ours: Vec<_> = reports
                .iter()
                .flat_map(|r| r.streams.iter())
                .filter(|s| s.operation == "removenode")
                .collect();
            streams = ours.len();
            // Every live node planned (it logs its share, maybe none) and every push is done.
            let planned = nodes[..3].iter().all(|n| {
                std::fs::read_to_string(n.log_path())
                    .is_ok_and(|l| l.contains("re-replicating the ranges it held"))
            });
            planned
                && reports.len() == 3
                && !ours.is_empty()
                && ours.iter().all(|s| s.state == "done")
        },
    );
    let keys: Vec<String> = (0..KEYS).map(|i| format!("r{i}")).collect();
    for n in &nodes[..3] {
        let wrong = wrong_at(&probe, n.client, &keys, ConsistencyLevel::One);
        assert!(
            wrong.is_empty(),
            "{} of {} keys wrong at ONE through {}: {:?}",
            wrong.len(),
            keys.len(),
            n.name,
            &wrong[..wrong.len().min(5)]
        );
    }
    eprintln!("removenode: {streams} streams re-replicated the removed node's ranges");
}

/// Elasticity, replace: a dead node's disk is gone; a new node at its address started with
/// `--replace OLD_ID` takes its tokens, streams its ranges from the other replicas under a
/// running write load (no client error), becomes normal, and the old node is removed
/// everywhere; the replacement answers every key at ONE from its own replica. A
/// replacement of a live node is refused at start with a clear message.
#[test]
fn cluster_a_replacement_takes_a_dead_nodes_tokens_and_streams_its_ranges_under_load() {
    const KEYS: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let mut nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);
    put_many_at_all(&probe, nodes[0].client, KEYS);
    let topology = probe.topology(nodes[0].client).unwrap();
    let live_id = node_at(&topology, &nodes[1]).unwrap().id.clone();
    let old = node_at(&topology, &nodes[2]).unwrap().clone();

    // A live node cannot be replaced: the would-be replacement exits, saying why.
    let mut impostor = NodeProc::new(tmp.path(), "impostor");
    impostor.start(&[
        "--seeds".to_owned(),
        nodes[0].peer.to_string(),
        "--replace".to_owned(),
        live_id.clone(),
    ]);
    let status = impostor.wait_exit();
    assert!(!status.success(), "{status:?}");
    let said = std::fs::read_to_string(impostor.log_path()).unwrap_or_default();
    assert!(
        said.contains(&format!("cannot replace node {live_id}")) && said.contains("is up"),
        "{said}"
    );

    nodes[2].signal(libc::SIGKILL);
    nodes[2].wait_exit();
    let live: Vec<&NodeProc> = nodes[..2].iter().collect();
    wait_for("node 1 to mark node 3 down", DOWN_DEADLINE, &live, || {
        probe
            .topology(nodes[0].client)
            .is_some_and(|t| node_at(&t, &nodes[2]).is_some_and(|i| !i.up))
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = write_load(nodes[..2].iter().map(|n| n.client).collect(), stop.clone());
    let data = nodes[2].dir.join("data");
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let seed = nodes[0].peer.to_string();
    nodes[2].start(&[
        "--seeds".to_owned(),
        seed,
        "--replace".to_owned(),
        old.id.clone(),
    ]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "the replacement to own the old node's tokens and the old node to be gone",
        JOIN_DEADLINE,
        &all,
        || {
            nodes.iter().all(|n| {
                probe.topology(n.client).is_some_and(|t| {
                    let replacement = t.nodes.iter().any(|i| {
                        i.address == old.address
                            && i.id != old.id
                            && i.state == NodeState::Normal
                            && i.up
                            && i.tokens == old.tokens
                    });
                    let gone = t
                        .nodes
                        .iter()
                        .filter(|i| i.id == old.id)
                        .all(|i| i.state == NodeState::Left);
                    replacement && gone
                })
            })
        },
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, errors) = load.join().unwrap();
    assert!(
        errors.is_empty(),
        "client errors during the replacement: {errors:?}"
    );
    let log = std::fs::read_to_string(nodes[2].log_path()).unwrap_or_default();
    assert!(
        log.contains("bootstrap complete") && log.contains("replacement complete"),
        "{log}"
    );
    let report = streams_of(&probe, nodes[2].client).unwrap();
    let cells: u64 = report.streams.iter().map(|s| s.cells).sum();
    assert!(
        !report.streams.is_empty() && report.streams.iter().all(|s| s.state == "done"),
        "{report:?}"
    );
    // Every key, from the replacement's own replica (rf 3 of 3: it is a home replica of
    // all), before any read could repair it.
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("r{i}"))
        .chain(acked.iter().map(|k| format!("w{k}")))
        .collect();
    let wrong = wrong_at(&probe, nodes[2].client, &keys, ConsistencyLevel::One);
    assert!(
        wrong.is_empty(),
        "{} of {} keys wrong at ONE through the replacement: {:?}",
        wrong.len(),
        keys.len(),
        &wrong[..wrong.len().min(5)]
    );
    eprintln!(
        "replace under load: {} writes acknowledged meanwhile, {cells} cells streamed in {} ranges",
        acked.len(),
        report.streams.len()
    );
}

/// Elasticity, cleanup: after a fourth node joins three (rf 1), the old owners still hold
/// the ranges it took. One with `--cleanup-grace-secs 1` drops them by itself once the
/// ring settles; the others drop them on `cleanup`. Afterwards every key is stored exactly
/// once across the cluster (each node holds only what it replicates) and reads back.
#[test]
fn cluster_cleanup_drops_the_ranges_a_join_took_automatically_or_on_demand() {
    const KEYS: usize = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    // Node 1 cleans up by itself 1 s after the ring settles; nodes 2 and 3 only on demand.
    let mut nodes = start_cluster_with(&probe, tmp.path(), 3, |i| {
        let grace = if i == 0 { "1" } else { "0" };
        vec!["--cleanup-grace-secs".to_owned(), grace.to_owned()]
    });
    let seed = nodes[0].peer.to_string();
    create_kv(&probe, &nodes, 1);
    put_many(&probe, nodes[0].client, 0..KEYS, ConsistencyLevel::All, 1);
    let entries = |n: &NodeProc| entries_of(&probe, n);
    // Nothing to drop before the join (the node asked replicates what it holds).
    let c2 = probe.direct(nodes[1].client);
    let idle = probe.rt.block_on(c2.cleanup(None)).unwrap();
    assert_eq!(idle.len(), 1, "{idle:?}");
    assert_eq!(idle[0].dropped, 0, "{idle:?}");

    let mut fourth = NodeProc::new(tmp.path(), "node4");
    fourth.start(&["--seeds".to_owned(), seed.clone()]);
    nodes.push(fourth);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "every node to see four normal nodes",
        JOIN_DEADLINE,
        &all,
        || {
            nodes.iter().all(|n| {
                probe
                    .topology(n.client)
                    .is_some_and(|t| all_up_normal(&t, &all, 16))
            })
        },
    );
    let held: u64 = nodes.iter().map(&entries).sum();
    assert!(held > KEYS as u64, "node 4 streamed copies: {held}");
    // Node 1 also cleaned up (nothing) after nodes 2 and 3 joined it: wait for the
    // cleanup that dropped what node 4 took.
    wait_for("node 1 to clean up by itself", JOIN_DEADLINE, &all, || {
        std::fs::read_to_string(nodes[0].log_path()).is_ok_and(|l| {
            l.lines().any(|line| {
                line.contains("automatic cleanup done") && !line.trim_end().ends_with("dropped=0")
            })
        })
    });
    let mut dropped = 0;
    for n in &nodes[1..3] {
        let c = probe.direct(n.client);
        let report = probe.rt.block_on(c.cleanup(Some("kv"))).unwrap();
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(
            report[0].bytes_after <= report[0].bytes_before,
            "{report:?}"
        );
        dropped += report[0].dropped;
    }
    assert!(dropped > 0, "nodes 2 and 3 lost ranges to node 4");
    // Node 4 received each range once; a compaction makes its count exact.
    let c4 = probe.direct(nodes[3].client);
    probe.rt.block_on(c4.compact("kv")).unwrap();
    let after: Vec<u64> = nodes.iter().map(&entries).collect();
    assert_eq!(
        after.iter().sum::<u64>(),
        KEYS as u64,
        "every key stored exactly once: {after:?}"
    );
    let keys: Vec<String> = (0..KEYS).map(|i| format!("r{i}")).collect();
    let wrong = wrong_at(&probe, nodes[0].client, &keys, ConsistencyLevel::One);
    assert!(
        wrong.is_empty(),
        "{} keys wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // An unknown table is refused.
    let err = probe.rt.block_on(c4.cleanup(Some("nope"))).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    eprintln!("cleanup: {held} entries held after the join, {after:?} after cleanup");
}

/// The `sibyl-admin` binary beside the node's (`cargo build --workspace --bins` puts both
/// there).
fn admin_binary() -> std::path::PathBuf {
    let bin = launcher::sibyl_binary()
        .with_file_name(format!("sibyl-admin{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "sibyl-admin is missing at {}: build it first with `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

/// Stored entries of table `kv` on `n` (memtables and SSTables).
fn entries_of(probe: &Probe, n: &NodeProc) -> u64 {
    let c = probe.direct(n.client);
    let s = probe.rt.block_on(c.table_stats("kv")).unwrap();
    s.sstable_entries + s.memtable_entries
}

/// [`entries_of`] every node.
fn entries_per_node(probe: &Probe, nodes: &[NodeProc]) -> Vec<u64> {
    nodes.iter().map(|n| entries_of(probe, n)).collect()
}

/// Highest over mean.
fn max_over_mean(v: &[u64]) -> f64 {
    let sum: u64 = v.iter().sum();
    *v.iter().max().unwrap() as f64 * v.len() as f64 / sum.max(1) as f64
}

/// Elasticity, rebalance: skewed data (most keys' tokens in 2% of the ring) leaves one or
/// two nodes holding far more than the others; `sibyl-admin rebalance` shows a plan,
/// `--commit` applies it under a write load (each moving node streams what changes hands),
/// and after a cleanup every node holds within 1.15 times the mean, with no client error
/// and every key readable.
#[test]
fn cluster_rebalance_spreads_skewed_data_within_fifteen_percent_under_load() {
    const UNIFORM: usize = 1_500;
    const HOT: usize = 4_500;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 4, &[]);
    create_kv(&probe, &nodes, 2);
    // The load during the moves goes to a table of its own: its keys spread by token
    // share, not by the plan, and the balance asserted is that of the data planned.
    let options = TableOptions {
        replication_factor: 2,
        ..TableOptions::default()
    };
    let c = probe.client(nodes[0].client).unwrap();
    probe.rt.block_on(c.create_table("load", options)).unwrap();
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for(
        "every node to list both tables",
        JOIN_DEADLINE,
        &all,
        || {
            nodes
                .iter()
                .all(|n| probe.tables(n.client).is_some_and(|t| t.len() == 2))
        },
    );
    // Uniform keys r0.., then hot keys h<i>: those whose murmur3 token falls in the 2% of
    // the ring above 0.
    put_many(
        &probe,
        nodes[0].client,
        0..UNIFORM,
        ConsistencyLevel::All,
        2,
    );
    let arc = (u64::MAX / 50) as i64;
    let hot: Vec<usize> = (0..)
        .filter(|i| {
            let t = sibyl_protocol::token::murmur3_token(format!("h{i}").as_bytes());
            (0..arc).contains(&t)
        })
        .take(HOT)
        .collect();
    put_keys(
        &probe,
        nodes[0].client,
        hot.iter().map(|i| format!("h{i}")),
        ConsistencyLevel::All,
        None,
    );
    let before = entries_per_node(&probe, &nodes);
    assert!(
        max_over_mean(&before) > 1.3,
        "the data is skewed: {before:?}"
    );

    let admin = |args: &[&str]| {
        let out = std::process::Command::new(admin_binary())
            .arg("--host")
            .arg(nodes[0].client.to_string())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, plan, err) = admin(&["rebalance"]);
    assert_eq!(code, Some(0), "{plan}{err}");
    assert!(plan.contains("apply with --commit"), "{plan}");
    let before_tokens: Vec<Vec<i128>> = probe
        .topology(nodes[0].client)
        .map(|t| {
            nodes
                .iter()
                .map(|n| node_at(&t, n).unwrap().tokens.clone())
                .collect()
        })
        .unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = write_load_into(
        "load",
        nodes.iter().map(|n| n.client).collect(),
        stop.clone(),
    );
    let (code, out, err) = admin(&["rebalance", "--commit"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, errors) = load.join().unwrap();
    let all: Vec<&NodeProc> = nodes.iter().collect();
    assert_eq!(
        code,
        Some(0),
        "{out}{err}{}",
        all.iter().map(|n| n.logs()).collect::<String>()
    );
    assert!(out.contains("rebalanced"), "{out}");
    assert!(
        errors.is_empty(),
        "client errors during the rebalance: {errors:?}"
    );
    assert!(acked.len() > 100, "the load ran: {} writes", acked.len());
    wait_for(
        "every node to see four normal nodes",
        JOIN_DEADLINE,
        &all,
        || {
            nodes.iter().all(|n| {
                probe
                    .topology(n.client)
                    .is_some_and(|t| all_up_normal(&t, &all, 16))
            })
        },
    );
    let after_tokens: Vec<Vec<i128>> = probe
        .topology(nodes[0].client)
        .map(|t| {
            nodes
                .iter()
                .map(|n| node_at(&t, n).unwrap().tokens.clone())
                .collect()
        })
        .unwrap();
    assert_ne!(before_tokens, after_tokens, "some node moved");

    // Every key, the ones written during the moves included, at QUORUM through every node.
    let keys: Vec<String> = (0..UNIFORM)
        .map(|i| format!("r{i}"))
        .chain(hot.iter().map(|i| format!("h{i}")))
        .collect();
    let written: Vec<String> = acked.iter().map(|k| format!("w{k}")).collect();
    for n in &nodes {
        let mut wrong = wrong_at(&probe, n.client, &keys, ConsistencyLevel::Quorum);
        wrong.extend(wrong_in(
            "load",
            &probe,
            n.client,
            &written,
            ConsistencyLevel::Quorum,
        ));
        assert!(
            wrong.is_empty(),
            "{} of {} keys wrong at QUORUM through {}: {:?}",
            wrong.len(),
            keys.len() + written.len(),
            n.name,
            &wrong[..wrong.len().min(5)]
        );
    }
    // The nodes drop what they no longer replicate; then each holds its share.
    for n in &nodes {
        let c = probe.direct(n.client);
        probe.rt.block_on(c.cleanup(Some("kv"))).unwrap();
    }
    let after = entries_per_node(&probe, &nodes);
    let stored: u64 = after.iter().sum();
    assert_eq!(
        stored,
        2 * keys.len() as u64,
        "rf 2 copies of every key, nothing else: {after:?}"
    );
    assert!(
        max_over_mean(&after) <= 1.15,
        "entries per node after the rebalance: {after:?} (before {before:?})"
    );
    // Asked again, the plan has nothing left to move.
    let (code, again, err) = admin(&["rebalance"]);
    assert_eq!(code, Some(0), "{again}{err}");
    eprintln!(
        "rebalance: entries per node {before:?} (max/mean {:.2}) -> {after:?} (max/mean \
         {:.2}); {} writes acknowledged during the moves\n{plan}\n{again}",
        max_over_mean(&before),
        max_over_mean(&after),
        acked.len()
    );
}

/// Elasticity, resumed decommission: a leaving node killed mid-hand-off restarts leaving
/// (its `handoff` file) and resumes each push after its last checkpoint: the ranges it
/// finished are not pushed again, and afterwards it leaves with every remaining node
/// holding every key.
#[test]
fn cluster_a_decommission_killed_mid_stream_resumes_without_resending_finished_ranges() {
    const KEYS: usize = 6_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    // Node 4 pushes at 64 KiB/s: its hand-off of about 700 KB takes long enough to cut.
    let slow = |i: usize| {
        if i == 3 {
            vec!["--stream-throughput-mb".to_owned(), "0.0625".to_owned()]
        } else {
            Vec::new()
        }
    };
    let mut nodes = start_cluster_with(&probe, tmp.path(), 4, slow);
    create_kv(&probe, &nodes, 3);
    put_many(&probe, nodes[0].client, 0..KEYS, ConsistencyLevel::All, 3);
    let said = probe
        .rt
        .block_on(probe.direct(nodes[3].client).decommission())
        .unwrap();
    assert!(said.contains("leaving"), "{said}");
    let mut before = None;
    wait_for(
        "node 4 to hand some ranges off",
        JOIN_DEADLINE,
        &[&nodes[3]],
        || {
            before = streams_of(&probe, nodes[3].client).filter(|r| {
                r.streams
                    .iter()
                    .filter(|s| s.operation == "decommission" && s.state == "done")
                    .count()
                    >= 3
            });
            before.is_some()
        },
    );
    nodes[3].signal(libc::SIGKILL);
    nodes[3].wait_exit();
    let seed = nodes[0].peer.to_string();
    let mut args = slow(3);
    args.extend(["--seeds".to_owned(), seed]);
    nodes[3].start(&args);
    let mut resumed = None;
    wait_for("node 4 to resume", JOIN_DEADLINE, &[&nodes[3]], || {
        resumed = streams_of(&probe, nodes[3].client).filter(|r| !r.streams.is_empty());
        resumed.is_some()
    });
    let resumed = resumed.unwrap();
    let done_at_restart: Vec<&sibyl_protocol::StreamEntry> = resumed
        .streams
        .iter()
        .filter(|s| s.state == "done" && s.run_bytes == 0)
        .collect();
    assert!(
        done_at_restart.len() >= 3,
        "ranges handed off before the kill are done at restart: {resumed:?}"
    );
    let topology = probe.topology(nodes[0].client).unwrap();
    assert_eq!(
        node_at(&topology, &nodes[3]).map(|n| n.state),
        Some(NodeState::Leaving),
        "restarted leaving"
    );
    let unlimited = probe
        .rt
        .block_on(probe.direct(nodes[3].client).streams(Some(0)));
    assert_eq!(unlimited.map(|r| r.throughput).ok(), Some(0));
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 4 to leave", JOIN_DEADLINE, &all, || {
        nodes[..3].iter().all(|n| {
            probe
                .topology(n.client)
                .is_some_and(|t| node_at(&t, &nodes[3]).is_some_and(|i| i.state == NodeState::Left))
        })
    });
    let finished = streams_of(&probe, nodes[3].client).unwrap();
    let (again, total) = check_resumed(&finished, &done_at_restart, |d, s| {
        (&d.table, &d.range_start, &d.range_end, &d.peer)
            == (&s.table, &s.range_start, &s.range_end, &s.peer)
    });
    let keys: Vec<usize> = (0..KEYS).collect();
    for n in &nodes[..3] {
        assert_eq!(
            present_at_one(&probe, n.client, &keys).len(),
            KEYS,
            "every key at ONE through {}",
            n.name
        );
    }
    eprintln!(
        "resumed decommission: {} of {} pushes done before the kill; {again} of {total} bytes \
         pushed after the restart",
        done_at_restart.len(),
        finished.streams.len()
    );
}

/// A move cut by a SIGKILL of the moving node: restarted, it comes back `moving` to the
/// same tokens and resumes, skipping the ranges it had finished; it then owns its new
/// tokens, and every key reads at ONE through every node. Its pages are 4 KiB, so its
/// ranges span several and are ingested straight into SSTables.
#[test]
fn cluster_a_move_killed_mid_stream_resumes_without_resending_finished_ranges() {
    const KEYS: usize = 6_000;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    // Node 3 streams at 64 KiB/s: its move takes long enough to cut.
    let slow = |i: usize| {
        if i == 2 {
            ["--stream-throughput-mb", "0.0625", "--stream-page-kb", "4"]
                .map(str::to_owned)
                .to_vec()
        } else {
            Vec::new()
        }
    };
    let mut nodes = start_cluster_with(&probe, tmp.path(), 3, slow);
    create_kv(&probe, &nodes, 2);
    put_many(&probe, nodes[0].client, 0..KEYS, ConsistencyLevel::All, 2);
    let old: Vec<i128> = probe
        .topology(nodes[0].client)
        .and_then(|t| node_at(&t, &nodes[2]).map(|n| n.tokens.clone()))
        .unwrap();
    // Each token a 32nd of the ring further on.
    let mut new: Vec<i128> = old
        .iter()
        .map(|&t| i128::from((t as i64).wrapping_add(1 << 59)))
        .collect();
    new.sort();
    let said = probe
        .rt
        .block_on(probe.direct(nodes[2].client).move_to(new.clone()))
        .unwrap();
    assert!(said.contains("moving"), "{said}");
    let mut before = None;
    wait_for(
        "node 3 to pull some ranges",
        JOIN_DEADLINE,
        &[&nodes[2]],
        || {
            before = streams_of(&probe, nodes[2].client).filter(|r| {
                r.streams
                    .iter()
                    .filter(|s| s.operation == "move" && s.state == "done" && s.bytes > 0)
                    .count()
                    >= 3
            });
            before.is_some()
        },
    );
    nodes[2].signal(libc::SIGKILL);
    nodes[2].wait_exit();
    let mut args = slow(2);
    args.extend(["--seeds".to_owned(), nodes[0].peer.to_string()]);
    nodes[2].start(&args);
    let mut resumed = None;
    wait_for("node 3 to resume", JOIN_DEADLINE, &[&nodes[2]], || {
        resumed = streams_of(&probe, nodes[2].client).filter(|r| !r.streams.is_empty());
        resumed.is_some()
    });
    let resumed = resumed.unwrap();
    let done_at_restart: Vec<&sibyl_protocol::StreamEntry> = resumed
        .streams
        .iter()
        .filter(|s| s.state == "done" && s.bytes > 0 && s.run_bytes == 0)
        .collect();
    assert!(
        done_at_restart.len() >= 3,
        "ranges pulled before the kill are done at restart: {resumed:?}"
    );
    let topology = probe.topology(nodes[0].client).unwrap();
    assert_eq!(
        node_at(&topology, &nodes[2]).map(|n| n.state),
        Some(NodeState::Moving),
        "restarted moving"
    );
    let unlimited = probe
        .rt
        .block_on(probe.direct(nodes[2].client).streams(Some(0)));
    assert_eq!(unlimited.map(|r| r.throughput).ok(), Some(0));
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_for("node 3 to own its new tokens", JOIN_DEADLINE, &all, || {
        nodes.iter().all(|n| {
            probe.topology(n.client).is_some_and(|t| {
                node_at(&t, &nodes[2])
                    .is_some_and(|i| i.state == NodeState::Normal && i.tokens == new)
            })
        })
    });
    let finished = streams_of(&probe, nodes[2].client).unwrap();
    let (again, total) = check_resumed(&finished, &done_at_restart, |d, s| {
        (&d.operation, &d.table, &d.range_start, &d.range_end)
            == (&s.operation, &s.table, &s.range_start, &s.range_end)
    });
    assert!(
        !nodes[2].process.data_dir.join("move").exists(),
        "the move file is removed once the move is done"
    );
    let keys: Vec<usize> = (0..KEYS).collect();
    for n in &nodes {
        assert_eq!(
            present_at_one(&probe, n.client, &keys).len(),
            KEYS,
            "every key at ONE through {}",
            n.name
        );
    }
    eprintln!(
        "resumed move: {} of {} streams done before the kill; {again} of {total} bytes \
         streamed after the restart",
        done_at_restart.len(),
        finished.streams.len()
    );
}

/// A BATCH through one node of three (rf 2): the INSERTs it is a home replica of are
/// minted there in groups and shipped in one call per replica, the others forwarded one
/// by one; either way every replica of every key holds its value, and the answer names
/// the replicas that acknowledged.
#[test]
fn cluster_a_batch_reaches_every_replica_of_each_key() {
    const KEYS: usize = 600;
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 2);
    let c = probe.direct(nodes[0].client);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(200) {
        let mutations = chunk
            .iter()
            .map(
                |i| match insert_kv(format!("b{i}"), format!("v{i}"), Consistency::default()) {
                    Request::Insert { insert, .. } => sibyl_protocol::Mutation::Insert(insert),
                    _ => unreachable!(),
                },
            )
            .collect();
        let request = Request::Batch {
            mutations,
            consistency: Some(Consistency::sloppy(ConsistencyLevel::All).strict()),
        };
        match probe.rt.block_on(c.request(request)) {
            Ok(Response::Written { meta }) => {
                assert_eq!(
                    meta.replicas.len(),
                    3,
                    "every node replicates some key: {meta:?}"
                )
            }
            other => panic!("batch: {other:?}"),
        }
    }
    // At ONE through each node, its own replica answers the keys it is a home replica
    // of: every copy of every key is there.
    let keys: Vec<String> = (0..KEYS).map(|i| format!("b{i}")).collect();
    for n in &nodes {
        let wrong = wrong_at(&probe, n.client, &keys, ConsistencyLevel::One);
        assert!(
            wrong.is_empty(),
            "{} of {KEYS} keys wrong at ONE through {}: {:?}",
            wrong.len(),
            n.name,
            &wrong[..wrong.len().min(5)]
        );
    }
    // Every copy: each key is stored twice, nothing more.
    let stored: u64 = entries_per_node(&probe, &nodes).iter().sum();
    assert_eq!(stored, 2 * KEYS as u64);
}

/// The issue's wide row, read through a coordinator at QUORUM: 25 cells of 900 KiB used
/// to page at about 9 MB while the response budget is 8 MiB.
#[test]
fn cluster_slice_pages_honour_the_response_byte_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let probe = Probe::new();
    let nodes = start_cluster(&probe, tmp.path(), 3, &[]);
    create_kv(&probe, &nodes, 3);
    let c = probe.try_direct(nodes[0].client).expect("connect");
    let value = Bytes::from(vec![b'v'; 900 << 10]);
    for i in 0..25 {
        let request = Request::Insert {
            insert: RowInsert {
                write_id: None,
                table: "kv".into(),
                key: Bytes::from_static(b"wide"),
                ttl_secs: None,
                timestamp_micros: None,
                columns: vec![ColumnWrite {
                    name: Bytes::from(format!("c{i:02}")),
                    value: value.clone(),
                    context: Bytes::new(),
                }],
            },
            consistency: Some(Consistency::sloppy(ConsistencyLevel::All).strict()),
        };
        let r = probe.rt.block_on(c.request(request)).expect("insert");
        assert!(matches!(r, Response::Written { .. }), "{r:?}");
    }
    let mut seen = Vec::new();
    let mut paging = None;
    loop {
        let request = Request::Get {
            table: "kv".into(),
            key: Bytes::from_static(b"wide"),
            selector: Selector::Slice {
                from: None,
                to: None,
                limit: 0,
                paging: paging.take(),
            },
            consistency: Some(Consistency::sloppy(ConsistencyLevel::Quorum).strict()),
        };
        let Response::Row {
            cells, next_page, ..
        } = probe.rt.block_on(c.request(request)).expect("slice")
        else {
            panic!("expected a row");
        };
        let bytes: usize = cells.iter().flat_map(|c| c.values()).map(|v| v.len()).sum();
        assert!(bytes <= 8 << 20, "a page of {bytes} bytes of values");
        assert!(!cells.is_empty());
        seen.extend(cells.iter().map(|c| c.name.clone()));
        match next_page {
            Some(p) => paging = Some(p),
            None => break,
        }
    }
    let expected: Vec<Bytes> = (0..25).map(|i| Bytes::from(format!("c{i:02}"))).collect();
    assert_eq!(seen, expected);
}
