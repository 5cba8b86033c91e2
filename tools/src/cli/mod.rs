//! The shell behind `sibyl-cli` (like cqlsh / redis-cli).
//!
//! # Layout
//! - [`lexer`]: a line -> statements of tokens (quotes, `=`, `;`, comments).
//! - [`command`]: tokens -> [`command::Command`] (the grammar).
//! - [`shell`]: [`shell::Shell`], the session state and command execution.
//! - [`render`]: rows, siblings, tombstones and table options as text.
//! - [`help`]: the `help` text, the grammar's user documentation.
//!
//! The binary (`src/bin/sibyl-cli.rs`) only reads lines (rustyline, `-e`, or stdin) and
//! hands them to [`shell::Shell::run_line`].

pub mod command;
pub mod help;
pub mod lexer;
pub mod render;
pub mod shell;
