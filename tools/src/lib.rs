//! Sibyl command-line tools (binaries live in `src/bin`).
