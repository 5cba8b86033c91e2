//! The engine (placeholder; being written).
