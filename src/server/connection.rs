//! One client connection: reads frames, runs requests through the request handler, writes
//! the responses back coalesced.
//!
//! One task owns the socket. It reads whatever bytes are available, decodes every complete
//! frame, and hands each request to the [`RequestHandler`]: a ready answer is appended to
//! the output buffer on the spot; a pending one (a future) runs on a task of its own whose
//! encoded answer comes back through a channel. Before waiting again the task writes
//! everything queued in one `write_all`, so a pipelining client gets many responses per
//! system call.
//!
//! Quick INSERTs that arrive together (a pipelining client's burst) are answered as one
//! group: [`RequestHandler::insert_group`] writes them with one engine batch (one
//! commit-log append), each still answered on its own. A group only holds frames already
//! received; nothing waits for more.
//!
//! Every request answered (PING and refusals included, HANDSHAKE not) is counted in the
//! node's [`RequestMetrics`] with its opcode, consistency level, latency (decode to
//! encoded answer) and error code, if any; a malformed frame counts a `PROTOCOL` error.
//!
//! Invariants:
//! - Nothing but HANDSHAKE is accepted first; the frame cap is 64 KiB until the connection
//!   is *admitted*: at the handshake, or on a node that requires authentication once its
//!   login (AUTH_START, AUTH_FINISH, checked by the [`Authenticator`]) succeeds; then the
//!   configured cap. Admission must come within the handshake timeout counted from the
//!   accept (however slowly bytes trickle in), or the connection is closed without an
//!   error frame; until then the connection holds a [`HandshakeTicket`], and closes the
//!   same way when the server evicts it to make room under its cap on connections still
//!   in their handshake.
//! - Every request after the handshake passes [`Authenticator::authorize`] first: the
//!   one permission check, before any work (on a node without authentication,
//!   everything passes). A failed login is answered
//!   `AUTHENTICATION_FAILED` after the source's delay, slept on this task alone (other
//!   connections go on), and the connection closes.
//! - Every request that is executed holds a permit of the node-wide in-flight semaphore
//!   until its answer is encoded; with none left it is answered `Overloaded` at once.
//! - Request bodies take memory only as they arrive, never on the word of a header. A
//!   frame larger than the read chunk (16 KiB) first takes its whole length from the node-wide
//!   budget of request data in flight ([`ConnectionContext::body_budget`]); until it gets
//!   it the connection reads nothing more (backpressure: the client's sends block, the
//!   node does not grow). The bytes go back to the budget once the request's answer is
//!   encoded. Smaller frames are not charged: they fit the connection's read buffer.
//! - A malformed frame or message is answered with a `PROTOCOL` error and the connection
//!   closes (the process and other connections are unaffected). A frame that cannot be
//!   read (bad header, over the cap, bad checksum) gets its error on stream 0 with opcode
//!   0x00; an intact frame whose message is bad gets its own stream id and opcode echoed.
//! - On shutdown, end of input or idle timeout the task stops reading, waits for the
//!   answers of the requests in flight, writes them and closes. The connection owns the
//!   tasks of its pending answers: it counts them and waits for each; a task outliving a
//!   connection that failed finishes its request and finds nobody to answer.
//! - Every pending request is answered: a task that panics or is cancelled answers a
//!   `SERVER` error instead (its `AnswerSlot` does on drop).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sibyl_protocol::frame::{
    CONNECTION_ERROR_OPCODE, CONNECTION_ERROR_STREAM_ID, FLAG_ERROR, FLAG_RESPONSE,
};
use sibyl_protocol::{
    Consistency, ErrorKind, Frame, FrameCodec, Opcode, ProtocolError, Request, Response, RowInsert,
    ServerError, PROTOCOL_VERSION, SUPPORTED_VERSIONS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::handler::{RequestHandler, Started};
use super::pending::HandshakeTicket;
use crate::auth::{Authenticator, Session, Step};
use crate::metrics::{Outcome, RequestKind, RequestMetrics};

/// Bytes reserved in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Output queued past this size is written before more frames are decoded, so a client
/// pipelining large reads cannot make the buffer grow without bound.
const OUT_HIGH_WATER: usize = 1024 * 1024;
/// Most INSERTs answered as one group.
const GROUP_MAX: usize = 64;
/// How long a connection closed for a protocol error keeps draining its input.
const LINGER_AFTER_ERROR: Duration = Duration::from_millis(500);
/// Longest a write of queued responses may block when no idle timeout is configured.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle timer that is not configured sleeps this long (re-armed when it fires).
const NO_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What a connection needs from its server.
#[derive(Debug)]
pub struct ConnectionContext<H> {
    /// The request handler.
    pub handler: Arc<H>,
    /// Node-wide bound on requests executing at once.
    pub in_flight: Arc<Semaphore>,
    /// Node-wide budget of request bytes in flight: one permit per byte of every frame
    /// over the read chunk (16 KiB) from the moment its header is read until its answer is encoded.
    pub body_budget: Arc<Semaphore>,
    /// Frame cap after the handshake (header + body).
    pub max_frame_len: usize,
    /// Close a connection idle (nothing read, nothing in flight) this long.
    pub idle_timeout: Option<Duration>,
    /// Close a connection whose handshake has not succeeded this long after its accept.
    pub handshake_timeout: Duration,
    /// Name announced in the handshake response.
    pub server_name: String,
    /// Where each answered request is counted and timed.
    pub requests: Arc<RequestMetrics>,
    /// Who may make which request; the login exchange.
    pub auth: Arc<Authenticator>,
}

impl<H> Clone for ConnectionContext<H> {
    fn clone(&self) -> Self {
        ConnectionContext {
            handler: Arc::clone(&self.handler),
            in_flight: Arc::clone(&self.in_flight),
            body_budget: Arc::clone(&self.body_budget),
            max_frame_len: self.max_frame_len,
            idle_timeout: self.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            server_name: self.server_name.clone(),
            requests: Arc::clone(&self.requests),
            auth: Arc::clone(&self.auth),
        }
    }
}

/// An INSERT waiting for its group to run.
struct GroupedInsert {
    stream_id: u32,
    kind: RequestKind,
    started: Instant,
    insert: RowInsert,
    consistency: Option<Consistency>,
    _permits: RequestPermits,
}

/// What a request holds until its answer is encoded: its in-flight slot and, for a large
/// frame, its bytes of the request-data budget.
struct RequestPermits {
    _in_flight: OwnedSemaphorePermit,
    _body: Option<OwnedSemaphorePermit>,
}

/// Takes `len` bytes of the request-data budget; `None` if the budget is closed.
async fn take_budget(budget: Arc<Semaphore>, len: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(len).ok()?;
    budget.acquire_many_owned(n).await.ok()
}

/// The state of one connection.
pub struct Connection<H> {
    stream: TcpStream,
    peer: String,
    ctx: ConnectionContext<H>,
    codec: FrameCodec,
    inbuf: BytesMut,
    out: BytesMut,
    handshaken: bool,
    /// Handshaken and, on a node that requires it, authenticated: the frame cap is
    /// raised and the handshake deadline no longer applies.
    admitted: bool,
    /// The login state.
    session: Session,
    /// The client's address (failed logins are slowed per address).
    peer_ip: Option<IpAddr>,
    /// How long to wait before writing the answer to a failed login.
    auth_delay: Option<Duration>,
    /// The connection's place under the pending-handshake cap, given back on handshake.
    handshake_ticket: Option<Arc<HandshakeTicket>>,
    /// Set after a protocol error: write what is queued, then close.
    fatal: bool,
    /// Requests running on tasks of their own whose answers have not come back.
    pending: usize,
    tx: mpsc::UnboundedSender<Bytes>,
    rx: mpsc::UnboundedReceiver<Bytes>,
    /// Quick INSERTs decoded from the input and not yet run.
    group: Vec<GroupedInsert>,
    /// The budget taken for the large frame at the front of the input, until it is
    /// decoded and handed to its request.
    body_permit: Option<OwnedSemaphorePermit>,
}

impl<H: RequestHandler> Connection<H> {
    /// Wraps an accepted socket. `handshake_ticket`, if any, is held until the handshake
    /// succeeds (the server's cap on connections still in their handshake).
    pub fn new(
        stream: TcpStream,
        ctx: ConnectionContext<H>,
        handshake_ticket: Option<HandshakeTicket>,
    ) -> Connection<H> {
        let peer_addr = stream.peer_addr().ok();
        let peer = peer_addr.map_or_else(|| "?".to_owned(), |a| a.to_string());
        let (tx, rx) = mpsc::unbounded_channel();
        Connection {
            stream,
            peer,
            ctx,
            codec: FrameCodec::new(),
            // Allocated on first use: an idle or silent connection costs no buffers.
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            handshaken: false,
            admitted: false,
            session: Session::default(),
            peer_ip: peer_addr.map(|a| a.ip()),
            auth_delay: None,
            handshake_ticket: handshake_ticket.map(Arc::new),
            fatal: false,
            pending: 0,
            tx,
            rx,
            group: Vec::new(),
            body_permit: None,
        }
    }

    /// The length of the large frame at the front of the input when it is incomplete and
    /// has not got its budget yet: reading waits until it has.
    fn budget_needed(&self) -> Option<usize> {
        if self.body_permit.is_some() {
            return None;
        }
        self.codec
            .incomplete_frame_len(&self.inbuf)
            .filter(|&len| len > READ_CHUNK)
    }

    /// Serves the connection until the client leaves, a protocol error, the idle timeout
    /// or `shutdown` turning true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        tracing::debug!(peer = %self.peer, "connection opened");
        let idle = self.ctx.idle_timeout;
        let mut closing = *shutdown.borrow();
        let mut last_activity = Instant::now();
        let idle_timer = tokio::time::sleep(idle.unwrap_or(NO_IDLE_TIMEOUT));
        tokio::pin!(idle_timer);
        let handshake_timer = tokio::time::sleep(self.ctx.handshake_timeout);
        tokio::pin!(handshake_timer);
        // A clone outside `self` for the select below; `self`'s copy goes at the handshake.
        let ticket = self.handshake_ticket.clone();
        let evicted = async {
            match &ticket {
                Some(t) => t.evicted().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(evicted);
        loop {
            if let Some(delay) = self.auth_delay.take() {
                // A failed login's answer waits here, on this connection's task only
                // (nothing after it is read: the connection closes); shutdown cuts it.
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => {}
                }
            }
            if !self.flush().await {
                return;
            }
            if self.fatal || (closing && self.pending == 0) {
                break;
            }
            let need = self.budget_needed();
            if need.is_none() && self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK {
                self.inbuf.reserve(READ_CHUNK);
            }
            let budget = take_budget(Arc::clone(&self.ctx.body_budget), need.unwrap_or(0));
            tokio::select! {
                biased;
                Some(answer) = self.rx.recv(), if self.pending > 0 => {
                    self.take_answer(&answer);
                    while let Ok(more) = self.rx.try_recv() {
                        self.take_answer(&more);
                    }
                    last_activity = Instant::now();
                }
                _ = shutdown.changed(), if !closing => {
                    closing = true;
                }
                permit = budget, if need.is_some() && !closing => {
                    let Some(permit) = permit else { return };
                    // Accounted for; the buffer still grows only as the bytes arrive.
                    self.body_permit = Some(permit);
                }
                read = self.stream.read_buf(&mut self.inbuf), if !closing && need.is_none() => match read {
                    Ok(0) => closing = true,
                    Ok(_) => {
                        last_activity = Instant::now();
                        if !self.process_input().await {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = %e, "read failed");
                        return;
                    }
                },
                () = &mut handshake_timer, if !self.admitted && !closing => {
                    tracing::debug!(peer = %self.peer, "no handshake in time; closing");
                    break;
                }
                () = &mut evicted, if !self.admitted && !closing => {
                    tracing::debug!(peer = %self.peer, "evicted while in its handshake; closing");
                    break;
                }
                () = &mut idle_timer, if !closing => {
                    match idle {
                        Some(limit) if self.pending == 0 && last_activity.elapsed() >= limit => {
                            tracing::debug!(peer = %self.peer, "idle timeout");
                            break;
                        }
                        Some(limit) => {
                            let (next, now) = (last_activity + limit, Instant::now());
                            idle_timer.as_mut().reset(if next > now { next } else { now + limit });
                        }
                        None => idle_timer.as_mut().reset(Instant::now() + NO_IDLE_TIMEOUT),
                    }
                }
            }
        }
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
        if self.fatal {
            // Closing a socket with unread input makes the kernel send a reset, which can
            // destroy the error frame just written before the client reads it. Read and
            // discard what the client still sends, briefly, so it sees the error first.
            let mut sink = [0u8; 4096];
            let _ = tokio::time::timeout(LINGER_AFTER_ERROR, async {
                while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        tracing::debug!(peer = %self.peer, "connection closed");
    }

    fn take_answer(&mut self, answer: &[u8]) {
        self.pending = self.pending.saturating_sub(1);
        self.out.extend_from_slice(answer);
    }

    /// Writes what is queued; false when the socket failed.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        // A client that stops reading must not hold its slot and buffers forever: the
        // write gets a deadline (the idle timeout, else WRITE_TIMEOUT) and the connection
        // is dropped when it passes.
        let deadline = self.ctx.idle_timeout.unwrap_or(WRITE_TIMEOUT);
        match tokio::time::timeout(deadline, self.stream.write_all(&self.out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "write failed");
                return false;
            }
            Err(_) => {
                tracing::info!(peer = %self.peer, ?deadline, "client not reading its responses; closing");
                return false;
            }
        }
        self.out.clear();
        if self.out.capacity() > 4 * OUT_HIGH_WATER {
            self.out = BytesMut::with_capacity(READ_CHUNK);
        }
        true
    }

    /// Decodes and handles every complete frame in the input buffer; false when the
    /// socket failed.
    async fn process_input(&mut self) -> bool {
        while !self.fatal {
            if self.out.len() >= OUT_HIGH_WATER && !self.flush().await {
                return false;
            }
            match self.codec.decode(&mut self.inbuf) {
                Ok(Some(frame)) => {
                    // A permit taken for the front frame belongs to this one.
                    let body = self.body_permit.take();
                    self.handle_frame(frame, body);
                }
                Ok(None) => break,
                Err(e) => {
                    // A frame error: the header is unverified (bad checksum, or never
                    // checked because the frame is over the cap), so its stream id and
                    // opcode are not echoed (wire spec, section 1).
                    self.run_group();
                    self.protocol_error(
                        PROTOCOL_VERSION,
                        CONNECTION_ERROR_STREAM_ID,
                        CONNECTION_ERROR_OPCODE,
                        &e,
                    );
                }
            }
        }
        self.run_group();
        // Take the budget of an incomplete large frame now if it is free, before the
        // answers decoded so far are written (so a client that reads them knows it holds
        // its share), and without a wait when there is none.
        if let Some(len) = self.budget_needed() {
            if let Ok(n) = u32::try_from(len) {
                self.body_permit = Arc::clone(&self.ctx.body_budget)
                    .try_acquire_many_owned(n)
                    .ok();
            }
        }
        // A large frame's allocation is shared with its body until the request is done;
        // the buffer starts afresh rather than keep a large tail.
        if self.inbuf.is_empty() && self.inbuf.capacity() > 4 * READ_CHUNK {
            self.inbuf = BytesMut::new();
        }
        true
    }

    /// Runs the grouped INSERTs and queues their answers.
    fn run_group(&mut self) {
        if self.group.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        let handler = Arc::clone(&self.ctx.handler);
        let inserts: Vec<(&RowInsert, Option<Consistency>)> =
            group.iter().map(|g| (&g.insert, g.consistency)).collect();
        let results = handler.insert_group(&inserts);
        for (g, result) in group.iter().zip(results) {
            let outcome = match &result {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Failed(&e.kind),
            };
            self.ctx
                .requests
                .record(&g.kind, g.started.elapsed(), outcome);
            match result {
                Ok(()) => {
                    let frame = Frame {
                        version: PROTOCOL_VERSION,
                        flags: FLAG_RESPONSE,
                        opcode: Opcode::Insert.as_u8(),
                        stream_id: g.stream_id,
                        body: handler.written_body(),
                    };
                    let _ = frame.encode(&mut self.out, usize::MAX);
                }
                Err(e) => self.answer(g.stream_id, Opcode::Insert, &Response::Error(e)),
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame, body: Option<OwnedSemaphorePermit>) {
        let stream_id = frame.stream_id;
        let request = match Request::from_frame(&frame) {
            Ok(r) => r,
            Err(e) => {
                self.run_group();
                self.protocol_error(frame.version, stream_id, frame.opcode, &e);
                return;
            }
        };
        let opcode = request.opcode();
        let kind = self.ctx.requests.kind_of(&request);
        let started = Instant::now();
        if opcode != Opcode::Insert {
            // Answer the INSERTs decoded before this frame first.
            self.run_group();
        }
        if !self.handshaken {
            self.handshake(frame.version, stream_id, request);
            return;
        }
        match request {
            Request::Handshake { .. } => self.answer(
                stream_id,
                opcode,
                &Response::Error(ServerError::new(
                    ErrorKind::Invalid,
                    "the connection is already handshaken",
                )),
            ),
            Request::Ping => {
                self.answer(stream_id, opcode, &Response::Pong);
                self.ctx
                    .requests
                    .record(&kind, started.elapsed(), Outcome::Done);
            }
            Request::AuthStart { mechanism, message } => {
                let step = self.ctx.auth.start(&mut self.session, &mechanism, &message);
                self.auth_step(stream_id, opcode, step, (kind, started));
            }
            Request::AuthFinish { message } => {
                let step = self.ctx.auth.finish(&mut self.session, &message);
                self.auth_step(stream_id, opcode, step, (kind, started));
            }
            request => {
                if let Err(denied) = self.ctx.auth.authorize(&self.session, &request) {
                    self.ctx.requests.record(
                        &kind,
                        started.elapsed(),
                        Outcome::Failed(&denied.kind),
                    );
                    self.answer(stream_id, opcode, &Response::Error(denied));
                    return;
                }
                let Ok(permit) = self.ctx.in_flight.clone().try_acquire_owned() else {
                    let overloaded = ServerError::new(
                        ErrorKind::Overloaded,
                        "too many requests in flight on this node; retry later",
                    );
                    self.ctx.requests.record(
                        &kind,
                        started.elapsed(),
                        Outcome::Failed(&overloaded.kind),
                    );
                    self.answer(stream_id, opcode, &Response::Error(overloaded));
                    return;
                };
                let permits = RequestPermits {
                    _in_flight: permit,
                    _body: body,
                };
                match self.ctx.handler.start(request) {
                    Started::Ready(response) => {
                        self.answer(stream_id, opcode, &response);
                        self.ctx
                            .requests
                            .record(&kind, started.elapsed(), Outcome::of(&response));
                        drop(permits);
                    }
                    Started::Insert {
                        insert,
                        consistency,
                    } => {
                        self.group.push(GroupedInsert {
                            stream_id,
                            kind,
                            started,
                            insert,
                            consistency,
                            _permits: permits,
                        });
                        if self.group.len() >= GROUP_MAX {
                            self.run_group();
                        }
                    }
                    Started::Pending(answer) => {
                        let timing = (kind, started);
                        self.spawn_pending(stream_id, opcode, answer, permits, timing);
                    }
                }
            }
        }
    }

    /// Runs a pending answer on a task of its own; its encoded answer comes back through
    /// the connection's channel.
    fn spawn_pending(
        &mut self,
        stream_id: u32,
        opcode: Opcode,
        answer: H::Pending,
        permits: RequestPermits,
        (kind, started): (RequestKind, Instant),
    ) {
        let slot = AnswerSlot {
            tx: Some(self.tx.clone()),
            stream_id,
            opcode,
            max_frame_len: self.ctx.max_frame_len,
        };
        self.pending += 1;
        let requests = Arc::clone(&self.ctx.requests);
        // Owned by the connection: it counts the task and waits for its answer before it
        // closes (see the module documentation).
        tokio::spawn(async move {
            let response = answer.await;
            slot.fill(&response);
            requests.record(&kind, started.elapsed(), Outcome::of(&response));
            drop(permits);
        });
    }

    fn handshake(&mut self, frame_version: u8, stream_id: u32, request: Request) {
        let Request::Handshake { version, client } = request else {
            let e = ProtocolError::InvalidValue {
                what: "first frame",
                reason: "the first frame must be a HANDSHAKE".into(),
            };
            self.protocol_error(frame_version, stream_id, request.opcode().as_u8(), &e);
            return;
        };
        if !SUPPORTED_VERSIONS.contains(&version) {
            let e = ServerError::new(
                ErrorKind::UnsupportedVersion {
                    supported: SUPPORTED_VERSIONS.to_vec(),
                },
                format!("protocol version {version} is not supported"),
            );
            self.push_error(frame_version, stream_id, Opcode::Handshake.as_u8(), &e);
            self.fatal = true;
            return;
        }
        tracing::debug!(peer = %self.peer, client = %client, version, "handshake");
        let response = Response::Handshake {
            version,
            server: self.ctx.server_name.clone(),
            max_frame_len: u32::try_from(self.ctx.max_frame_len).unwrap_or(u32::MAX),
        };
        match response.to_frame_version(version, stream_id, Opcode::Handshake) {
            Ok(frame) => {
                if frame
                    .encode(&mut self.out, self.codec.max_frame_len())
                    .is_ok()
                {
                    self.handshaken = true;
                    if !self.ctx.auth.required() {
                        self.admit();
                    }
                } else {
                    self.fatal = true;
                }
            }
            Err(_) => self.fatal = true,
        }
    }

    /// The connection is through its handshake (and login, where required): it gives
    /// back its place among connections in their handshake and takes the full frame cap.
    fn admit(&mut self) {
        self.admitted = true;
        if let Some(ticket) = self.handshake_ticket.take() {
            ticket.release();
        }
        self.codec.set_max_frame_len(self.ctx.max_frame_len);
    }

    /// Answers a login step; a failure is answered after its delay and closes the
    /// connection.
    fn auth_step(
        &mut self,
        stream_id: u32,
        opcode: Opcode,
        step: Step,
        (kind, started): (RequestKind, Instant),
    ) {
        let response = match step {
            Step::Answer(response) => {
                if let Response::AuthOk { user, .. } = &response {
                    tracing::debug!(peer = %self.peer, user = %user, "authenticated");
                    if !self.admitted {
                        self.admit();
                    }
                }
                response
            }
            Step::Failed { user, reason } => {
                let (error, delay) = self.ctx.auth.failure(self.peer_ip, &user, &reason);
                self.auth_delay = Some(delay);
                self.fatal = true;
                Response::Error(error)
            }
        };
        self.ctx
            .requests
            .record(&kind, started.elapsed(), Outcome::of(&response));
        self.answer(stream_id, opcode, &response);
    }

    fn answer(&mut self, stream_id: u32, opcode: Opcode, response: &Response) {
        encode_response(
            &mut self.out,
            stream_id,
            opcode,
            response,
            self.ctx.max_frame_len,
        );
    }

    fn protocol_error(&mut self, version: u8, stream_id: u32, opcode: u8, e: &ProtocolError) {
        tracing::debug!(peer = %self.peer, error = %e, "protocol error; closing");
        let err = ServerError::new(ErrorKind::Protocol, e.to_string());
        self.ctx.requests.record_error(&err.kind);
        self.push_error(version, stream_id, opcode, &err);
        self.fatal = true;
    }

    /// Queues an error frame for any opcode byte (even one this build does not know).
    fn push_error(&mut self, version: u8, stream_id: u32, opcode: u8, err: &ServerError) {
        let body = Response::Error(err.clone())
            .encode_body()
            .unwrap_or_default();
        let frame = Frame {
            version,
            flags: FLAG_RESPONSE | FLAG_ERROR,
            opcode,
            stream_id,
            body,
        };
        let _ = frame.encode(&mut self.out, usize::MAX);
    }
}

/// Where a pending answer goes: the connection's channel, with the request's stream id
/// and opcode. Dropped unfilled (the task panicked or was cancelled) it answers a
/// `SERVER` error, so the client and the connection's count of pending answers are never
/// left waiting.
struct AnswerSlot {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    stream_id: u32,
    opcode: Opcode,
    max_frame_len: usize,
}

impl AnswerSlot {
    fn fill(mut self, response: &Response) {
        self.send(response);
    }

    fn send(&mut self, response: &Response) {
        if let Some(tx) = self.tx.take() {
            let mut buf = BytesMut::new();
            encode_response(
                &mut buf,
                self.stream_id,
                self.opcode,
                response,
                self.max_frame_len,
            );
            // The connection may be gone (protocol error, socket failure): nothing to do.
            let _ = tx.send(buf.freeze());
        }
    }
}

impl Drop for AnswerSlot {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.send(&Response::Error(ServerError::new(
                ErrorKind::Server,
                "the request was abandoned in the server; it may have been applied",
            )));
        }
    }
}

/// Appends the encoded answer to `out`. A response that cannot be framed (larger than the
/// cap) is replaced by a `SERVER` error saying so.
pub fn encode_response(
    out: &mut BytesMut,
    stream_id: u32,
    opcode: Opcode,
    response: &Response,
    max_frame_len: usize,
) {
    let encoded = response
        .to_frame(stream_id, opcode)
        .and_then(|f| f.encode(out, max_frame_len));
    if let Err(e) = encoded {
        tracing::warn!(error = %e, opcode = opcode.name(), "response could not be framed");
        let err = Response::Error(ServerError::new(
            ErrorKind::Server,
            format!("the response could not be framed: {e}"),
        ));
        if let Ok(f) = err.to_frame(stream_id, opcode) {
            let _ = f.encode(out, usize::MAX);
        }
    }
}
