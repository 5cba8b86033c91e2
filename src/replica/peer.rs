//! The replica family's receiving side: [`ReplicaHandler`] answers other nodes'
//! [`ReplicaRequest`]s from this node's [`Replica`], registered on the peer network for
//! [`Family::Replica`] by whoever owns the replica and the schema (the node, or a
//! simulation).
//!
//! Engine calls may wait for disk (an fsync under `batch` sync, a memtable stall), so a
//! live node runs them on the blocking pool ([`ReplicaExecution::Blocking`]); a
//! deterministic simulation runs them inline on its single thread
//! ([`ReplicaExecution::Inline`]), so that no real thread races its virtual clock.
//!
//! A forwarded client request ([`ReplicaRequest::Coordinate`]) goes to the
//! [`ForwardTarget`] set with [`ReplicaHandler::set_forward_target`] (the node's
//! coordinator); until one is set it is refused as `Overloaded`-style unknown work.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use sibyl_protocol::ConflictMode;

use super::messages::{ReplicaErrorCode, ReplicaRequest, ReplicaResponse};
use super::{InvalidCell, Replica, ReplicaError};
use crate::net::{BoxFuture, Family, HandlerError, PeerHandler, PeerInfo};

/// What the handler needs of its owner: the replica, and each table's conflict mode from
/// the schema (`None` for a table this node does not know).
pub trait ReplicaHost: Send + Sync + 'static {
    /// The local replica.
    fn replica(&self) -> &Replica;
    /// The conflict mode of `table`, `None` when the table is unknown here.
    fn conflict_mode(&self, table: &str) -> Option<ConflictMode>;
    /// Whether answering `request` may wait for disk (an fsync before acknowledging, a
    /// large scan), so that a live node runs it on the blocking pool; requests that are
    /// memory work (a merge into the memtable with periodic sync, a point read) run on
    /// the calling task, as the client path does on one node. Default: every request.
    fn may_block(&self, request: &ReplicaRequest) -> bool {
        let _ = request;
        true
    }
}

/// What answers forwarded client requests: the node's coordinator.
pub trait ForwardTarget: Send + Sync + 'static {
    /// Coordinates a client request another node forwarded here, never forwarding it
    /// again; the answer is the encoded client response.
    fn coordinate(self: Arc<Self>, opcode: u8, body: Bytes) -> BoxFuture<'static, ReplicaResponse>;
}

/// Where the handler runs engine calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaExecution {
    /// On the tokio blocking pool (a live node).
    Blocking,
    /// On the calling task (a single-threaded simulation).
    Inline,
}

impl ReplicaExecution {
    /// Runs `f` where this mode says: on the blocking pool, or right here.
    pub async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        match self {
            ReplicaExecution::Inline => Ok(f()),
            ReplicaExecution::Blocking => tokio::task::spawn_blocking(f).await,
        }
    }
}

/// Answers [`Family::Replica`] requests from `host`'s replica.
pub struct ReplicaHandler<H> {
    host: Arc<H>,
    execution: ReplicaExecution,
    /// Weak: the coordinator holds the network, which holds this handler; a strong
    /// reference would keep the whole node (its engine too) alive after it stopped.
    forward: OnceLock<std::sync::Weak<dyn ForwardTarget>>,
}

impl<H> std::fmt::Debug for ReplicaHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaHandler")
            .field("execution", &self.execution)
            .finish_non_exhaustive()
    }
}

impl<H: ReplicaHost> ReplicaHandler<H> {
    /// A handler over `host`.
    pub fn new(host: Arc<H>, execution: ReplicaExecution) -> ReplicaHandler<H> {
        ReplicaHandler {
            host,
            execution,
            forward: OnceLock::new(),
        }
    }

    /// Sets what coordinates forwarded client requests (once; later calls are ignored).
    /// The handler keeps a weak reference: the node owns its coordinator.
    pub fn set_forward_target(&self, target: Arc<dyn ForwardTarget>) {
        let _ = self.forward.set(Arc::downgrade(&target));
    }

    /// The family this handler serves.
    pub const FAMILY: Family = Family::Replica;
}

impl<H: ReplicaHost> PeerHandler for ReplicaHandler<H> {
    fn request(
        &self,
        from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let request = match ReplicaRequest::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(from = %from.addr, error = %e, "undecodable replica request");
                return Box::pin(async move { Err(HandlerError::new(e.to_string())) });
            }
        };
        if let ReplicaRequest::Coordinate { opcode, body } = request {
            return match self.forward.get().and_then(std::sync::Weak::upgrade) {
                Some(target) => {
                    let answer = target.clone().coordinate(opcode, body);
                    Box::pin(async move { Ok(answer.await.encode()) })
                }
                None => Box::pin(async move {
                    Err(HandlerError::new(
                        "this node does not coordinate forwarded requests yet",
                    ))
                }),
            };
        }
        let host = self.host.clone();
        let execution = match self.execution {
            ReplicaExecution::Blocking if !host.may_block(&request) => ReplicaExecution::Inline,
            e => e,
        };
        match execution {
            ReplicaExecution::Inline => {
                let answer = answer(&*host, request).encode();
                Box::pin(async move { Ok(answer) })
            }
            ReplicaExecution::Blocking => Box::pin(async move {
                tokio::task::spawn_blocking(move || answer(&*host, request).encode())
                    .await
                    .map_err(|e| HandlerError::new(format!("replica task failed: {e}")))
            }),
        }
    }

    fn message(&self, from: PeerInfo, _body: Bytes) -> BoxFuture<'static, ()> {
        tracing::warn!(from = %from.addr, "replica family takes requests only; one-way message dropped");
        Box::pin(async {})
    }
}

/// The answer of `host`'s replica to `request` (blocking: engine calls).
pub fn answer<H: ReplicaHost + ?Sized>(host: &H, request: ReplicaRequest) -> ReplicaResponse {
    let replica = host.replica();
    let result = match request {
        ReplicaRequest::Apply { cells } => {
            replica
                .apply(&cells, |t| host.conflict_mode(t))
                .map(|()| ReplicaResponse::Applied {
                    count: u32::try_from(cells.len()).unwrap_or(u32::MAX),
                })
        }
        ReplicaRequest::Read { table, keys } => {
            if host.conflict_mode(&table).is_none() {
                return unknown_table(&table);
            }
            let mut cells = Vec::new();
            let mut result = Ok(());
            for key in keys {
                match replica.read_raw(&table, &key) {
                    Ok(Some(value)) => cells.push(super::RawCell {
                        table: table.clone(),
                        key,
                        value,
                    }),
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            result.map(|()| ReplicaResponse::Found { cells })
        }
        ReplicaRequest::Digest { table, keys } => {
            let Some(mode) = host.conflict_mode(&table) else {
                return unknown_table(&table);
            };
            keys.iter()
                .map(|k| replica.digest(&table, mode, k))
                .collect::<Result<Vec<_>, _>>()
                .map(|digests| ReplicaResponse::Digests { digests })
        }
        ReplicaRequest::ReadRow(slice) => {
            if host.conflict_mode(&slice.table).is_none() {
                return unknown_table(&slice.table);
            }
            replica.read_row(&slice).map(ReplicaResponse::Row)
        }
        ReplicaRequest::DigestRow(slice) => {
            let Some(mode) = host.conflict_mode(&slice.table) else {
                return unknown_table(&slice.table);
            };
            let prefix = super::keys::RowPrefix::new(replica.partitioner(), &slice.partition_key);
            let now = replica.clock().now_secs();
            replica
                .read_row(&slice)
                .map(|cells| ReplicaResponse::RowDigest {
                    digest: super::row_read::row_digest(mode, &prefix, &cells, now),
                })
        }
        ReplicaRequest::Coordinate { .. } => {
            return ReplicaResponse::Error {
                code: ReplicaErrorCode::Storage,
                message: "a forwarded request is answered by the coordinator".into(),
            }
        }
    };
    result.unwrap_or_else(refusal)
}

fn unknown_table(table: &str) -> ReplicaResponse {
    ReplicaResponse::Error {
        code: ReplicaErrorCode::UnknownTable,
        message: format!("unknown table {table:?}"),
    }
}

fn refusal(e: ReplicaError) -> ReplicaResponse {
    let code = match &e {
        ReplicaError::InvalidCell(InvalidCell::UnknownTable { .. }) => {
            ReplicaErrorCode::UnknownTable
        }
        ReplicaError::InvalidCell(_) | ReplicaError::Versioning(_) => ReplicaErrorCode::InvalidCell,
        ReplicaError::Storage(sibyl_storage::Error::UnknownTable { .. }) => {
            ReplicaErrorCode::UnknownTable
        }
        _ => ReplicaErrorCode::Storage,
    };
    if code == ReplicaErrorCode::Storage {
        tracing::error!(error = %e, "replica request failed in storage");
    }
    ReplicaResponse::Error {
        code,
        message: e.to_string(),
    }
}
