//! The repair family's receiving side: [`RepairHandler`] answers another replica's
//! [`RepairRequest`]s from this node's replica and trees. Registered for
//! [`Family::Repair`] by the node (or a simulation); engine work runs where
//! [`ReplicaExecution`] says.

use std::sync::Arc;

use bytes::Bytes;

use super::exchange::{RangeView, ViewError};
use super::ledger::SyncLedger;
use super::messages::{RepairErrorCode, RepairRequest, RepairResponse, CHILD_BITS};
use crate::net::{BoxFuture, Family, HandlerError, PeerHandler, PeerInfo};
use crate::replica::{RawCell, ReplicaExecution, ReplicaHost};
use crate::ring::NodeId;

/// Answers [`Family::Repair`] requests from `host`'s replica.
pub struct RepairHandler<H> {
    host: Arc<H>,
    execution: ReplicaExecution,
    ledger: Arc<SyncLedger>,
}

impl<H> std::fmt::Debug for RepairHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepairHandler")
            .field("execution", &self.execution)
            .finish_non_exhaustive()
    }
}

impl<H: ReplicaHost> RepairHandler<H> {
    /// A handler over `host`, recording the exchanges peers complete with it in
    /// `ledger`.
    pub fn new(
        host: Arc<H>,
        execution: ReplicaExecution,
        ledger: Arc<SyncLedger>,
    ) -> RepairHandler<H> {
        RepairHandler {
            host,
            execution,
            ledger,
        }
    }

    /// The family this handler serves.
    pub const FAMILY: Family = Family::Repair;
}

impl<H: ReplicaHost> PeerHandler for RepairHandler<H> {
    fn request(
        &self,
        from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let request = match RepairRequest::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(from = %from.addr, error = %e, "undecodable repair request");
                return Box::pin(async move { Err(HandlerError::new(e.to_string())) });
            }
        };
        let host = self.host.clone();
        let ledger = self.ledger.clone();
        match self.execution {
            ReplicaExecution::Inline => {
                let answer = answer(&*host, request, Some((&ledger, from.node))).encode();
                Box::pin(async move { Ok(answer) })
            }
            ReplicaExecution::Blocking => Box::pin(async move {
                tokio::task::spawn_blocking(move || {
                    answer(&*host, request, Some((&ledger, from.node))).encode()
                })
                .await
                .map_err(|e| HandlerError::new(format!("repair task failed: {e}")))
            }),
        }
    }

    fn message(&self, from: PeerInfo, _body: Bytes) -> BoxFuture<'static, ()> {
        tracing::warn!(from = %from.addr, "repair family takes requests only; one-way message dropped");
        Box::pin(async {})
    }
}

fn refuse(code: RepairErrorCode, message: impl Into<String>) -> RepairResponse {
    RepairResponse::Error {
        code,
        message: message.into(),
    }
}

fn view_error(e: ViewError) -> RepairResponse {
    match e {
        ViewError::NotReady => refuse(RepairErrorCode::NotReady, e.to_string()),
        ViewError::Replica(e) => {
            tracing::error!(error = %e, "repair request failed in storage");
            refuse(RepairErrorCode::Storage, e.to_string())
        }
    }
}

/// The answer of `host` to `request` (blocking: engine calls); `ledger` records, for
/// the peer `from`, the exchanges it opens (`root`) and completes (`done`).
pub fn answer<H: ReplicaHost + ?Sized>(
    host: &H,
    request: RepairRequest,
    ledger: Option<(&SyncLedger, NodeId)>,
) -> RepairResponse {
    let replica = host.replica();
    let tree_of = |table: &str| {
        replica
            .trees()
            .get(table)
            .filter(|_| host.conflict_mode(table).is_some())
            .ok_or_else(|| {
                refuse(
                    RepairErrorCode::UnknownTable,
                    format!("no hash tree of table {table:?} here"),
                )
            })
    };
    match request {
        RepairRequest::Root { table, range } => {
            let tree = match tree_of(&table) {
                Ok(t) => t,
                Err(r) => return r,
            };
            // Everything held before this second is compared by the exchange.
            let began = replica.clock().now_secs();
            match RangeView::new(replica, &table, &tree, range).root() {
                Ok(hash) => {
                    if let Some((l, from)) = ledger {
                        l.opened((table, range.start, range.end, from), began);
                    }
                    RepairResponse::RootHash { hash }
                }
                Err(e) => view_error(e),
            }
        }
        RepairRequest::Done { table, range } => {
            if let Some((l, from)) = ledger {
                l.closed(&(table, range.start, range.end, from));
            }
            RepairResponse::Ack
        }
        RepairRequest::Children {
            table,
            range,
            bits,
            prefixes,
        } => {
            let tree = match tree_of(&table) {
                Ok(t) => t,
                Err(r) => return r,
            };
            if u32::from(bits) + CHILD_BITS > 64 {
                return refuse(RepairErrorCode::Invalid, "children deeper than 64 bits");
            }
            match RangeView::new(replica, &table, &tree, range).children(u32::from(bits), &prefixes)
            {
                Ok(hashes) => RepairResponse::ChildHashes { hashes },
                Err(e) => view_error(e),
            }
        }
        RepairRequest::Keys {
            table,
            range,
            bits,
            prefixes,
        } => {
            let tree = match tree_of(&table) {
                Ok(t) => t,
                Err(r) => return r,
            };
            match RangeView::new(replica, &table, &tree, range).keys(u32::from(bits), &prefixes) {
                Ok(keys) => RepairResponse::KeyHashes { keys },
                Err(e) => view_error(e),
            }
        }
        RepairRequest::Pull { table, keys } => {
            if host.conflict_mode(&table).is_none() {
                return refuse(
                    RepairErrorCode::UnknownTable,
                    format!("unknown table {table:?}"),
                );
            }
            let mut cells = Vec::new();
            for key in keys {
                match replica.read_raw(&table, &key) {
                    Ok(Some(value)) => cells.push(RawCell {
                        table: table.clone(),
                        key,
                        value,
                    }),
                    Ok(None) => {}
                    Err(e) => return view_error(ViewError::Replica(e)),
                }
            }
            RepairResponse::Found { cells }
        }
        RepairRequest::Push { cells } => match replica.apply(&cells, |t| host.conflict_mode(t)) {
            Ok(()) => RepairResponse::Applied {
                count: u32::try_from(cells.len()).unwrap_or(u32::MAX),
            },
            Err(crate::replica::ReplicaError::InvalidCell(
                e @ crate::replica::InvalidCell::UnknownTable { .. },
            )) => refuse(RepairErrorCode::UnknownTable, e.to_string()),
            Err(crate::replica::ReplicaError::InvalidCell(e)) => {
                refuse(RepairErrorCode::Invalid, e.to_string())
            }
            Err(e) => view_error(ViewError::Replica(e)),
        },
    }
}
