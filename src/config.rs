//! Node configuration (placeholder; being written).
