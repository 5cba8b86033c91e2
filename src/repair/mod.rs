//! Anti-entropy: hash trees kept up to date as writes land, and the exchange that makes
//! two replicas of a token range identical by moving only what differs.
//!
//! # Layout
//! - [`space`]: points and buckets of the token space; ring ranges as point intervals.
//! - [`hash`]: the hash of one stored cell (its replicated state, blind to compaction).
//! - [`tree`]: [`TableTree`], one table's leaves, updated in O(1) per write and rebuilt in
//!   the background without stopping writes.
//! - [`registry`]: [`Trees`], the tracked tables, and how the replica's writes reach them.
//! - [`exchange`]: what a replica computes about one range: root, child hashes, keys.
//! - [`ledger`]: [`SyncLedger`], the exchanges this node completed, on either side.
//! - [`messages`]: the repair family's peer messages and their codec.
//! - [`peer`]: [`RepairHandler`], which answers them.
//! - [`session`]: [`Session`], one exchange of one range with one peer.
//! - [`scheduler`]: [`Repairer`], which plans jobs (range x peer), runs background rounds
//!   within a period and a bandwidth, and runs on-demand repairs.
//! - [`watermark`]: [`Watermarks`], when a replicated table's compaction may purge a
//!   tombstone (every replica synced after it arrived, and older than the hint TTL).

pub mod exchange;
pub mod hash;
pub mod ledger;
pub mod messages;
pub mod peer;
pub mod registry;
pub mod scheduler;
pub mod session;
pub mod space;
pub mod tree;
pub mod watermark;

pub use ledger::SyncLedger;
pub use messages::{RepairErrorCode, RepairRequest, RepairResponse};
pub use peer::RepairHandler;
pub use registry::{TreeUpdate, Trees};
pub use scheduler::{RepairOptions, RepairSummary, Repairer, Scope};
pub use session::{Session, SyncError, SyncStats, KEY_DEPTH};
pub use tree::{TableTree, Ticket, DEFAULT_LEAF_BITS};
pub use watermark::{TableWatermark, Watermarks};

#[cfg(test)]
mod tests;
