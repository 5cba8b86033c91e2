//! The stream family's sending side: [`StreamHandler`] answers a page of a token range
//! from this node's replica (a scan from the page's start, stopped at the byte budget),
//! tells a joining, leaving or moving node whether this node's view shows its ring
//! change, and answers the size histograms a rebalance plans with ([`super::sizes`]).
//! Registered for [`Family::Stream`] by the node; engine work runs where
//! [`ReplicaExecution`] says.

use std::sync::Arc;

use bytes::Bytes;

use super::messages::{StreamErrorCode, StreamRequest, StreamResponse, MAX_PAGE_BYTES};
use crate::cluster::ClusterHandle;
use crate::net::{BoxFuture, Family, HandlerError, PeerHandler, PeerInfo};
use crate::replica::{RangeScan, RawCell, Replica, ReplicaExecution, ReplicaHost, TokenRange};
use sibyl_protocol::ConflictMode;

/// Answers [`Family::Stream`] requests from `host`'s replica.
pub struct StreamHandler<H> {
    host: Arc<H>,
    cluster: Arc<ClusterHandle>,
    execution: ReplicaExecution,
}

impl<H> std::fmt::Debug for StreamHandler<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandler")
            .field("execution", &self.execution)
            .finish_non_exhaustive()
    }
}

impl<H: ReplicaHost> StreamHandler<H> {
    /// A handler over `host`, answering `sees` from `cluster`'s view.
    pub fn new(
        host: Arc<H>,
        cluster: Arc<ClusterHandle>,
        execution: ReplicaExecution,
    ) -> StreamHandler<H> {
        StreamHandler {
            host,
            cluster,
            execution,
        }
    }

    /// The family this handler serves.
    pub const FAMILY: Family = Family::Stream;
}

impl<H: ReplicaHost> PeerHandler for StreamHandler<H> {
    fn request(
        &self,
        from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let request = match StreamRequest::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(from = %from.addr, error = %e, "undecodable stream request");
                return Box::pin(async move { Err(HandlerError::new(e.to_string())) });
            }
        };
        if let StreamRequest::Sees { node } = request {
            let changing = self
                .cluster
                .view()
                .is_some_and(|v| v.node(node).is_some_and(|n| n.in_ring_change()));
            let answer = StreamResponse::Seen { changing }.encode();
            return Box::pin(async move { Ok(answer) });
        }
        let host = self.host.clone();
        match self.execution {
            ReplicaExecution::Inline => {
                let answer = answer(&*host, request).encode();
                Box::pin(async move { Ok(answer) })
            }
            ReplicaExecution::Blocking => Box::pin(async move {
                tokio::task::spawn_blocking(move || answer(&*host, request).encode())
                    .await
                    .map_err(|e| HandlerError::new(format!("stream task failed: {e}")))
            }),
        }
    }

    fn message(&self, from: PeerInfo, _body: Bytes) -> BoxFuture<'static, ()> {
        tracing::warn!(from = %from.addr, "stream family takes requests only; one-way message dropped");
        Box::pin(async {})
    }
}

/// The answer of `host` to `request` (blocking: an engine scan).
pub fn answer<H: ReplicaHost + ?Sized>(host: &H, request: StreamRequest) -> StreamResponse {
    if let StreamRequest::RangeSize { table, range } = &request {
        return match super::sizes::range_bytes(host.replica(), table, *range) {
            Ok(bytes) => StreamResponse::RangeSized { bytes },
            Err(e) => StreamResponse::Error {
                code: StreamErrorCode::Storage,
                message: e.to_string(),
            },
        };
    }
    if let StreamRequest::Sizes { buckets, tables } = &request {
        return match super::sizes::local_sizes(host.replica(), tables, *buckets) {
            Ok(tables) => StreamResponse::Sized { tables },
            Err(e) => StreamResponse::Error {
                code: StreamErrorCode::Storage,
                message: e.to_string(),
            },
        };
    }
    let StreamRequest::Page {
        table,
        range,
        after,
        max_bytes,
    } = request
    else {
        return StreamResponse::Error {
            code: StreamErrorCode::Invalid,
            message: "not a page request".into(),
        };
    };
    let Some(mode) = host.conflict_mode(&table) else {
        return StreamResponse::Error {
            code: StreamErrorCode::UnknownTable,
            message: format!("no table {table:?} here"),
        };
    };
    let replica = host.replica();
    if !range.start.same_space(&replica.partitioner().min_token()) {
        return StreamResponse::Error {
            code: StreamErrorCode::Invalid,
            message: "range of another partitioner".into(),
        };
    }
    let budget = max_bytes.clamp(1, MAX_PAGE_BYTES) as usize;
    match read_page(replica, mode, &table, range, after.as_deref(), budget) {
        Ok((more, cells)) => StreamResponse::Entries { more, cells },
        Err(e) => {
            tracing::error!(error = %e, table, "stream page failed in storage");
            StreamResponse::Error {
                code: StreamErrorCode::Storage,
                message: e.to_string(),
            }
        }
    }
}

/// The next page of `range` of `table` from `replica`, in ring order after `after`: the
/// stored entries until their keys and values reach `budget` bytes, and whether the range
/// goes on. A stored value the receiver's apply would refuse (undecodable on this disk)
/// would refuse the whole page there: it stays behind, logged. Only the cells sent count
/// toward the budget, so a page that goes on ends with a cell sent and the next one starts
/// after it. Blocking (an engine scan).
pub fn read_page(
    replica: &Replica,
    mode: ConflictMode,
    table: &str,
    range: TokenRange,
    after: Option<&[u8]>,
    budget: usize,
) -> Result<(bool, Vec<RawCell>), sibyl_storage::Error> {
    let mut scan = RangeScan::after(replica.engine(), table, replica.partitioner(), range, after)?;
    let mut cells = Vec::new();
    let mut bytes = 0usize;
    while let Some((key, value)) = scan.next_entry()? {
        if bytes >= budget {
            return Ok((true, cells));
        }
        let cell = RawCell {
            table: table.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match replica.check_cell(cells.len(), &cell, mode) {
            Ok(()) => {
                bytes += cell.key.len() + cell.value.len();
                cells.push(cell);
            }
            Err(e) => tracing::error!(error = %e, table, "stream skips an invalid stored cell"),
        }
    }
    Ok((false, cells))
}
