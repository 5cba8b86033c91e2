//! [`NodeProcess`]: one real `sibyl` process in its lab namespace, and the faults done to
//! it by its own PID: SIGKILL and restart, SIGSTOP and SIGCONT, and a clock offset.
//!
//! The clock offset goes through libfaketime: the node starts with it preloaded and
//! reading its offset from a file of its own (`FAKETIME_TIMESTAMP_FILE`, re-read every
//! second), so the offset changes while the node runs. Only the wall clock moves
//! (`FAKETIME_DONT_FAKE_MONOTONIC`): timestamps, expiry and tombstone times see the skew;
//! timers and the failure detector do not. Without the library no skew is injected.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// Client port of every node (each has its own address).
pub const CLIENT_PORT: u16 = 7400;
/// Peer port of every node.
pub const PEER_PORT: u16 = 7401;
/// Cluster name the nemesis's nodes use.
pub const CLUSTER: &str = "nemesis";

/// Where libfaketime is looked for when `--faketime-lib` is not given.
pub const FAKETIME_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
];

/// One node process (see the module docs).
#[derive(Debug)]
pub struct NodeProcess {
    /// 0-based index.
    pub index: usize,
    namespace: String,
    addr: Ipv4Addr,
    binary: PathBuf,
    data: PathBuf,
    log: PathBuf,
    skew_file: PathBuf,
    faketime: Option<PathBuf>,
    seeds: Option<String>,
    child: Option<Child>,
    paused: bool,
}

impl NodeProcess {
    /// A node not started yet; its files live under `dir/node<index>`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        namespace: String,
        addr: Ipv4Addr,
        binary: &Path,
        dir: &Path,
        faketime: Option<PathBuf>,
        seeds: Option<String>,
    ) -> NodeProcess {
        let home = dir.join(format!("node{index}"));
        NodeProcess {
            index,
            namespace,
            addr,
            binary: binary.to_owned(),
            data: home.join("data"),
            log: home.join("node.log"),
            skew_file: home.join("faketime"),
            faketime,
            seeds,
            child: None,
            paused: false,
        }
    }

    /// `host:port` of its client port.
    pub fn client_addr(&self) -> String {
        format!("{}:{CLIENT_PORT}", self.addr)
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts the process (again, after a kill); the log is appended to.
    pub fn start(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.data)?;
        if !self.skew_file.exists() {
            std::fs::write(&self.skew_file, "+0\n")?;
        }
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace])
            .arg(&self.binary)
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--listen")
            .arg(format!("{}:{CLIENT_PORT}", self.addr))
            .arg("--peer-listen")
            .arg(format!("{}:{PEER_PORT}", self.addr))
            .args(["--cluster-name", CLUSTER, "--log-level", "info"])
            // Namespace addresses are not loopback: the lab is a private network.
            .arg("--insecure-no-auth")
            // Background anti-entropy every 30 s: a wiped node refills by repair within
            // a run, not only by hints and the checker's reads.
            .args(["--repair-period-secs", "30"]);
        if let Some(seeds) = &self.seeds {
            cmd.args(["--seeds", seeds]);
        }
        if let Some(lib) = &self.faketime {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &self.skew_file)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // `ip netns exec` execs the node, so the child's PID is the node's.
        self.child = Some(cmd.spawn()?);
        self.paused = false;
        Ok(())
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while it was started and not killed (it may still have exited on its own).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// True while it is stopped by SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Its exit status if it exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) on the PID of our own child, which we have not reaped.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// Kills the node and empties its data directory (a lost disk); the next start is a
    /// new node at the same address, joining through `seeds` if it had none (node 0,
    /// which founded the cluster).
    pub fn wipe(&mut self, seeds: &str) -> std::io::Result<()> {
        self.kill();
        if self.seeds.is_none() {
            self.seeds = Some(seeds.to_owned());
        }
        if self.data.exists() {
            std::fs::remove_dir_all(&self.data)?;
        }
        std::fs::create_dir_all(&self.data)
    }

    /// What the node logged from byte `from` on (empty when the log cannot be read).
    pub fn log_since(&self, from: u64) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    /// The log's length now.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map_or(0, |m| m.len())
    }

    /// SIGSTOP: the process stays, answers nothing.
    pub fn pause(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if self.paused {
            self.signal(libc::SIGCONT);
            self.paused = false;
        }
    }

    /// True when a clock offset can be injected.
    pub fn can_skew(&self) -> bool {
        self.faketime.is_some()
    }

    /// Sets its wall clock `secs` seconds off (0: none); seen within about a second.
    pub fn set_skew(&self, secs: i64) -> std::io::Result<()> {
        std::fs::write(&self.skew_file, format!("{secs:+}\n"))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
