//! One exchange: this replica and one peer make one ring range of one table identical.
//!
//! 1. Compare the range's root hashes; equal means done (one small round trip, then
//!    `done`, which tells the peer the exchange completed).
//! 2. Descend where hashes differ: the children of the differing buckets, 8 bits deeper
//!    each round (depths 8, 16, then [`KEY_DEPTH`]), both sides computing the same
//!    hashes ([`super::exchange`]).
//! 3. At [`KEY_DEPTH`], list the keys of the differing buckets with their hashes on both
//!    sides; a key whose hash differs, or that one side lacks, is exchanged: pulled from
//!    the peer when it holds it, pushed to the peer when this replica holds it. Both sides
//!    apply by merge (`Replica::apply`), so siblings survive and nothing is overwritten
//!    blindly; a key that differs on both sides goes both ways and converges.
//!
//! Writes landing meanwhile can make a bucket differ or agree by the time it is compared;
//! the exchange then moves a little more or less than needed, and the next one catches
//! up. Nothing in an exchange can lose data: it only ever merges.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::exchange::{RangeView, ViewError};
use super::messages::{
    RepairErrorCode, RepairRequest, RepairResponse, CHILD_BITS, MAX_KEYS, MAX_PREFIXES,
};
use crate::net::{Family, NetError, PeerNetwork};
use crate::replica::{RawCell, ReplicaError, ReplicaExecution, ReplicaHost, TokenRange};
use crate::ring::NodeId;

/// The depth at which differing buckets are listed key by key.
pub const KEY_DEPTH: u32 = 24;
/// Buckets per `keys` request.
const KEYS_CHUNK: usize = 4096;
/// Bytes of cells per push.
const PUSH_BYTES: usize = 4 << 20;

/// What one exchange did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// The range's roots differed.
    pub differed: bool,
    /// Cells pulled from the peer and applied here.
    pub cells_received: u64,
    /// Cells pushed to the peer.
    pub cells_sent: u64,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Response bytes received.
    pub bytes_received: u64,
    /// Of the bytes both ways, those of tree hashes (`root`, `children`, `done` and their
    /// answers); the rest are key lists and cells.
    pub hash_bytes: u64,
}

impl SyncStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &SyncStats) {
        self.differed |= other.differed;
        self.cells_received += other.cells_received;
        self.cells_sent += other.cells_sent;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.hash_bytes += other.hash_bytes;
    }
}

/// Why an exchange did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The peer could not be reached or did not answer in time.
    #[error("peer unreachable: {0}")]
    Net(#[from] NetError),
    /// The peer refused.
    #[error("peer refused ({code:?}): {message}")]
    Refused {
        /// Its code.
        code: RepairErrorCode,
        /// Its message.
        message: String,
    },
    /// The peer's answer was undecodable or not the one asked for.
    #[error("bad answer from the peer: {0}")]
    BadAnswer(String),
    /// This replica's tree of the table is still building.
    #[error("the local hash tree is still building")]
    LocalNotReady,
    /// This replica has no tree of the table.
    #[error("no local hash tree of table {0:?}")]
    NoTree(String),
    /// This replica's storage failed.
    #[error("local storage: {0}")]
    Local(#[from] ReplicaError),
    /// A local task failed.
    #[error("local task failed: {0}")]
    Task(String),
}

impl From<ViewError> for SyncError {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::NotReady => SyncError::LocalNotReady,
            ViewError::Replica(e) => SyncError::Local(e),
        }
    }
}

/// An exchange between this replica (`host`) and one peer.
pub struct Session<H> {
    host: Arc<H>,
    net: Arc<dyn PeerNetwork>,
    execution: ReplicaExecution,
    peer: (SocketAddr, NodeId),
    timeout: Duration,
    stats: SyncStats,
}

impl<H> std::fmt::Debug for Session<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<H: ReplicaHost> Session<H> {
    /// An exchange with `peer` (address, node id), each call bounded by `timeout`.
    pub fn new(
        host: Arc<H>,
        net: Arc<dyn PeerNetwork>,
        execution: ReplicaExecution,
        peer: (SocketAddr, NodeId),
        timeout: Duration,
    ) -> Session<H> {
        Session {
            host,
            net,
            execution,
            peer,
            timeout,
            stats: SyncStats::default(),
        }
    }

    /// Makes `range` of `table` identical here and at the peer (see the module doc).
    pub async fn sync(mut self, table: &str, range: TokenRange) -> Result<SyncStats, SyncError> {
        let t = table.to_owned();
        let local_root = self
            .local(move |h| {
                let tree = tree(h, &t)?;
                Ok(RangeView::new(h.replica(), &t, &tree, range).root()?)
            })
            .await?;
        let remote_root = match self
            .call(RepairRequest::Root {
                table: table.to_owned(),
                range,
            })
            .await?
        {
            RepairResponse::RootHash { hash } => hash,
            other => return Err(unexpected(&other)),
        };
        if local_root != remote_root {
            self.stats.differed = true;
            let mut bits = 0u32;
            let mut frontier: Vec<u64> = vec![0];
            while bits < KEY_DEPTH && !frontier.is_empty() {
                frontier = self
                    .differing_children(table, range, bits, &frontier)
                    .await?;
                bits += CHILD_BITS;
            }
            if !frontier.is_empty() {
                self.exchange_keys(table, range, bits, &frontier).await?;
            }
        }
        // The peer counts the exchange as complete from the second it answered the root.
        match self
            .call(RepairRequest::Done {
                table: table.to_owned(),
                range,
            })
            .await?
        {
            RepairResponse::Ack => Ok(self.stats),
            other => Err(unexpected(&other)),
        }
    }

    /// The children (depth `bits + 8`) of `parents` whose hashes differ.
    async fn differing_children(
        &mut self,
        table: &str,
        range: TokenRange,
        bits: u32,
        parents: &[u64],
    ) -> Result<Vec<u64>, SyncError> {
        let mut out = Vec::new();
        for chunk in parents.chunks(MAX_PREFIXES) {
            let (t, c) = (table.to_owned(), chunk.to_vec());
            let local = self
                .local(move |h| {
                    let tree = tree(h, &t)?;
                    Ok(RangeView::new(h.replica(), &t, &tree, range).children(bits, &c)?)
                })
                .await?;
            let remote = match self
                .call(RepairRequest::Children {
                    table: table.to_owned(),
                    range,
                    bits: bits as u8,
                    prefixes: chunk.to_vec(),
                })
                .await?
            {
                RepairResponse::ChildHashes { hashes } => hashes,
                other => return Err(unexpected(&other)),
            };
            let child = |parent: u32, c: u8| -> Option<u64> {
                let p = *chunk.get(parent as usize)?;
                Some((p << CHILD_BITS) | u64::from(c))
            };
            let mut hashes: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for h in &local {
                if let Some(c) = child(h.parent, h.child) {
                    hashes.entry(c).or_default().0 = h.hash;
                }
            }
            for h in &remote {
                match child(h.parent, h.child) {
                    Some(c) => hashes.entry(c).or_default().1 = h.hash,
                    None => return Err(SyncError::BadAnswer("child of no parent".into())),
                }
            }
            out.extend(
                hashes
                    .into_iter()
                    .filter(|(_, (l, r))| l != r)
                    .map(|(c, _)| c),
            );
        }
        Ok(out)
    }

    /// Lists the keys of the differing buckets on both sides and moves what differs.
    async fn exchange_keys(
        &mut self,
        table: &str,
        range: TokenRange,
        bits: u32,
        buckets: &[u64],
    ) -> Result<(), SyncError> {
        for chunk in buckets.chunks(KEYS_CHUNK) {
            let (t, c) = (table.to_owned(), chunk.to_vec());
            let local = self
                .local(move |h| {
                    let tree = tree(h, &t)?;
                    Ok(RangeView::new(h.replica(), &t, &tree, range).keys(bits, &c)?)
                })
                .await?;
            let remote = match self
                .call(RepairRequest::Keys {
                    table: table.to_owned(),
                    range,
                    bits: bits as u8,
                    prefixes: chunk.to_vec(),
                })
                .await?
            {
                RepairResponse::KeyHashes { keys } => keys,
                other => return Err(unexpected(&other)),
            };
            let local_map: HashMap<&[u8], u64> =
                local.iter().map(|(k, h)| (k.as_slice(), *h)).collect();
            let remote_map: HashMap<&[u8], u64> =
                remote.iter().map(|(k, h)| (k.as_slice(), *h)).collect();
            let pull: Vec<Vec<u8>> = remote
                .iter()
                .filter(|(k, h)| local_map.get(k.as_slice()) != Some(h))
                .map(|(k, _)| k.clone())
                .collect();
            let push: Vec<Vec<u8>> = local
                .iter()
                .filter(|(k, h)| remote_map.get(k.as_slice()) != Some(h))
                .map(|(k, _)| k.clone())
                .collect();
            self.pull(table, pull).await?;
            self.push(table, push).await?;
        }
        Ok(())
    }

    async fn pull(&mut self, table: &str, keys: Vec<Vec<u8>>) -> Result<(), SyncError> {
        for chunk in keys.chunks(MAX_KEYS) {
            let cells = match self
                .call(RepairRequest::Pull {
                    table: table.to_owned(),
                    keys: chunk.to_vec(),
                })
                .await?
            {
                RepairResponse::Found { cells } => cells,
                other => return Err(unexpected(&other)),
            };
            if cells.iter().any(|c| c.table != table) {
                return Err(SyncError::BadAnswer("a cell of another table".into()));
            }
            let n = cells.len() as u64;
            self.local(move |h| Ok(h.replica().apply(&cells, |t| h.conflict_mode(t))?))
                .await?;
            self.stats.cells_received += n;
        }
        Ok(())
    }

    async fn push(&mut self, table: &str, keys: Vec<Vec<u8>>) -> Result<(), SyncError> {
        if keys.is_empty() {
            return Ok(());
        }
        let t = table.to_owned();
        let cells = self
            .local(move |h| {
                let mut cells = Vec::with_capacity(keys.len());
                for key in keys {
                    if let Some(value) = h.replica().read_raw(&t, &key)? {
                        cells.push(RawCell {
                            table: t.clone(),
                            key,
                            value,
                        });
                    }
                }
                Ok(cells)
            })
            .await?;
        let mut batch: Vec<RawCell> = Vec::new();
        let mut bytes = 0usize;
        for cell in cells {
            bytes += cell.encoded_len();
            batch.push(cell);
            if bytes >= PUSH_BYTES {
                self.push_batch(std::mem::take(&mut batch)).await?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.push_batch(batch).await?;
        }
        Ok(())
    }

    async fn push_batch(&mut self, cells: Vec<RawCell>) -> Result<(), SyncError> {
        let n = cells.len() as u64;
        match self.call(RepairRequest::Push { cells }).await? {
            RepairResponse::Applied { .. } => {
                self.stats.cells_sent += n;
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn call(&mut self, request: RepairRequest) -> Result<RepairResponse, SyncError> {
        let hashes = matches!(
            request,
            RepairRequest::Root { .. }
                | RepairRequest::Children { .. }
                | RepairRequest::Done { .. }
        );
        let body: Bytes = request.encode();
        let sent = body.len() as u64;
        self.stats.bytes_sent += sent;
        let deadline = Instant::now() + self.timeout;
        let answer = self
            .net
            .call_node(self.peer.0, self.peer.1, Family::Repair, body, deadline)
            .await?;
        self.stats.bytes_received += answer.len() as u64;
        if hashes {
            self.stats.hash_bytes += sent + answer.len() as u64;
        }
        match RepairResponse::decode(&answer) {
            Ok(RepairResponse::Error { code, message }) => {
                Err(SyncError::Refused { code, message })
            }
            Ok(r) => Ok(r),
            Err(e) => Err(SyncError::BadAnswer(e.to_string())),
        }
    }

    async fn local<T: Send + 'static>(
        &self,
        f: impl FnOnce(&H) -> Result<T, SyncError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let host = self.host.clone();
        self.execution
            .run(move || f(&host))
            .await
            .map_err(|e| SyncError::Task(e.to_string()))?
    }
}

fn tree<H: ReplicaHost + ?Sized>(
    host: &H,
    table: &str,
) -> Result<Arc<crate::repair::TableTree>, SyncError> {
    host.replica()
        .trees()
        .get(table)
        .ok_or_else(|| SyncError::NoTree(table.to_owned()))
}

fn unexpected(r: &RepairResponse) -> SyncError {
    SyncError::BadAnswer(format!("unexpected answer {:.120}", format!("{r:?}")))
}
