//! `sibyl-admin`: operations on a Sibyl cluster (like nodetool). Subcommands are a clap
//! enum; each one asks a node over the client protocol and prints a table.
//!
//! - `status`: every node with address, up/down, state, datacenter, rack, token count and
//!   owned share of the token space.
//! - `ring`: every token in ring order with its owner.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sibyl_protocol::{Client, ClientOptions};
use sibyl_tools::admin::status::{render_ring, render_status};
use sibyl_tools::cli::shell::describe_client_error;

/// Operations on a Sibyl cluster.
#[derive(Debug, Parser)]
#[command(name = "sibyl-admin", version)]
struct Args {
    /// Node to ask (host:port of its client port).
    #[arg(long, global = true, default_value = "127.0.0.1:7400")]
    host: String,
    /// Seconds to wait for the node.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Nodes with their liveness, state, placement and ownership.
    Status,
    /// Tokens in ring order with their owners.
    Ring,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args = Args::parse();
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let text = rt.block_on(async {
        let options = ClientOptions {
            request_timeout: timeout,
            connect_timeout: timeout,
            pool_size: 1,
            client_name: concat!("sibyl-admin/", env!("CARGO_PKG_VERSION")).to_owned(),
            ..ClientOptions::default()
        };
        let client = Client::connect_with(&[args.host.as_str()], options)
            .await
            .map_err(|e| anyhow::anyhow!(describe_client_error(&e)))?;
        let topology = client
            .topology()
            .await
            .map_err(|e| anyhow::anyhow!("topology: {}", describe_client_error(&e)))?;
        anyhow::Ok(match args.command {
            AdminCommand::Status => render_status(&topology),
            AdminCommand::Ring => render_ring(&topology),
        })
    })?;
    println!("{text}");
    Ok(())
}
