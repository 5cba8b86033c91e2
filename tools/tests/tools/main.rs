//! Integration tests of the tools against a real `sibyl` node process (one node per test).
//! Build the node first: `cargo build -p sibyl` with the same `CARGO_TARGET_DIR`.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

#[path = "../../../tests/common/launcher.rs"]
mod launcher;

mod admin;
mod auth;
mod cli;
mod load;
mod metrics;
mod node;
mod stress;
