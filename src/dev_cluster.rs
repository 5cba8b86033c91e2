//! `sibyl dev-cluster`: a local cluster for development. Starts N child `sibyl` processes
//! (this same binary) on one host address, node i with client port `base + 10*(i-1)` and
//! peer port one above, data in `DIR/nodeI` and its log in `DIR/nodeI.log`; node 1 is the
//! seed of the others. Nodes start one at a time, each once it sees itself and the
//! previous ones up and `normal`, so balanced token allocation sees the ring it joins.
//! Once every node sees all of them it prints how to connect, then waits; on SIGINT or
//! SIGTERM it sends SIGTERM to every child by its PID, waits up to [`STOP_GRACE`], and
//! SIGKILLs the ones still running.
//!
//! A child that exits on its own (say, killed to watch failure detection) is reported and
//! the others keep running. On Linux each child also gets SIGTERM if this process dies
//! without cleaning up (`PR_SET_PDEATHSIG`).
//!
//! Threading: a current-thread tokio runtime on the main thread (children are spawned
//! from the main thread, which `PR_SET_PDEATHSIG` ties them to).

use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use sibyl_protocol::{Client, ClientOptions, NodeState};

/// How long a node may take to start and join.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long the children get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often children and readiness are polled.
const POLL: Duration = Duration::from_millis(200);
/// Port distance between consecutive nodes (client port, peer port = client + 1).
const PORT_STRIDE: u16 = 10;
/// Most nodes a dev cluster may have.
const MAX_NODES: usize = 64;

/// Flags of `sibyl dev-cluster`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevClusterArgs {
    /// Nodes to start.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Directory for the nodes' data directories (nodeN) and logs (nodeN.log).
    #[arg(long, default_value = "./sibyl-dev-cluster")]
    pub dir: PathBuf,
    /// Client port of node 1; node i uses base + 10*(i-1), its peer port one above.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// Address every node listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Log filter of the nodes.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Further flags for every node, after `--` (e.g. `-- --num-tokens 8`).
    #[arg(last = true)]
    pub node_args: Vec<String>,
}

struct DevNode {
    index: usize,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl DevNode {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status once the child has exited (reaped; reported once).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Runs the dev cluster until a signal; the process exit code.
pub fn run(args: DevClusterArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sibyl dev-cluster: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut nodes = Vec::new();
    let code = runtime.block_on(run_cluster(&args, &mut nodes));
    stop_all(&mut nodes);
    code
}

fn plan(args: &DevClusterArgs) -> Result<Vec<DevNode>, String> {
    if args.nodes == 0 || args.nodes > MAX_NODES {
        return Err(format!("--nodes must be 1..={MAX_NODES}"));
    }
    (0..args.nodes)
        .map(|i| {
            let offset = u16::try_from(i)
                .ok()
                .and_then(|i| i.checked_mul(PORT_STRIDE))
                .ok_or("too many nodes")?;
            let port = args
                .base_port
                .checked_add(offset)
                .filter(|p| *p < u16::MAX)
                .ok_or_else(|| {
                    format!(
                        "--base-port {} leaves no room for node {}",
                        args.base_port,
                        i + 1
                    )
                })?;
            Ok(DevNode {
                index: i + 1,
                client: SocketAddr::new(args.host, port),
                peer: SocketAddr::new(args.host, port + 1),
                data_dir: args.dir.join(format!("node{}", i + 1)),
                log: args.dir.join(format!("node{}.log", i + 1)),
                child: None,
            })
        })
        .collect()
}

async fn run_cluster(args: &DevClusterArgs, nodes: &mut Vec<DevNode>) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sibyl dev-cluster: cannot listen for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    *nodes = match plan(args) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sibyl dev-cluster: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!(
            "sibyl dev-cluster: cannot create {}: {e}",
            args.dir.display()
        );
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sibyl dev-cluster: cannot find my own binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let seed = nodes.first().map(|n| n.peer);
    for i in 0..nodes.len() {
        let Some(node) = nodes.get_mut(i) else { break };
        let seeds = if i == 0 { None } else { seed };
        match spawn(&exe, node, seeds, args) {
            Ok(child) => node.child = Some(child),
            Err(e) => {
                eprintln!("sibyl dev-cluster: cannot start node {}: {e}", node.index);
                return ExitCode::FAILURE;
            }
        }
        println!(
            "starting node {} (pid {}) on {} ...",
            node.index,
            node.pid().unwrap_or(0),
            node.client
        );
        let _ = std::io::stdout().flush();
        let joined = tokio::select! {
            r = wait_joined(node, i + 1) => r,
            _ = term.recv() => return ExitCode::SUCCESS,
            _ = int.recv() => return ExitCode::SUCCESS,
        };
        if let Err(e) = joined {
            eprintln!(
                "sibyl dev-cluster: node {} did not join: {e}\n--- {} ---\n{}",
                node.index,
                node.log.display(),
                node.log_tail()
            );
            return ExitCode::FAILURE;
        }
    }
    // Every node, not only the last, should see the whole cluster before it is "up".
    let total = nodes.len();
    for node in nodes.iter_mut() {
        let agreed = tokio::select! {
            r = wait_joined(node, total) => r,
            _ = term.recv() => return ExitCode::SUCCESS,
            _ = int.recv() => return ExitCode::SUCCESS,
        };
        if let Err(e) = agreed {
            eprintln!(
                "sibyl dev-cluster: node {} does not see all {total} nodes: {e}\n--- {} ---\n{}",
                node.index,
                node.log.display(),
                node.log_tail()
            );
            return ExitCode::FAILURE;
        }
    }
    print_summary(nodes, &args.dir);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        for n in nodes.iter_mut() {
            if let Some(status) = n.exited() {
                println!(
                    "node {} ({}) exited with {status}; the others keep running (log {})",
                    n.index,
                    n.client,
                    n.log.display()
                );
                let _ = std::io::stdout().flush();
            }
        }
    }
    println!("stopping the dev cluster ...");
    ExitCode::SUCCESS
}

fn spawn(
    exe: &Path,
    node: &DevNode,
    seed: Option<SocketAddr>,
    args: &DevClusterArgs,
) -> std::io::Result<Child> {
    std::fs::create_dir_all(&node.data_dir)?;
    let log = File::create(&node.log)?;
    let mut cmd = Command::new(exe);
    cmd.arg("--data-dir")
        .arg(&node.data_dir)
        .arg("--listen")
        .arg(node.client.to_string())
        .arg("--peer-listen")
        .arg(node.peer.to_string())
        .arg("--log-level")
        .arg(&args.log_level);
    if let Some(seed) = seed {
        cmd.arg("--seeds").arg(seed.to_string());
    }
    cmd.args(&args.node_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child's own settings.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// Polls `node` until its topology lists `expected` nodes, all up and `normal`.
async fn wait_joined(node: &mut DevNode, expected: usize) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    let options = ClientOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        pool_size: 1,
        client_name: "sibyl-dev-cluster".into(),
        ..ClientOptions::default()
    };
    let addr = node.client.to_string();
    loop {
        if let Some(status) = node.exited() {
            return Err(format!("it exited with {status}"));
        }
        if let Ok(client) = Client::connect_with(&[addr.as_str()], options.clone()).await {
            if let Ok(t) = client.topology().await {
                let ready = t
                    .nodes
                    .iter()
                    .filter(|n| n.up && n.state == NodeState::Normal)
                    .count();
                if ready >= expected {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready within {START_DEADLINE:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn print_summary(nodes: &[DevNode], dir: &Path) {
    println!("dev cluster of {} node(s) is up:", nodes.len());
    for n in nodes {
        println!(
            "  node{}  client {}  peer {}  pid {}  data {}  log {}",
            n.index,
            n.client,
            n.peer,
            n.pid().unwrap_or(0),
            n.data_dir.display(),
            n.log.display()
        );
    }
    if let Some(first) = nodes.first() {
        println!("connect:  sibyl-cli --host {}", first.client);
        println!("status:   sibyl-admin --host {} status", first.client);
        println!("ring:     sibyl-admin --host {} ring", first.client);
    }
    println!(
        "data stays in {} across runs; Ctrl-C stops every node",
        dir.display()
    );
    let _ = std::io::stdout().flush();
}

/// SIGTERM to every running child by its PID, then SIGKILL after [`STOP_GRACE`].
fn stop_all(nodes: &mut [DevNode]) {
    for n in nodes.iter() {
        if let Some(pid) = n.pid().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        for n in nodes.iter_mut() {
            n.exited();
        }
        let running = nodes.iter().filter(|n| n.child.is_some()).count();
        if running == 0 {
            println!("every node stopped");
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in nodes.iter_mut() {
        if let Some(mut c) = n.child.take() {
            eprintln!(
                "node {} did not stop within {STOP_GRACE:?}; killing it",
                n.index
            );
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
