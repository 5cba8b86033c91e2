//! Coordinating a GET across a key's replicas.
//!
//! 1. Only home replicas are read (a stand-in holds hints, not readable data): fewer
//!    alive than R is `UNAVAILABLE`, whatever the mode.
//! 2. Full data is asked of one replica (this node's own when it is one), digests of
//!    R−1 others: the engine keys of the named columns (the row's tombstone key first)
//!    or the row slice, with `read`/`digest` or `read_row`/`digest_row`.
//! 3. A replica that fails is replaced by the next alive one; a replica slower than the
//!    99th percentile of its recent latency makes the read ask one more replica for
//!    data (speculative retry, once per read).
//! 4. When every digest matches the data, the data is the answer. Otherwise full data is
//!    read from every replica that answered with a digest, the answers are reconciled
//!    ([`super::reconcile`]) and each replica found stale is sent the reconciled cells it
//!    lacks (read repair): in the background, or before answering when the request's
//!    consistency asks for blocking read repair. `response-meta.read_repair` says a
//!    repair was sent.
//! 5. Slices: each replica returns up to `limit` stored cells (deleted ones included);
//!    the page ends where the first replica stopped, so a page may hold fewer than
//!    `limit` live cells and still carry a paging token.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use sibyl_protocol::{
    Cell, ConflictMode, Consistency, ReadRepair, Response, ResponseMeta, Selector, ServerError,
};
use sibyl_storage::MergePolicy;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::placement::{required, unavailable, KeyPlacement, Target};
use super::reconcile::{self, ReplicaAnswer};
use super::{bump, CallError, Coordinator};
use crate::replica::keys::RowPrefix;
use crate::replica::read::{cell_digest, CellDigest};
use crate::replica::row_read::{row_digest, RowSlice, MAX_ROW_CELLS};
use crate::replica::{RawCell, ReplicaRequest, ReplicaResponse};
use crate::service::read::{
    cell_bytes, cell_from_stored, check_column, check_key, columns_too_large, encode_paging_token,
    fits_page, page_limit, row_too_large, slice_start, MAX_PAGE_SIZE, MAX_RESPONSE_BYTES,
};
use crate::service::versioning_error;
use crate::versioning::{CausalMerge, LwwMerge, RowTombstone};

/// What the read asks and how its answers compare.
#[derive(Debug, Clone)]
enum Shape {
    /// Named columns: the engine keys asked for (the row's tombstone key first).
    Columns {
        names: Vec<Bytes>,
        keys: Vec<Vec<u8>>,
    },
    /// The whole row in one answer.
    All,
    /// A slice page of at most `limit` cells.
    Slice { limit: u32 },
}

/// One read's requests.
struct ReadPlan {
    table: String,
    key: Bytes,
    mode: ConflictMode,
    prefix: RowPrefix,
    shape: Shape,
    data: ReplicaRequest,
    digest: ReplicaRequest,
}

/// The digest of an answer, in the form a digest request returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Digest {
    Keys(Vec<Option<CellDigest>>),
    Row(CellDigest),
}

/// One replica's reply.
#[derive(Debug)]
enum Reply {
    Data {
        answer: ReplicaAnswer,
        digest: Digest,
    },
    Digest(Digest),
}

impl Reply {
    fn digest(&self) -> &Digest {
        match self {
            Reply::Data { digest, .. } | Reply::Digest(digest) => digest,
        }
    }
}

impl ReadPlan {
    fn new(
        partitioner: crate::ring::Partitioner,
        table: &str,
        mode: ConflictMode,
        key: &Bytes,
        selector: &Selector,
    ) -> Result<ReadPlan, ServerError> {
        check_key(key)?;
        let prefix = RowPrefix::new(partitioner, key);
        let slice = |lower: Bound<Vec<u8>>, to: Option<Vec<u8>>, limit: u32| RowSlice {
            table: table.to_owned(),
            partition_key: key.to_vec(),
            lower,
            to,
            limit,
        };
        let (shape, data, digest) = match selector {
            Selector::Columns(names) => {
                for n in names {
                    check_column(n)?;
                }
                let mut names = names.clone();
                names.sort_unstable();
                names.dedup();
                let mut keys = Vec::with_capacity(names.len() + 1);
                keys.push(prefix.as_bytes().to_vec());
                keys.extend(names.iter().map(|n| prefix.cell_key(n)));
                let data = ReplicaRequest::Read {
                    table: table.to_owned(),
                    keys: keys.clone(),
                };
                let digest = ReplicaRequest::Digest {
                    table: table.to_owned(),
                    keys: keys.clone(),
                };
                (Shape::Columns { names, keys }, data, digest)
            }
            Selector::All => {
                let s = slice(Bound::Unbounded, None, MAX_PAGE_SIZE.min(MAX_ROW_CELLS));
                (
                    Shape::All,
                    ReplicaRequest::ReadRow(s.clone()),
                    ReplicaRequest::DigestRow(s),
                )
            }
            Selector::Slice {
                from,
                to,
                limit,
                paging,
            } => {
                let lower = slice_start(table, key, from.as_deref(), paging.as_deref())?
                    .map(<[u8]>::to_vec);
                let limit = page_limit(*limit).min(MAX_ROW_CELLS);
                let s = slice(lower, to.as_ref().map(|t| t.to_vec()), limit);
                (
                    Shape::Slice { limit },
                    ReplicaRequest::ReadRow(s.clone()),
                    ReplicaRequest::DigestRow(s),
                )
            }
        };
        Ok(ReadPlan {
            table: table.to_owned(),
            key: key.clone(),
            mode,
            prefix,
            shape,
            data,
            digest,
        })
    }

    /// A replica's response as a reply, digested at `now_secs`.
    fn reply(&self, response: ReplicaResponse, now_secs: u64) -> Result<Reply, CallError> {
        match (response, &self.shape) {
            (ReplicaResponse::Found { cells }, Shape::Columns { keys, .. }) => {
                let answer = ReplicaAnswer::of_cells(cells);
                let digest = Digest::Keys(
                    keys.iter()
                        .map(|k| {
                            answer
                                .entries
                                .get(k)
                                .map(|v| cell_digest(self.mode, k, v, now_secs))
                        })
                        .collect(),
                );
                Ok(Reply::Data { answer, digest })
            }
            (ReplicaResponse::Digests { digests }, Shape::Columns { keys, .. })
                if digests.len() == keys.len() =>
            {
                Ok(Reply::Digest(Digest::Keys(digests)))
            }
            (ReplicaResponse::Row(row), Shape::All | Shape::Slice { .. }) => {
                let digest = Digest::Row(row_digest(self.mode, &self.prefix, &row, now_secs));
                Ok(Reply::Data {
                    answer: ReplicaAnswer::of_row(&self.prefix, row),
                    digest,
                })
            }
            (ReplicaResponse::RowDigest { digest }, Shape::All | Shape::Slice { .. }) => {
                Ok(Reply::Digest(Digest::Row(digest)))
            }
            (other, _) => Err(CallError::Decode(format!(
                "unexpected answer to a read: {other:?}"
            ))),
        }
    }

    /// The client's answer from the reconciled cells (`cut`: where a replica stopped).
    fn respond(
        &self,
        merged: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        cut: Option<&[u8]>,
        now_secs: u64,
        meta: ResponseMeta,
    ) -> Result<Response, ServerError> {
        let tomb = merged
            .get(self.prefix.as_bytes())
            .map(|t| RowTombstone::decode(t).map_err(versioning_error))
            .transpose()?;
        let cell = |name: &[u8], stored: &[u8]| {
            cell_from_stored(
                self.mode,
                Bytes::copy_from_slice(name),
                stored,
                now_secs,
                tomb.as_ref(),
            )
        };
        let mut cells: Vec<Cell> = Vec::new();
        let mut bytes = 0usize;
        let mut next_page = None;
        match &self.shape {
            Shape::Columns { names, .. } => {
                for name in names {
                    let Some(stored) = merged.get(&self.prefix.cell_key(name)) else {
                        continue;
                    };
                    if let Some(c) = cell(name, stored)? {
                        bytes += cell_bytes(&c);
                        if bytes > MAX_RESPONSE_BYTES {
                            return Err(columns_too_large());
                        }
                        cells.push(c);
                    }
                }
            }
            Shape::All => {
                if cut.is_some() {
                    return Err(row_too_large());
                }
                for (key, stored) in merged {
                    let Some(column) = self.prefix.column_of(key) else {
                        continue;
                    };
                    if let Some(c) = cell(column, stored)? {
                        bytes += cell_bytes(&c);
                        if bytes > MAX_RESPONSE_BYTES || cells.len() >= MAX_PAGE_SIZE as usize {
                            return Err(row_too_large());
                        }
                        cells.push(c);
                    }
                }
            }
            Shape::Slice { limit } => {
                let mut stopped = false;
                for (key, stored) in merged {
                    let Some(column) = self.prefix.column_of(key) else {
                        continue;
                    };
                    if cells.len() >= *limit as usize {
                        stopped = true;
                        break;
                    }
                    if let Some(c) = cell(column, stored)? {
                        // A cell that would take the page past its budget starts the next.
                        if !fits_page(bytes, &c, cells.is_empty()) {
                            stopped = true;
                            break;
                        }
                        bytes += cell_bytes(&c);
                        cells.push(c);
                    }
                }
                let resume = if stopped {
                    cells.last().map(|c| c.name.to_vec())
                } else {
                    cut.and_then(|k| self.prefix.column_of(k))
                        .map(<[u8]>::to_vec)
                };
                next_page =
                    resume.map(|column| encode_paging_token(&self.table, &self.key, &column));
            }
        }
        Ok(Response::Row {
            cells,
            next_page,
            meta,
        })
    }
}

impl Coordinator {
    /// A GET whose key needs peers (steps 1 to 5 of the module documentation).
    pub(super) async fn read(
        self: &Arc<Self>,
        table: &str,
        key: &Bytes,
        selector: &Selector,
        consistency: Option<Consistency>,
        placement: KeyPlacement,
    ) -> Result<Response, ServerError> {
        bump(&self.counters.reads);
        let schema = self.service.schema(table)?;
        let c = consistency.unwrap_or(schema.options.read_consistency);
        let need = required(c.level, schema.options.replication_factor)? as usize;
        let mode = schema.options.conflict_mode;
        let plan = Arc::new(ReadPlan::new(
            self.service.options().partitioner,
            table,
            mode,
            key,
            selector,
        )?);
        let mut targets: Vec<Target> = placement.home.iter().filter(|t| t.alive).copied().collect();
        // This node's own replica first: its data costs no network round trip.
        targets.sort_by_key(|t| !t.local);
        if targets.len() < need {
            let alive = u32::try_from(targets.len()).unwrap_or(u32::MAX);
            return Err(unavailable(c, need as u32, alive, table));
        }
        let deadline = Instant::now() + self.options.read_timeout;
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Result<Reply, CallError>)>();
        let send = |i: usize, data: bool| {
            let (this, plan, tx) = (self.clone(), plan.clone(), tx.clone());
            let Some(target) = targets.get(i).copied() else {
                return;
            };
            tokio::spawn(async move {
                let request = if data {
                    plan.data.clone()
                } else {
                    plan.digest.clone()
                };
                let now = this.service.options().clock.now_secs();
                let reply = this
                    .ask(&target, request, deadline)
                    .await
                    .and_then(|r| plan.reply(r, now));
                let _ = tx.send((i, reply));
            });
        };

        // Phase 1: data from one, digests from R-1.
        send(0, true);
        for i in 1..need {
            send(i, false);
        }
        let mut asked = need;
        let mut outstanding = need;
        let mut speculated = false;
        let mut replies: Vec<(usize, Reply)> = Vec::new();
        let has_data =
            |r: &[(usize, Reply)]| r.iter().any(|(_, r)| matches!(r, Reply::Data { .. }));
        while !(has_data(&replies) && replies.len() >= need) && outstanding > 0 {
            // Speculate once when a replica outlives its usual latency.
            let speculate_at = (!speculated && asked < targets.len())
                .then(|| self.speculation_point(&targets[..asked], &replies))
                .flatten();
            tokio::select! {
                got = rx.recv() => {
                    let Some((i, reply)) = got else { break };
                    outstanding -= 1;
                    match reply {
                        Ok(reply) => replies.push((i, reply)),
                        Err(e) => {
                            tracing::debug!(replica = %targets[i].id, error = %e, "read replica failed");
                            if asked < targets.len() {
                                send(asked, true);
                                asked += 1;
                                outstanding += 1;
                            }
                        }
                    }
                }
                _ = sleep_until_opt(speculate_at) => {
                    speculated = true;
                    bump(&self.counters.speculative_retries);
                    send(asked, true);
                    asked += 1;
                    outstanding += 1;
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let received = u32::try_from(replies.len()).unwrap_or(u32::MAX);
        if !(has_data(&replies) && replies.len() >= need) {
            return Err(read_timeout(received, need as u32));
        }
        let now = self.service.options().clock.now_secs();
        let first = replies
            .iter()
            .position(|(_, r)| matches!(r, Reply::Data { .. }))
            .unwrap_or(0);
        let agreed = replies
            .iter()
            .all(|(_, r)| r.digest() == replies[first].1.digest());
        let mut meta = ResponseMeta {
            replicas: replies
                .iter()
                .map(|(i, _)| targets[*i].id.to_string())
                .collect(),
            read_repair: false,
            stand_ins: Vec::new(),
        };
        if agreed {
            if let Reply::Data { answer, .. } = &replies[first].1 {
                let cut = reconcile::cut(&[answer]);
                let merged = reconcile::merge(&*self.policy(mode), &[answer], cut.as_deref());
                return plan.respond(&merged, cut.as_deref(), now, meta);
            }
        }

        // Phase 2: the replicas disagree; full data from those that sent digests.
        bump(&self.counters.digest_mismatches);
        let mut data: Vec<(usize, ReplicaAnswer)> = Vec::new();
        let mut waiting: Vec<usize> = Vec::new();
        for (i, reply) in replies {
            match reply {
                Reply::Data { answer, .. } => data.push((i, answer)),
                Reply::Digest(_) => {
                    send(i, true);
                    waiting.push(i);
                }
            }
        }
        while !waiting.is_empty() {
            tokio::select! {
                got = rx.recv() => {
                    let Some((i, reply)) = got else { break };
                    // Late answers of phase 1 are welcome too.
                    let failed = reply.is_err() && waiting.contains(&i);
                    match reply {
                        Ok(Reply::Data { answer, .. }) => {
                            if !data.iter().any(|(j, _)| *j == i) {
                                data.push((i, answer));
                            }
                        }
                        Ok(Reply::Digest(_)) => {}
                        Err(e) => tracing::debug!(replica = %targets[i].id, error = %e, "read replica failed"),
                    }
                    // Done with `i` once it sent its data or failed its data request.
                    if failed || data.iter().any(|(j, _)| *j == i) {
                        waiting.retain(|&j| j != i);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if data.len() < need {
            return Err(read_timeout(
                u32::try_from(data.len()).unwrap_or(u32::MAX),
                need as u32,
            ));
        }
        let answers: Vec<&ReplicaAnswer> = data.iter().map(|(_, a)| a).collect();
        let cut = reconcile::cut(&answers);
        let merged = reconcile::merge(&*self.policy(mode), &answers, cut.as_deref());
        meta.replicas = data
            .iter()
            .map(|(i, _)| targets[*i].id.to_string())
            .collect();

        // Read repair.
        let mut repairs = Vec::new();
        for (i, answer) in &data {
            let fixes = reconcile::repairs(mode, &merged, answer, now);
            if fixes.is_empty() {
                continue;
            }
            let cells: Vec<RawCell> = fixes
                .into_iter()
                .map(|(key, value)| RawCell {
                    table: plan.table.clone(),
                    key,
                    value,
                })
                .collect();
            let (this, target) = (self.clone(), targets[*i]);
            bump(&self.counters.read_repairs);
            repairs.push(tokio::spawn(async move {
                let repair_deadline = Instant::now() + this.options.write_timeout;
                match this
                    .ask(&target, ReplicaRequest::Apply { cells }, repair_deadline)
                    .await
                {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::debug!(replica = %target.id, error = %e, "read repair failed");
                        false
                    }
                }
            }));
        }
        meta.read_repair = !repairs.is_empty();
        if c.read_repair == ReadRepair::Blocking {
            for r in repairs {
                let _ = r.await;
            }
        }
        plan.respond(&merged, cut.as_deref(), now, meta)
    }

    /// When to ask one more replica: the latest p99 point of the replicas still
    /// outstanding (`None` while any of them has no latency record yet, or none is
    /// outstanding).
    fn speculation_point(&self, asked: &[Target], replies: &[(usize, Reply)]) -> Option<Instant> {
        let mut latest: Option<std::time::Duration> = None;
        for (i, t) in asked.iter().enumerate() {
            if t.local || replies.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let threshold = self.latencies.threshold(t.id)?;
            latest = Some(latest.map_or(threshold, |l| l.max(threshold)));
        }
        latest.map(|l| Instant::now() + l)
    }

    /// The merge policy of a table of `mode` (replicated: tombstones kept).
    fn policy(&self, mode: ConflictMode) -> Arc<dyn MergePolicy> {
        let clock = self.service.options().clock.clone();
        match mode {
            ConflictMode::Causal => Arc::new(CausalMerge::replicated(clock)),
            ConflictMode::Lww => Arc::new(LwwMerge::replicated(clock)),
        }
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The `READ_TIMEOUT` error.
fn read_timeout(acks: u32, required: u32) -> ServerError {
    ServerError::new(
        sibyl_protocol::ErrorKind::ReadTimeout { acks, required },
        format!("{acks} of the {required} replica answers needed came in time"),
    )
}
