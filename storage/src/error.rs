//! Typed errors of the storage engine.

use std::path::PathBuf;

/// Result alias for the storage crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the engine reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error, with the file it concerned.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checksum did not match: the bytes on disk are not what was written.
    #[error("checksum mismatch in {path} at offset {offset}: expected {expected:#010x}, got {got:#010x}")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// Byte offset of the record or block.
        offset: u64,
        /// The checksum stored on disk.
        expected: u32,
        /// The checksum computed over the bytes read.
        got: u32,
    },
    /// A structure on disk is malformed (bad magic, impossible length, bad varint...).
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The file.
        path: PathBuf,
        /// Byte offset where the problem was found.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file was written by a format version this build does not read.
    #[error("{path}: unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// An fsync (or a write that was not a disk-full one) failed; the engine accepts no
    /// more writes until it is reopened. `reason` is the first failure, the one that
    /// poisoned it.
    #[error("storage engine poisoned (no writes until restart); first failure: {reason}")]
    Poisoned {
        /// The failure that poisoned the engine.
        reason: String,
    },
    /// The file system has no room for a write (`ENOSPC` / `EDQUOT`), or its free space is
    /// below the engine's reserve. Nothing was applied and nothing is poisoned: the same
    /// operation can succeed once space is freed.
    #[error(
        "disk full at {path}: {needed} bytes needed, {free} free, {reserve} reserved; \
         not applied"
    )]
    DiskFull {
        /// The file (or directory) the write was for.
        path: PathBuf,
        /// Bytes the operation needed (an estimate for flushes and compactions).
        needed: u64,
        /// Bytes free on the file system when it failed.
        free: u64,
        /// The configured reserve (0 when the disk was really full).
        reserve: u64,
    },
    /// No table of that name exists.
    #[error("unknown table {name:?}")]
    UnknownTable {
        /// The table asked for.
        name: String,
    },
    /// A table of that name already exists.
    #[error("table {name:?} already exists")]
    TableExists {
        /// The table name.
        name: String,
    },
    /// The caller passed something the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another process")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The engine has been closed.
    #[error("engine is closed")]
    Closed,
}

impl Error {
    /// Wraps an I/O error with the path it concerned.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// True for [`Error::DiskFull`]: the operation changed nothing and may be retried once
    /// space is freed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::DiskFull { .. })
    }

    /// Builds a [`Error::Corruption`].
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
