//! [`Lab`]: the network the nemesis runs nodes in. Each node gets a network namespace
//! joined to one bridge by a veth pair, so that iptables rules inside a node's namespace
//! cut real packets between real processes.
//!
//! Addresses: node `i` (0-based) is `10.N.0.(i+1)` where `N` is the lab's subnet byte; the
//! bridge, where the harness's clients live, is `10.N.0.254`. Names carry a prefix unique
//! to the process and the lab (`sn<pid>x<n>`), so two runs on one machine do not collide
//! and nothing of another run is touched. Partitions drop a peer's packets in a node's INPUT chain;
//! clients (from the bridge address) are never cut. Dropping the lab removes its rules,
//! namespaces, veths and bridge. Needs root (or CAP_NET_ADMIN), `ip` and `iptables`.

use std::net::Ipv4Addr;
use std::process::Command;

/// Why the lab could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not start (not installed?).
    #[error("cannot run {command}: {reason} (the nemesis needs root, iproute2 and iptables)")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        reason: String,
    },
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// A bridge and one namespace per node (see the module docs).
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    subnet: u8,
    nodes: usize,
    /// Namespaces made so far (dropped on teardown even if creation stopped half-way).
    made: usize,
    bridge_made: bool,
}

/// Runs `args` and fails with its stderr when it exits non-zero.
pub(crate) fn sh(args: &[&str]) -> Result<(), LabError> {
    let command = args.join(" ");
    let (program, rest) = args.split_first().ok_or_else(|| LabError::Spawn {
        command: command.clone(),
        reason: "empty command".into(),
    })?;
    let out = Command::new(program)
        .args(rest)
        .output()
        .map_err(|e| LabError::Spawn {
            command: command.clone(),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Failed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl Lab {
    /// Builds the bridge and `nodes` namespaces on subnet `10.subnet.0.0/24`.
    pub fn create(nodes: usize, subnet: u8) -> Result<Lab, LabError> {
        // Unique per process and per lab within it (interface names stay under 15 bytes).
        static LABS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100;
        let mut lab = Lab {
            prefix: format!("sn{}x{n}", std::process::id() % 100_000),
            subnet,
            nodes,
            made: 0,
            bridge_made: false,
        };
        let bridge = lab.bridge();
        let host = format!("{}/24", lab.host_addr());
        sh(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        lab.bridge_made = true;
        sh(&["ip", "addr", "add", &host, "dev", &bridge])?;
        sh(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..nodes {
            let (ns, veth) = (lab.namespace(i), lab.veth(i));
            let addr = format!("{}/24", lab.addr(i));
            sh(&["ip", "netns", "add", &ns])?;
            lab.made = i + 1;
            sh(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            sh(&["ip", "link", "set", &veth, "master", &bridge, "up"])?;
            sh(&["ip", "-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            // Fail fast here rather than at the first partition.
            sh(&["ip", "netns", "exec", &ns, "iptables", "-F", "INPUT"])?;
        }
        Ok(lab)
    }

    /// Nodes in the lab.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, u8::try_from(i + 1).unwrap_or(253))
    }

    /// The bridge's address (where the harness's clients connect from).
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 254)
    }

    /// Node `i`'s namespace name.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Node `to` stops receiving packets from node `from` (one direction; TCP in both
    /// directions between them breaks, since its acknowledgements are lost too).
    pub fn drop_from(&self, to: usize, from: usize) -> Result<(), LabError> {
        let ns = self.namespace(to);
        let src = self.addr(from).to_string();
        sh(&[
            "ip", "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &src, "-j", "DROP",
        ])
    }

    /// Cuts every link between a node of `a` and a node of `b`, both directions.
    pub fn split(&self, a: &[usize], b: &[usize]) -> Result<(), LabError> {
        for &x in a {
            for &y in b {
                self.drop_from(x, y)?;
                self.drop_from(y, x)?;
            }
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<(), LabError> {
        for i in 0..self.nodes {
            sh(&[
                "ip",
                "netns",
                "exec",
                &self.namespace(i),
                "iptables",
                "-F",
                "INPUT",
            ])?;
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Best effort: a namespace whose processes are gone deletes cleanly. Its veth
        // pair should go with it, but on some kernels the host end outlives the
        // namespace, so it is deleted by name first (deleting one end deletes both).
        for i in 0..self.made {
            let _ = sh(&["ip", "link", "del", &self.veth(i)]);
            let _ = sh(&["ip", "netns", "del", &self.namespace(i)]);
        }
        if self.bridge_made {
            let _ = sh(&["ip", "link", "del", &self.bridge()]);
        }
    }
}
