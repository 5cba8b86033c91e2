//! Coordinating INSERT, DELETE and BATCH across a key's replicas.
//!
//! 1. A node that is not a home replica of the key forwards the write to the first alive
//!    home replica in preference order (the replica family's `coordinate`); when that
//!    replica cannot be reached before it takes the request, the next one.
//! 2. The coordinator counts who can take the write: the alive home replicas, plus in
//!    `sloppy` mode one stand-in per down home replica, plus the alive pending replicas
//!    (a node joining or taking over the key's range while it streams it). Fewer than W
//!    (plus one per pending replica): `UNAVAILABLE`, nothing written.
//! 3. It mints the new version at its own replica ([`Service::mint_mutation`]: the
//!    client's context, this node's actor) and ships the exact cells minted: `apply` to
//!    each other alive home replica, `store_hint` (naming the owner) to the stand-in of
//!    each down one.
//! 4. It answers once W replicas acknowledged (plus one per pending replica, pending
//!    replicas counting like home ones), its own included (stand-ins count in
//!    `sloppy` mode only), or `WRITE_TIMEOUT { acks, required }` when the deadline passes
//!    first (the write may still land: its calls go on).
//! 5. A home replica that refuses or does not answer, or a stand-in that cannot keep the
//!    hint, gets a hint in this node's own hint store; the hint is replayed when gossip
//!    says the owner is up.
//!
//! A BATCH groups its INSERTs whose key this node is a home replica of by table and
//! placement (the same home, stand-in and pending replicas): each group is minted here in
//! one go and shipped to each other replica in one `apply` (or one hint), and its
//! acknowledgements count for every mutation in it, so a bulk load costs one peer call
//! per replica and group instead of one per row. The other mutations are coordinated on
//! their own (forwarded, or read before a delete), concurrently. The answer is the first
//! error in mutation order, or success with every replica that acknowledged.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sibyl_protocol::{
    CellContext, ConflictMode, Consistency, ConsistencyLevel, DeleteTarget, ErrorKind, Mutation,
    Opcode, QuorumMode, ReadRepair, Request, Response, ResponseMeta, Selector, ServerError,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::placement::{required, unavailable, KeyPlacement, Target};
use super::{bump, server_error, CallError, Coordinator, InFlight};
use crate::hints::{HintsRequest, HintsResponse};
use crate::net::{Family, NetError};
use crate::replica::{RawCell, ReplicaRequest, ReplicaResponse};
use crate::ring::NodeId;
use crate::service::INLINE_BATCH_MAX;

/// Most bytes of keys and values in one group of a BATCH (one `apply` per replica stays
/// well under the peer network's frame cap).
const GROUP_BYTES: usize = 4 << 20;

/// What one replica did with a write.
#[derive(Debug, Clone, Copy)]
enum Ack {
    /// A home replica applied it.
    Home(NodeId),
    /// A stand-in keeps it as a hint.
    StandIn(NodeId),
    /// Neither (a hint is kept here instead, or was dropped at a bound).
    Missed,
}

impl Coordinator {
    /// An INSERT or DELETE whose key needs peers.
    pub(super) async fn write_request(
        self: Arc<Self>,
        request: Request,
        placement: KeyPlacement,
    ) -> Response {
        if !placement.is_home() {
            return self.forward(request, &placement).await;
        }
        let Some((mutation, consistency)) = into_mutation(request) else {
            return Response::Error(server_error("not a write"));
        };
        match self.write(mutation, consistency, &placement).await {
            Ok(meta) => Response::Written { meta },
            Err(e) => Response::Error(e),
        }
    }

    /// A write another node forwarded here: coordinated, never forwarded again.
    pub(super) async fn coordinate_forwarded(self: Arc<Self>, request: Request) -> Response {
        let Some((table, key, _)) = write_parts(&request) else {
            return Response::Error(ServerError::new(
                ErrorKind::Protocol,
                "only INSERT and DELETE are forwarded between nodes",
            ));
        };
        match self.placement(table, key) {
            // This node alone holds the key (or the table is unknown here): the local
            // service answers, with its own errors.
            None => self
                .local(move |svc| svc.handle(request))
                .await
                .unwrap_or_else(|e| Response::Error(server_error(e.to_string()))),
            Some(placement) if !placement.is_home() => Response::Error(ServerError::new(
                ErrorKind::Unavailable {
                    required: 1,
                    alive: 0,
                },
                "the forwarding node and this one disagree on the key's replicas (a ring \
                 change in progress); retry",
            )),
            Some(placement) => self.write_request(request, placement).await,
        }
    }

    /// Sends a write to a home replica to coordinate.
    async fn forward(&self, request: Request, placement: &KeyPlacement) -> Response {
        bump(&self.counters.forwarded);
        let opcode = request.opcode();
        let required = match write_parts(&request).map(|(t, _, c)| self.write_level(t, c)) {
            Some(Ok((_, _, r))) => r,
            Some(Err(e)) => return Response::Error(e),
            None => return Response::Error(server_error("not a write")),
        };
        let body = match request.encode_body() {
            Ok(b) => b,
            Err(e) => return Response::Error(server_error(format!("cannot forward: {e}"))),
        };
        let message = ReplicaRequest::Coordinate {
            opcode: opcode.as_u8(),
            body,
        }
        .encode();
        // The remote coordinator waits for its own replicas first.
        let deadline = Instant::now() + self.options.write_timeout * 2;
        let mut last = None;
        let mut targets: Vec<&Target> = placement
            .home
            .iter()
            .filter(|t| t.alive && !t.local)
            .collect();
        // A leaving replica last: it is about to stop being a replica.
        targets.sort_by_key(|t| t.leaving);
        for target in targets {
            let Some(addr) = target.addr else { continue };
            match self
                .net
                .call(addr, Family::Replica, message.clone(), deadline)
                .await
            {
                Ok(bytes) => match ReplicaResponse::decode(&bytes) {
                    Ok(ReplicaResponse::Answer {
                        error,
                        opcode,
                        body,
                    }) => {
                        return Opcode::from_u8(opcode)
                            .and_then(|op| Response::decode_body(op, error, body))
                            .unwrap_or_else(|e| {
                                Response::Error(server_error(format!(
                                    "undecodable answer from {}: {e}",
                                    target.id
                                )))
                            })
                    }
                    // Refused before coordinating: nothing was written there.
                    Ok(other) => last = Some(format!("{}: {other:?}", target.id)),
                    Err(e) => last = Some(format!("{}: {e}", target.id)),
                },
                // Never reached the peer's coordinator: try the next home replica.
                Err(
                    e @ (NetError::Overloaded { .. }
                    | NetError::Refused { .. }
                    | NetError::NoHandler { .. }
                    | NetError::Remote { .. }),
                ) => last = Some(e.to_string()),
                Err(e) => {
                    return Response::Error(ServerError::new(
                        ErrorKind::WriteTimeout { acks: 0, required },
                        format!(
                            "the write was forwarded to replica {} and no answer came: {e}; \
                             it may have been applied",
                            target.id
                        ),
                    ))
                }
            }
        }
        Response::Error(ServerError::new(
            ErrorKind::Unavailable { required, alive: 0 },
            format!(
                "no home replica of the key could coordinate the write{}",
                last.map(|l| format!(" (last: {l})")).unwrap_or_default()
            ),
        ))
    }

    /// The schema, consistency and acknowledgements of a write to `table`.
    fn write_level(
        &self,
        table: &str,
        consistency: Option<Consistency>,
    ) -> Result<(Arc<crate::service::schema::TableSchema>, Consistency, u32), ServerError> {
        let schema = self.service.schema(table)?;
        let c = consistency.unwrap_or(schema.options.write_consistency);
        let required = required(c.level, schema.options.replication_factor)?;
        Ok((schema, c, required))
    }

    /// Coordinates one mutation at a home replica (steps 2 to 5 of the module
    /// documentation).
    async fn write(
        self: &Arc<Self>,
        mutation: Mutation,
        consistency: Option<Consistency>,
        placement: &KeyPlacement,
    ) -> Result<ResponseMeta, ServerError> {
        self.write_group(vec![mutation], consistency, placement)
            .await
    }

    /// Coordinates `mutations` (of one table, all placed as `placement`, this node a home
    /// replica) as one write: minted here together, shipped in one call per replica.
    /// A mutation that fails to mint stops the group there: what was minted before it is
    /// still shipped, then its error is the answer.
    pub(super) async fn write_group(
        self: &Arc<Self>,
        mutations: Vec<Mutation>,
        consistency: Option<Consistency>,
        placement: &KeyPlacement,
    ) -> Result<ResponseMeta, ServerError> {
        for _ in &mutations {
            bump(&self.counters.writes);
        }
        let Some(first) = mutations.first() else {
            return Ok(ResponseMeta::default());
        };
        let (schema, c, level_required) = self.write_level(first.table(), consistency)?;
        let blind = mutations.len() == 1 && blind_causal_delete(&schema, first);
        // Each pending replica adds one acknowledgement to wait for (see
        // `KeyPlacement::pending`).
        let pending = u32::try_from(placement.pending.len()).unwrap_or(u32::MAX);
        let required = level_required.saturating_add(pending);
        let sloppy = c.mode == QuorumMode::Sloppy;
        let stand_ins = if sloppy { placement.stand_ins.len() } else { 0 };
        let alive_pending = placement.pending.iter().filter(|t| t.alive).count();
        let able =
            u32::try_from(placement.alive_home() + stand_ins + alive_pending).unwrap_or(u32::MAX);
        if able < required {
            return Err(unavailable(c, required, able, &schema.name));
        }
        let mut mutations = mutations;
        if blind {
            let level = level_required.min(placement.alive_home() as u32).max(1);
            if let Some(m) = mutations.pop() {
                mutations.push(self.with_read_contexts(m, level, c, placement).await?);
            }
        }
        tracing::trace!(
            ?placement,
            required,
            count = mutations.len(),
            "coordinating a write"
        );
        let blocks = self.service.writes_block()
            || mutations.len() > 1
            || mutations.iter().any(mutation_blocks);
        let (cells, mint_error) = self
            .local_unless_inline(blocks, move |svc| {
                let mut cells = Vec::new();
                for m in &mutations {
                    match svc.mint_mutation(m) {
                        // One mutation (the common write): its cells as minted.
                        Ok(c) if cells.is_empty() => cells = c,
                        Ok(c) => cells.extend(c),
                        Err(e) => return (cells, Some(e)),
                    }
                }
                (cells, None)
            })
            .await
            .map_err(|e| server_error(e.to_string()))?;
        if let (Some(e), true) = (&mint_error, cells.is_empty()) {
            return Err(e.clone());
        }
        let cells = Arc::new(cells);
        let apply = ReplicaRequest::Apply {
            cells: cells.to_vec(),
        }
        .encode();
        let deadline = Instant::now() + self.options.write_timeout;
        let (tx, mut rx) = mpsc::unbounded_channel::<Ack>();
        let mut outstanding = 0usize;
        let mut spare = placement.stand_ins.iter();
        // A pending replica that is down gets a hint here (no stand-in: it is not a home
        // replica yet).
        for pending in &placement.pending {
            outstanding += 1;
            let (this, cells, tx, target) = (self.clone(), cells.clone(), tx.clone(), *pending);
            let body = apply.clone();
            tokio::spawn(async move {
                let _shipping = InFlight::start(&this.counters.shipments_in_flight);
                let ack = if target.alive {
                    this.replicate(target, body, cells, deadline).await
                } else {
                    this.hint_here(target.id, cells).await;
                    Ack::Missed
                };
                let _ = tx.send(ack);
            });
        }
        for home in placement.home.iter().filter(|t| !t.local) {
            outstanding += 1;
            let (this, cells, tx, home) = (self.clone(), cells.clone(), tx.clone(), *home);
            if home.alive {
                let body = apply.clone();
                tokio::spawn(async move {
                    let _shipping = InFlight::start(&this.counters.shipments_in_flight);
                    let ack = this.replicate(home, body, cells, deadline).await;
                    let _ = tx.send(ack);
                });
            } else {
                let stand_in = spare.next().copied();
                tokio::spawn(async move {
                    let _shipping = InFlight::start(&this.counters.shipments_in_flight);
                    let ack = match stand_in {
                        Some(s) => this.hint_at(s, home.id, cells, deadline).await,
                        None => {
                            this.hint_here(home.id, cells).await;
                            Ack::Missed
                        }
                    };
                    let _ = tx.send(ack);
                });
            }
        }
        drop(tx);
        let local = self.net.local_node();
        let mut homes = vec![local];
        let mut helpers: Vec<NodeId> = Vec::new();
        let counted = |homes: &Vec<NodeId>, helpers: &Vec<NodeId>| {
            homes.len() + if sloppy { helpers.len() } else { 0 }
        };
        while (counted(&homes, &helpers) as u32) < required && outstanding > 0 {
            tokio::select! {
                ack = rx.recv() => {
                    match ack {
                        Some(Ack::Home(id)) => homes.push(id),
                        Some(Ack::StandIn(id)) => helpers.push(id),
                        Some(Ack::Missed) => {}
                        None => break,
                    }
                    outstanding -= 1;
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if let Some(e) = mint_error {
            return Err(e);
        }
        let acks = counted(&homes, &helpers) as u32;
        if acks < required {
            return Err(ServerError::new(
                ErrorKind::WriteTimeout { acks, required },
                format!(
                    "{acks} of the {required} acknowledgements needed came in time; the \
                     write may have been applied, and replicas that missed it get hints"
                ),
            ));
        }
        let mut replicas: Vec<String> = homes.iter().map(NodeId::to_string).collect();
        let stand_ins: Vec<String> = if sloppy {
            helpers.iter().map(NodeId::to_string).collect()
        } else {
            Vec::new()
        };
        replicas.extend(stand_ins.iter().cloned());
        Ok(ResponseMeta {
            replicas,
            read_repair: false,
            stand_ins,
        })
    }

    /// A causal delete that names cells without their contexts (or a row delete) would
    /// supersede only what this replica holds, and this replica may have missed the
    /// write. So the coordinator reads the cells first from `level` home replicas and
    /// deletes what they hold (Riak's read before delete): every empty context becomes
    /// the cell's reconciled context, and a row delete adds the contexts of every cell
    /// read. A failed read fails the delete, with nothing written.
    async fn with_read_contexts(
        self: &Arc<Self>,
        mutation: Mutation,
        level: u32,
        c: Consistency,
        placement: &KeyPlacement,
    ) -> Result<Mutation, ServerError> {
        let Mutation::Delete(mut delete) = mutation else {
            return Ok(mutation);
        };
        let selector = match &delete.target {
            DeleteTarget::Columns(cells) => Selector::Columns(
                cells
                    .iter()
                    .filter(|c| c.context.is_empty())
                    .map(|c| c.name.clone())
                    .collect(),
            ),
            DeleteTarget::Row { .. } => Selector::All,
        };
        let read_level = Consistency {
            level: ConsistencyLevel::Explicit(u16::try_from(level).unwrap_or(u16::MAX)),
            mode: c.mode,
            read_repair: ReadRepair::Background,
        };
        let key = delete.key.clone();
        let read = match self
            .read(
                &delete.table,
                &key,
                &selector,
                Some(read_level),
                placement.clone(),
            )
            .await
        {
            Ok(r) => r,
            // A row too large to read whole: its delete covers what this replica holds
            // and the contexts the client sent, as on one node.
            Err(e) if matches!(e.kind, ErrorKind::Invalid) && selector == Selector::All => {
                tracing::debug!(error = %e, "row delete without the read before it");
                return Ok(Mutation::Delete(delete));
            }
            Err(e) => return Err(e),
        };
        let Response::Row { cells, .. } = read else {
            return Err(server_error("the read before a delete answered no row"));
        };
        let read: HashMap<Bytes, Bytes> = cells.into_iter().map(|c| (c.name, c.context)).collect();
        match &mut delete.target {
            DeleteTarget::Columns(named) => {
                for n in named.iter_mut().filter(|n| n.context.is_empty()) {
                    if let Some(ctx) = read.get(&n.name) {
                        n.context = ctx.clone();
                    }
                }
            }
            DeleteTarget::Row { contexts } => {
                for (name, context) in read {
                    if !contexts.iter().any(|c| c.name == name) {
                        contexts.push(CellContext { name, context });
                    }
                }
                contexts.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        Ok(Mutation::Delete(delete))
    }

    /// Ships minted cells to a home replica; a hint here when it does not apply them.
    async fn replicate(
        &self,
        home: Target,
        body: bytes::Bytes,
        cells: Arc<Vec<RawCell>>,
        deadline: Instant,
    ) -> Ack {
        let result = match home.addr {
            Some(addr) => {
                let started = Instant::now();
                let r = self
                    .net
                    .call_node(addr, home.id, Family::Replica, body, deadline)
                    .await;
                if r.is_ok() {
                    self.latencies.record(home.id, started.elapsed());
                }
                r.map_err(CallError::from).and_then(|b| {
                    ReplicaResponse::decode(&b).map_err(|e| CallError::Decode(e.to_string()))
                })
            }
            None => Err(CallError::NoAddress(home.id)),
        };
        match result {
            Ok(ReplicaResponse::Applied { .. }) => Ack::Home(home.id),
            other => {
                tracing::debug!(replica = %home.id, answer = ?other, "replica did not apply a write; hinting it");
                self.hint_here(home.id, cells).await;
                Ack::Missed
            }
        }
    }

    /// Asks `stand_in` to keep the cells as a hint for `owner`; a hint here when it
    /// cannot.
    async fn hint_at(
        &self,
        stand_in: Target,
        owner: NodeId,
        cells: Arc<Vec<RawCell>>,
        deadline: Instant,
    ) -> Ack {
        let Some(addr) = stand_in.addr else {
            self.hint_here(owner, cells).await;
            return Ack::Missed;
        };
        let body = HintsRequest::StoreHint {
            owner,
            cells: cells.to_vec(),
        }
        .encode();
        let answer = self
            .net
            .call_node(addr, stand_in.id, Family::Hints, body, deadline)
            .await;
        match answer.map(|b| HintsResponse::decode(&b)) {
            Ok(Ok(HintsResponse::Stored)) => {
                bump(&self.counters.hints);
                Ack::StandIn(stand_in.id)
            }
            // Dropped at a bound: counted there, the range marked for repair.
            Ok(Ok(HintsResponse::Dropped { reason })) => {
                tracing::debug!(%owner, stand_in = %stand_in.id, ?reason, "stand-in dropped a hint");
                Ack::Missed
            }
            other => {
                tracing::debug!(%owner, stand_in = %stand_in.id, answer = ?other, "stand-in did not keep a hint; keeping it here");
                self.hint_here(owner, cells).await;
                Ack::Missed
            }
        }
    }

    /// Keeps a hint for `owner` in this node's hint store.
    async fn hint_here(&self, owner: NodeId, cells: Arc<Vec<RawCell>>) {
        let store = self.hints.clone();
        let stored = self.blocking(move || store.store(owner, &cells)).await;
        match stored {
            Ok(Ok(crate::hints::Stored::Kept(id))) => {
                tracing::debug!(%owner, ?id, "hint kept here");
                bump(&self.counters.hints);
            }
            Ok(Ok(crate::hints::Stored::Dropped(reason))) => {
                tracing::debug!(%owner, ?reason, "hint dropped at a bound");
            }
            Ok(Err(e)) => tracing::error!(%owner, error = %e, "cannot keep a hint"),
            Err(e) => tracing::error!(%owner, error = %e, "cannot keep a hint"),
        }
    }

    /// BATCH: every mutation coordinated on its own, concurrently (`placements`: each
    /// mutation's, `None` where this node alone holds its key).
    pub(super) async fn batch(
        self: Arc<Self>,
        mutations: Vec<Mutation>,
        placements: Vec<Option<KeyPlacement>>,
        consistency: Option<Consistency>,
    ) -> Response {
        // Groups of INSERTs this node is a home replica of, by table and placement, each
        // at most GROUP_BYTES of keys and values; the other mutations alone.
        let mut groups: Vec<(KeyPlacement, Vec<usize>, usize)> = Vec::new();
        let mut alone: Vec<usize> = Vec::new();
        for (i, (m, p)) in mutations.iter().zip(&placements).enumerate() {
            match (m, p) {
                (Mutation::Insert(insert), Some(p)) if p.is_home() => {
                    let bytes = insert.key.len()
                        + insert
                            .columns
                            .iter()
                            .map(|c| c.name.len() + c.value.len())
                            .sum::<usize>();
                    let same = groups.iter_mut().find(|(gp, members, size)| {
                        gp == p
                            && mutations[members[0]].table() == insert.table
                            && *size + bytes <= GROUP_BYTES
                    });
                    match same {
                        Some((_, members, size)) => {
                            members.push(i);
                            *size += bytes;
                        }
                        None => groups.push((p.clone(), vec![i], bytes)),
                    }
                }
                _ => alone.push(i),
            }
        }
        let mut slots: Vec<Option<Mutation>> = mutations.into_iter().map(Some).collect();
        let mut placements: Vec<Option<KeyPlacement>> = placements;
        // (first mutation index, its answer's task)
        let mut tasks = Vec::with_capacity(groups.len() + alone.len());
        for (placement, members, _) in groups {
            let group: Vec<Mutation> = members.iter().filter_map(|&i| slots[i].take()).collect();
            let this = self.clone();
            tasks.push((
                members[0],
                tokio::spawn(async move {
                    match this.write_group(group, consistency, &placement).await {
                        Ok(meta) => Response::Written { meta },
                        Err(e) => Response::Error(e),
                    }
                }),
            ));
        }
        for i in alone {
            let (Some(m), placement) = (slots[i].take(), placements[i].take()) else {
                continue;
            };
            let this = self.clone();
            tasks.push((
                i,
                tokio::spawn(async move {
                    let request = match m {
                        Mutation::Insert(insert) => Request::Insert {
                            insert,
                            consistency,
                        },
                        Mutation::Delete(delete) => Request::Delete {
                            delete,
                            consistency,
                        },
                    };
                    match placement {
                        Some(placement) => this.write_request(request, placement).await,
                        None => this
                            .local(move |svc| svc.handle(request))
                            .await
                            .unwrap_or_else(|e| Response::Error(server_error(e.to_string()))),
                    }
                }),
            ));
        }
        tasks.sort_by_key(|(first, _)| *first);
        let mut meta = ResponseMeta::default();
        let mut first_error = None;
        for (_, t) in tasks {
            match t.await {
                Ok(Response::Written { meta: m }) => {
                    for r in m.replicas {
                        if !meta.replicas.contains(&r) {
                            meta.replicas.push(r);
                        }
                    }
                    for s in m.stand_ins {
                        if !meta.stand_ins.contains(&s) {
                            meta.stand_ins.push(s);
                        }
                    }
                }
                Ok(Response::Error(e)) => {
                    first_error.get_or_insert(e);
                }
                Ok(other) => {
                    first_error.get_or_insert(server_error(format!("unexpected answer {other:?}")));
                }
                Err(e) => {
                    first_error.get_or_insert(server_error(format!("batch task failed: {e}")));
                }
            }
        }
        match first_error {
            Some(e) => Response::Error(e),
            None => Response::Written { meta },
        }
    }
}

/// The mutation of an INSERT or DELETE request.
/// Whether minting `mutation` scans (a row delete reads its whole row) or writes many
/// cells, so it runs on the blocking pool whatever the sync mode.
fn mutation_blocks(mutation: &Mutation) -> bool {
    match mutation {
        Mutation::Insert(i) => i.columns.len() > INLINE_BATCH_MAX,
        Mutation::Delete(d) => match &d.target {
            DeleteTarget::Row { .. } => true,
            DeleteTarget::Columns(c) => c.len() > INLINE_BATCH_MAX,
        },
    }
}

/// Whether `mutation` is a delete of a causal table with a cell named without its
/// context, or a whole-row delete (whose contexts name only the cells the client saw).
fn blind_causal_delete(schema: &crate::service::schema::TableSchema, mutation: &Mutation) -> bool {
    if schema.options.conflict_mode != ConflictMode::Causal {
        return false;
    }
    match mutation {
        Mutation::Delete(d) => match &d.target {
            DeleteTarget::Columns(cells) => cells.iter().any(|c| c.context.is_empty()),
            DeleteTarget::Row { .. } => true,
        },
        Mutation::Insert(_) => false,
    }
}

fn into_mutation(request: Request) -> Option<(Mutation, Option<Consistency>)> {
    match request {
        Request::Insert {
            insert,
            consistency,
        } => Some((Mutation::Insert(insert), consistency)),
        Request::Delete {
            delete,
            consistency,
        } => Some((Mutation::Delete(delete), consistency)),
        _ => None,
    }
}

/// The table, partition key and consistency of an INSERT or DELETE request.
pub(super) fn write_parts(request: &Request) -> Option<(&str, &[u8], Option<Consistency>)> {
    match request {
        Request::Insert {
            insert,
            consistency,
        } => Some((&insert.table, &insert.key, *consistency)),
        Request::Delete {
            delete,
            consistency,
        } => Some((&delete.table, &delete.key, *consistency)),
        _ => None,
    }
}
