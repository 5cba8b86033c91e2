//! [`TestNode`]: a real `sibyl` node process for one test, and helpers to run the tools'
//! binaries against it.
//!
//! The node binary is `<target dir>/debug/sibyl`, found next to this test binary
//! (`.../target/debug/deps/<test>` -> `.../target/debug/sibyl`); build it first
//! (`cargo build -p sibyl`; CI builds every binary before the tests). Each node gets free
//! ports (bound to 127.0.0.1:0 and released), its own temp data dir, and is ready once its
//! client port accepts a TCP connection (polled with a deadline). Drop kills the child by
//! its own PID and waits for it.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// A running node.
pub struct TestNode {
    child: Child,
    /// `127.0.0.1:PORT` of the client port.
    pub addr: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Path of the `sibyl` node binary beside this test binary.
pub fn node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let debug_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in <target>/<profile>/deps");
    let bin = debug_dir.join(format!("sibyl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "the sibyl node binary is missing at {}: build it first with \
         `cargo build -p sibyl` (same CARGO_TARGET_DIR as the tests)",
        bin.display()
    );
    bin
}

impl TestNode {
    /// Starts a node and waits until it accepts client connections.
    pub fn start() -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let peer_port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log file");
        let child = Command::new(node_binary())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(&addr)
            .arg("--peer-listen")
            .arg(format!("127.0.0.1:{peer_port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn sibyl");
        let mut node = TestNode { child, addr, dir };
        node.wait_ready();
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "sibyl exited with {status} before accepting; log:\n{}",
                    self.log()
                );
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sibyl did not accept on {} within {READY_DEADLINE:?}; log:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(PROBE_INTERVAL);
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // Child::kill signals exactly this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let mut child = Command::new(bin)
        .args(args)
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
