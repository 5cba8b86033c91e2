//! The one launcher of the real `sibyl` binary for every test that runs it: the node's
//! integration tests (`tests/`) and the tools' tests (`tools/tests/`, which include this
//! file by path). It finds the binary, picks free ports, spawns the node with its output in
//! files the test chooses, sends signals by the child's own PID, waits for an exit with a
//! deadline (polling, never sleeping for a condition), and kills the child on drop.
#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to exit after a signal.
pub const EXIT_DEADLINE: Duration = Duration::from_secs(30);
/// Interval between two looks at a condition being waited for.
pub const POLL: Duration = Duration::from_millis(20);

/// The `sibyl` node binary: Cargo's path for this crate's own binary when the test belongs
/// to the node's crate, else the binary beside the test executable
/// (`<target>/<profile>/deps/<test>` -> `<target>/<profile>/sibyl`), which `cargo build
/// --bins` (CI's first step) puts there.
pub fn sibyl_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_sibyl") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("sibyl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "the sibyl node binary is missing at {}: build it first with \
         `cargo build --bins` (same CARGO_TARGET_DIR as the tests)",
        bin.display()
    );
    bin
}

/// A loopback address nobody listens on right now, with a port below the kernel's
/// ephemeral range. A port from `bind(0)` comes from that range, which every outgoing
/// connection also draws its source port from: another test's client could take it
/// before the node binds it ("Address already in use"). Ports are walked from a start
/// that differs per process, one step per call, so the tests of one binary do not pick
/// the same port twice.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOW + 1_000 {
        let span = ephemeral_low - LOW;
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + (start + n.wrapping_mul(37)) % span;
            if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
                return l.local_addr().expect("local addr");
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// One `sibyl` child with fixed ports and data directory, so it can be stopped and
/// started again as the same node.
#[derive(Debug)]
pub struct SibylProcess {
    child: Option<Child>,
    /// Client address (`--listen`).
    pub client: SocketAddr,
    /// Peer address (`--peer-listen`).
    pub peer: SocketAddr,
    /// Data directory (`--data-dir`).
    pub data_dir: PathBuf,
}

impl SibylProcess {
    /// A node on two fresh, distinct ports; nothing runs until [`SibylProcess::spawn`].
    pub fn new(data_dir: &Path) -> SibylProcess {
        let client = free_addr();
        let mut peer = free_addr();
        while peer == client {
            peer = free_addr();
        }
        SibylProcess {
            child: None,
            client,
            peer,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Starts the process with `extra` flags after the data directory and the two
    /// addresses; its standard output goes to `stdout` and its log (stderr) to `stderr`
    /// (the same path for both is allowed).
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&mut self, extra: &[S], stdout: &Path, stderr: &Path) {
        assert!(self.child.is_none(), "node already running");
        let err = File::create(stderr).expect("create the node's log file");
        let out = if stdout == stderr {
            err.try_clone().expect("clone the log file")
        } else {
            File::create(stdout).expect("create the node's stdout file")
        };
        let child = Command::new(sibyl_binary())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.client.to_string())
            .arg("--peer-listen")
            .arg(self.peer.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn sibyl");
        self.child = Some(child);
    }

    /// Whether a started child has not been reaped yet.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status if the process has exited (it is then reaped and forgotten).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// The child's process id (0 when none runs).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends `sig` to the child, by its own PID.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0, "no node process to signal");
        // SAFETY: kill(2) on our own, not yet reaped, child's PID.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Waits for the child to exit within [`EXIT_DEADLINE`]; on timeout panics with
    /// `logs()`.
    pub fn wait_exit(&mut self, logs: impl Fn() -> String) -> ExitStatus {
        let deadline = Instant::now() + EXIT_DEADLINE;
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "node did not exit in time:\n{}",
                logs()
            );
            std::thread::sleep(POLL); // polling interval, not a wait for a condition
        }
    }

    /// Polls `ready` until it holds; panics with `logs()` if the process exits first or
    /// `deadline` passes.
    pub fn wait_until(
        &mut self,
        what: &str,
        deadline: Duration,
        mut ready: impl FnMut(&SibylProcess) -> bool,
        logs: impl Fn() -> String,
    ) {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_wait() {
                panic!("node exited with {status} before {what}:\n{}", logs());
            }
            if ready(self) {
                return;
            }
            assert!(
                Instant::now() < end,
                "node not {what} within {deadline:?}:\n{}",
                logs()
            );
            std::thread::sleep(POLL); // polling interval, not a wait for a condition
        }
    }
}

impl Drop for SibylProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Child::kill signals exactly this child's PID.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
