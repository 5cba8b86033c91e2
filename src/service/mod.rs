//! Request handling (placeholder; being written).
