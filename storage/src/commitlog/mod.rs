//! The commit log (placeholder; being written).
