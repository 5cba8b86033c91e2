//! [`TestNode`]: a real `sibyl` node process for one test, and helpers to run the tools'
//! binaries against it.
//!
//! The node is started by the workspace's one launcher (`tests/common/launcher.rs`, which
//! finds `<target dir>/debug/sibyl` beside this test binary: build it first with `cargo
//! build --bins`, as CI does). Each node gets free ports, its own temp data dir, and is
//! ready once its client port accepts a TCP connection (polled with a deadline). Drop kills
//! the child by its own PID and waits for it.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::launcher::SibylProcess;

/// How long a node may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// A running node.
pub struct TestNode {
    /// `127.0.0.1:PORT` of the client port.
    pub addr: String,
    /// `127.0.0.1:PORT` of the peer port (a seed for other nodes).
    pub peer: String,
    /// The child, killed when the node is dropped (before its directory goes).
    _process: SibylProcess,
    _dir: tempfile::TempDir,
}

impl TestNode {
    /// Starts a node and waits until it accepts client connections.
    pub fn start() -> TestNode {
        TestNode::start_with(&[])
    }

    /// Starts a node with `extra` flags and waits until it accepts client connections.
    pub fn start_with(extra: &[&str]) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut process = SibylProcess::new(&dir.path().join("data"));
        let log = dir.path().join("node.log");
        process.spawn(extra, &log, &log);
        let addr = process.client.to_string();
        let peer = process.peer.to_string();
        process.wait_until(
            "accepting clients",
            READY_DEADLINE,
            |p| TcpStream::connect(p.client).is_ok(),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
        TestNode {
            addr,
            peer,
            _process: process,
            _dir: dir,
        }
    }
}

/// Output of a tool run, as text.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub code: Option<i32>,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            success: o.status.success(),
            code: o.status.code(),
        }
    }

    /// Asserts success, showing both streams otherwise.
    pub fn ok(self) -> Run {
        assert!(
            self.success,
            "tool failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Runs a tool binary with `args`, feeding `stdin` (empty: a closed pipe).
pub fn run_tool(bin: &str, args: &[&str], stdin: &str) -> Run {
    run_tool_env(bin, args, stdin, &[])
}

/// [`run_tool`] with extra environment variables.
pub fn run_tool_env(bin: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    {
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
    }
    Run::from(child.wait_with_output().expect("wait tool"))
}

/// `sibyl-cli --host ADDR -e STATEMENTS`.
pub fn cli(node: &TestNode, statements: &str) -> Run {
    run_tool(
        env!("CARGO_BIN_EXE_sibyl-cli"),
        &["--host", &node.addr, "-e", statements],
        "",
    )
}

/// `sibyl-admin --host NODE ARGS...`.
pub fn admin(node: &TestNode, args: &[&str]) -> Run {
    let mut all = vec!["--host", node.addr.as_str()];
    all.extend_from_slice(args);
    run_tool(env!("CARGO_BIN_EXE_sibyl-admin"), &all, "")
}

/// How long a cluster may take to show every node up and normal everywhere.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(90);

/// Real nodes forming one cluster: the first is the seed of the others.
pub struct TestCluster {
    /// The nodes, seed first.
    pub nodes: Vec<TestNode>,
}

impl TestCluster {
    /// Starts `count` nodes and waits (bounded) until each one's `status --json` shows
    /// all of them up and normal.
    pub fn start(count: usize) -> TestCluster {
        TestCluster::start_with(count, |_| Vec::new())
    }

    /// [`TestCluster::start`] with the extra flags of node `i` (from 0) given by
    /// `extra(i)`.
    pub fn start_with(count: usize, extra: impl Fn(usize) -> Vec<String>) -> TestCluster {
        let flags = |i: usize, seeds: Option<&str>| {
            let mut f = extra(i);
            if let Some(s) = seeds {
                f.extend(["--seeds".to_owned(), s.to_owned()]);
            }
            f
        };
        let first = flags(0, None);
        let seed = TestNode::start_with(&first.iter().map(String::as_str).collect::<Vec<_>>());
        let seeds = seed.peer.clone();
        let mut nodes = vec![seed];
        for i in 1..count {
            let f = flags(i, Some(&seeds));
            nodes.push(TestNode::start_with(
                &f.iter().map(String::as_str).collect::<Vec<_>>(),
            ));
        }
        let deadline = std::time::Instant::now() + CLUSTER_DEADLINE;
        for node in &nodes {
            loop {
                let run = admin(node, &["--json", "status"]);
                let ready = run.success
                    && serde_json::from_str::<serde_json::Value>(&run.stdout).is_ok_and(|v| {
                        let up_normal = v["nodes"].as_array().map_or(0, |a| {
                            a.iter()
                                .filter(|n| n["up"] == true && n["state"] == "normal")
                                .count()
                        });
                        up_normal == count
                    });
                if ready {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster did not form: {}{}",
                    run.stdout,
                    run.stderr
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        TestCluster { nodes }
    }
}
