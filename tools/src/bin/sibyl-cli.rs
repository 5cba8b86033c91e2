//! `sibyl-cli`: the Sibyl shell (like cqlsh / redis-cli).
//!
//! Modes: `-e "cmd; cmd"` runs those statements; otherwise a script is read from standard
//! input when it is not a terminal (one command per line); otherwise an interactive
//! session with line editing and history in `~/.sibyl_history` (rustyline). In the first
//! two modes the exit status is 1 when any command failed. The grammar and execution live
//! in `sibyl_tools::cli`; type `help` for the commands.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use sibyl_protocol::{Client, ClientOptions};
use sibyl_tools::cli::shell::{describe_client_error, Shell};
use sibyl_tools::consistency::parse_consistency;

/// History file name under the home directory.
const HISTORY_FILE: &str = ".sibyl_history";

/// The Sibyl shell.
#[derive(Debug, Parser)]
#[command(name = "sibyl-cli", version)]
struct Args {
    /// Node addresses (host:port), comma-separated or repeated.
    #[arg(
        long,
        short = 'H',
        default_value = "127.0.0.1:7400",
        value_delimiter = ','
    )]
    host: Vec<String>,
    /// Run these statements (separated by ;) and exit.
    #[arg(long, short = 'e')]
    execute: Option<String>,
    /// Table to use from the start (as `use NAME`).
    #[arg(long, short = 't')]
    table: Option<String>,
    /// Session consistency (as the `consistency` command).
    #[arg(long)]
    consistency: Option<String>,
    /// Seconds to wait for each response.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    #[command(flatten)]
    credentials: sibyl_tools::credentials::CredentialArgs,
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main() -> Result<i32> {
    let args = Args::parse();
    let timeout = sibyl_tools::flags::timeout(args.timeout)?;
    let consistency = args
        .consistency
        .as_deref()
        .map(parse_consistency)
        .transpose()?;
    // Asked on the terminal (no echo) when neither a file nor SIBYL_PASSWORD gives it.
    let credentials = match args.credentials.resolve(true) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    // One worker: the client's connection tasks keep running while the shell waits for
    // the next line.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let options = ClientOptions {
        request_timeout: timeout,
        connect_timeout: timeout,
        pool_size: 1,
        client_name: concat!("sibyl-cli/", env!("CARGO_PKG_VERSION")).to_owned(),
        credentials,
        ..ClientOptions::default()
    };
    let client = match rt.block_on(Client::connect_with(&args.host, options)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", describe_client_error(&e));
            return Ok(1);
        }
    };
    let mut shell = Shell::new(client);
    shell.set_consistency(consistency);
    let mut failed = 0usize;
    if let Some(t) = &args.table {
        failed += run(
            &rt,
            &mut shell,
            &format!("use {}", sibyl_tools::text::quote(t)),
        )?
        .0;
    }
    let stdout = std::io::stdout();
    if let Some(statements) = &args.execute {
        failed += run(&rt, &mut shell, statements)?.0;
        return Ok(i32::from(failed > 0));
    }
    if !std::io::stdin().is_terminal() {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read standard input")?;
            let (f, quit) = run(&rt, &mut shell, &line)?;
            failed += f;
            if quit {
                break;
            }
        }
        stdout.lock().flush()?;
        return Ok(i32::from(failed > 0));
    }
    interactive(&rt, &mut shell)?;
    Ok(0)
}

/// Runs one line; returns (failed statements, quit reached).
fn run(rt: &tokio::runtime::Runtime, shell: &mut Shell, line: &str) -> Result<(usize, bool)> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let status = rt
        .block_on(shell.run_line(line, &mut out, &mut err))
        .context("cannot write output")?;
    Ok((status.failed, status.quit))
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(HISTORY_FILE))
}

fn interactive(rt: &tokio::runtime::Runtime, shell: &mut Shell) -> Result<()> {
    let mut editor = DefaultEditor::new().context("cannot open the terminal")?;
    let history = history_path();
    if let Some(h) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(h);
    }
    println!("Connected. Type help for the commands, quit to leave.");
    loop {
        match editor.readline(&shell.prompt()) {
            Ok(line) => {
                if line.trim().is_empty() {
                    continue;
                }
                // A line that carries a password stays out of the history file.
                if !line.to_ascii_lowercase().contains("password") {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if run(rt, shell, &line)?.1 {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read the terminal"),
        }
    }
    if let Some(h) = &history {
        if let Err(e) = editor.save_history(h) {
            eprintln!("warning: cannot save history to {}: {e}", h.display());
        }
    }
    Ok(())
}
