//! Immutable sorted tables (placeholder; being written).
