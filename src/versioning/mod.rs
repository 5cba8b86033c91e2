//! Versioning: DVV sets and LWW cells (placeholder; being written).
