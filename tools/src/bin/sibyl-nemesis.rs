//! `sibyl-nemesis`: breaks a real cluster on purpose while clients write, heals it, and
//! checks that no acknowledged write was lost (Jepsen's method on one machine).
//!
//! `sudo sibyl-nemesis --duration 120 --seed 7 [--seeds 3]` starts 5 `sibyl` nodes in network
//! namespaces, runs set, delete and register clients against them while partitions,
//! kills, pauses and clock skew come and go, then heals, waits for the replicas to agree
//! and checks every key through every node. Exit status 0 when nothing was lost,
//! invented or resurrected; 1 when something was (or the replicas never agreed); 2 when
//! the run could not be carried out. The seed and every fault are printed; the history
//! (`history.jsonl`) and the nodes' logs stay in `--dir`. Needs root, iproute2 and
//! iptables; libfaketime for the clock-skew faults. The logic lives in
//! `sibyl_tools::nemesis`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use sibyl_tools::nemesis::clients::ALL_WORKLOADS;
use sibyl_tools::nemesis::faults::KINDS;
use sibyl_tools::nemesis::nodes::FAKETIME_CANDIDATES;
use sibyl_tools::nemesis::{run, NemesisConfig, RunsSummary};

/// Fault injection on real processes, with a checker.
#[derive(Debug, Parser)]
#[command(name = "sibyl-nemesis", version)]
struct Args {
    /// Nodes to start.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seconds the clients run under faults.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seed of the fault schedule (printed; default from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Runs, each on a fresh cluster, with the seeds from --seed on.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Concurrent clients (set, delete and register in turn).
    #[arg(long, default_value_t = 9)]
    clients: usize,
    /// The `sibyl` binary (default: beside this one).
    #[arg(long)]
    sibyl: Option<PathBuf>,
    /// Run directory for node data, logs and the history (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Second byte of the lab subnet 10.N.0.0/24.
    #[arg(long, default_value_t = 77)]
    subnet: u8,
    /// libfaketime library for clock skew (default: Debian's, when installed).
    #[arg(long)]
    faketime_lib: Option<PathBuf>,
    /// Inject no clock skew.
    #[arg(long)]
    no_skew: bool,
    /// Seconds to wait for the replicas to agree after the heal.
    #[arg(long, default_value_t = 120)]
    converge_timeout: u64,
    /// Fault kinds to draw, comma-separated: isolate, halves, one-way, kill, pause, skew
    /// (default: all).
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Workloads to run, comma-separated: set, delete, register (default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
}

fn main() {
    std::process::exit(match real_main() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("sibyl-nemesis: {e}");
            2
        }
    });
}

fn real_main() -> anyhow::Result<bool> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("needs root (it makes network namespaces and iptables rules)");
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let binary = match args.sibyl {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("sibyl"))
            .ok_or_else(|| anyhow::anyhow!("cannot find the sibyl binary; pass --sibyl"))?,
    };
    if !binary.exists() {
        anyhow::bail!(
            "no sibyl binary at {} (build it, or pass --sibyl)",
            binary.display()
        );
    }
    let faketime = if args.no_skew {
        None
    } else {
        args.faketime_lib.or_else(|| {
            FAKETIME_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
    };
    let dir = match args.dir {
        Some(d) => d,
        None => tempfile_dir()?,
    };
    println!(
        "sibyl-nemesis: seed {seed}, {} nodes, {} s, {} clients, clock skew {}; rerun with \
         --seed {seed}",
        args.nodes,
        args.duration,
        args.clients,
        if faketime.is_some() {
            "on"
        } else {
            "off (no libfaketime)"
        }
    );
    for f in &args.faults {
        if !KINDS.contains(&f.as_str()) {
            anyhow::bail!("unknown fault {f:?} (expected one of {})", KINDS.join(", "));
        }
    }
    let mut workloads = Vec::new();
    for w in &args.workloads {
        match ALL_WORKLOADS.iter().find(|x| x.name() == w) {
            Some(x) => workloads.push(*x),
            None => anyhow::bail!("unknown workload {w:?} (expected set, delete or register)"),
        }
    }
    let config = NemesisConfig {
        nodes: args.nodes,
        duration: Duration::from_secs(args.duration),
        seed,
        clients: args.clients.max(1),
        binary,
        dir,
        subnet: args.subnet,
        faketime,
        converge_timeout: Duration::from_secs(args.converge_timeout),
        faults: args.faults.clone(),
        workloads,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let mut summary = RunsSummary::default();
    for n in 0..args.seeds.max(1) {
        let seed = config.seed.wrapping_add(n);
        let run_config = NemesisConfig {
            seed,
            dir: if args.seeds > 1 {
                config.dir.join(format!("seed-{seed}"))
            } else {
                config.dir.clone()
            },
            ..config.clone()
        };
        if args.seeds > 1 {
            println!("run {} of {}: seed {seed}", n + 1, args.seeds);
        }
        let report = rt.block_on(run(&run_config, |line| println!("{line}")))?;
        print!("{}", report.to_text());
        summary.add(&report);
    }
    if args.seeds > 1 {
        print!("{}", summary.to_text());
    }
    Ok(summary.failed.is_empty())
}

/// A fresh directory under the system temp dir, kept after the run.
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("sibyl-nemesis-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
