//! The running node (placeholder; being written).
