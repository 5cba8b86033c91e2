//! Sibyl's command-line tools. The binaries in `src/bin` are thin: argument parsing
//! (clap) and I/O; the logic lives here so it is unit-tested.
//!
//! # Layout
//! - [`cli`]: the shell of `sibyl-cli` — lexer, grammar, session, rendering, help.
//! - [`stress`]: the load generator of `sibyl-stress` — workload, per-connection drivers
//!   over the real protocol, HDR-histogram reports.
//! - [`nemesis`]: `sibyl-nemesis` — real nodes in network namespaces broken on purpose
//!   (partitions, kills, pauses, clock skew) under recorded client workloads, and the
//!   checker of what they acknowledged.
//! - [`load`]: the bulk loader of `sibyl-load` — CSV, long CSV and JSON lines (gzip or
//!   not) into a table through the token-aware client, with rejects, retries under write
//!   ids, and a checkpoint that `--resume` continues from.
//! - [`admin`]: `sibyl-admin`'s views of the topology — status and ring.
//! - [`consistency`]: how the tools spell consistency levels.
//! - [`flags`]: flags every tool checks alike (`--timeout`).
//! - [`credentials`]: `--user`, `--password-file`, `SIBYL_PASSWORD` and the no-echo prompt.
//! - [`text`]: how bytes are shown (quoted UTF-8 or `0x` hex) and read back.
//!
//! Library errors are typed (`thiserror`); the binaries use `anyhow`.

pub mod admin;
pub mod cli;
pub mod consistency;
pub mod credentials;
pub mod flags;
pub mod load;
pub mod nemesis;
pub mod stress;
pub mod text;
