//! The manifest (placeholder; being written).
