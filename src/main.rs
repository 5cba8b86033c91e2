//! The `sibyl` node binary: parses flags and the config file, sets up logging, starts a
//! [`sibyl::node::Node`] and runs it until SIGINT or SIGTERM, then shuts it down cleanly
//! (stop accepting, announce the shutdown to peers, finish requests in flight, sync the
//! commit log).
//!
//! `sibyl dev-cluster --nodes N` instead starts a local cluster of N child nodes (see
//! [`dev_cluster`]).
//!
//! Exit codes: 0 after a clean shutdown, 1 when the node cannot start or stop cleanly,
//! 2 for a configuration error.

mod dev_cluster;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sibyl::config::{Cli, Config};
use sibyl::node::Node;

/// Flags of the node, or a subcommand.
#[derive(Debug, Parser)]
#[command(
    name = "sibyl",
    version,
    about = "Sibyl: a Dynamo-style wide-column store node",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(flatten)]
    node: Cli,
    #[command(subcommand)]
    command: Option<SibylCommand>,
}

#[derive(Debug, Subcommand)]
enum SibylCommand {
    /// Start a local cluster of child nodes for development; Ctrl-C stops them all.
    DevCluster(dev_cluster::DevClusterArgs),
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(SibylCommand::DevCluster(dev)) = args.command {
        return dev_cluster::run(dev);
    }
    let config = match Config::load(args.node) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sibyl: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sibyl: invalid log level {:?}: {e}", config.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sibyl-worker")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sibyl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let node = match Node::start(&config).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("sibyl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let sync = match config.sync {
        sibyl_storage::SyncMode::Batch => "batch".to_owned(),
        sibyl_storage::SyncMode::Periodic { interval } => {
            format!("periodic {}ms", interval.as_millis())
        }
    };
    let seeds = if config.cluster.seeds.is_empty() {
        "none (a new cluster)".to_owned()
    } else {
        config
            .cluster
            .seeds
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "sibyl {} ready: clients {}, peers {}, data {}, actor {}, generation {}, cluster {:?}, \
         seeds {}, sync {}",
        env!("CARGO_PKG_VERSION"),
        node.client_addr(),
        node.peer_addr(),
        config.data_dir.display(),
        node.service().actor(),
        node.generation(),
        config.cluster.cluster_name,
        seeds,
        sync
    );
    let _ = std::io::stdout().flush();
    match wait_for_signal().await {
        Ok(name) => tracing::info!(signal = name, "shutting down"),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for signals; shutting down");
        }
    }
    match node.shutdown().await {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sibyl: unclean shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGINT or SIGTERM; returns the signal's name.
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => Ok("SIGTERM"),
        _ = int.recv() => Ok("SIGINT"),
    }
}
