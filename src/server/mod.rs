//! Client connections (placeholder; being written).
