//! The hints family's receiving side: [`HintsHandler`] keeps the hints other
//! coordinators send ([`HintsRequest::StoreHint`]) in this node's [`HintStore`],
//! registered on the peer network for [`Family::Hints`] by whoever owns the store.
//!
//! Storing may wait for disk (an fsync under `batch` sync), so a live node runs it on the
//! blocking pool ([`ReplicaExecution::Blocking`]); a deterministic simulation runs it
//! inline ([`ReplicaExecution::Inline`]).

use std::sync::Arc;

use bytes::Bytes;

use super::messages::{HintsErrorCode, HintsRequest, HintsResponse};
use super::{HintError, HintStore, Stored};
use crate::net::{BoxFuture, Family, HandlerError, PeerHandler, PeerInfo};
use crate::replica::ReplicaExecution;

/// Answers [`Family::Hints`] requests from a [`HintStore`].
#[derive(Debug)]
pub struct HintsHandler {
    store: Arc<HintStore>,
    execution: ReplicaExecution,
}

impl HintsHandler {
    /// A handler storing into `store`.
    pub fn new(store: Arc<HintStore>, execution: ReplicaExecution) -> HintsHandler {
        HintsHandler { store, execution }
    }

    /// The family this handler serves.
    pub const FAMILY: Family = Family::Hints;
}

/// The answer of `store` to `request` (blocking: engine calls).
pub fn answer(store: &HintStore, request: HintsRequest) -> HintsResponse {
    match request {
        HintsRequest::StoreHint { owner, cells } => match store.store(owner, &cells) {
            Ok(Stored::Kept(_)) => HintsResponse::Stored,
            Ok(Stored::Dropped(reason)) => HintsResponse::Dropped { reason },
            Err(e) => {
                let code = match e {
                    HintError::TooLarge { .. } => HintsErrorCode::TooLarge,
                    _ => {
                        tracing::error!(%owner, error = %e, "storing a hint failed");
                        HintsErrorCode::Storage
                    }
                };
                HintsResponse::Error {
                    code,
                    message: e.to_string(),
                }
            }
        },
    }
}

impl PeerHandler for HintsHandler {
    fn request(
        &self,
        from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let request = match HintsRequest::decode(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(from = %from.addr, error = %e, "undecodable hints request");
                return Box::pin(async move { Err(HandlerError::new(e.to_string())) });
            }
        };
        let store = self.store.clone();
        match self.execution {
            ReplicaExecution::Inline => {
                let answer = answer(&store, request).encode();
                Box::pin(async move { Ok(answer) })
            }
            ReplicaExecution::Blocking => Box::pin(async move {
                tokio::task::spawn_blocking(move || answer(&store, request).encode())
                    .await
                    .map_err(|e| HandlerError::new(format!("hints task failed: {e}")))
            }),
        }
    }

    fn message(&self, from: PeerInfo, _body: Bytes) -> BoxFuture<'static, ()> {
        tracing::warn!(from = %from.addr, "hints family takes requests only; one-way message dropped");
        Box::pin(async {})
    }
}
