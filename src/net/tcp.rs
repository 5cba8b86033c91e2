//! [`TcpNetwork`]: the peer network over TCP on tokio.
//!
//! Per peer, two outbound lanes ([`Lane::Small`], [`Lane::Bulk`]), each one connection
//! opened on first use and multiplexed: every request gets a stream id and its answer may
//! come back in any order. A lane is one task: it waits for the first queued frame,
//! connects, shakes hands, then writes frames from its bounded queue (coalescing what is
//! queued into one write of up to [`COALESCE_BYTES`]) while it reads answers and
//! completes the pending calls. A connection that breaks fails its pending calls
//! `Unreachable`; the next frame reconnects. A failed connect puts the lane in backoff
//! (doubling from `backoff_min` to `backoff_max`), during which calls and sends to the
//! peer fail at once instead of queueing.
//!
//! Accepted connections read requests and one-way frames: a request runs as its own task
//! (at most `max_in_flight` per connection, `Overloaded` beyond), a one-way message is
//! handed to its handler before the next frame is read. Answers go back through the
//! connection's bounded writer queue. A malformed frame closes that connection only.
//!
//! # Bounds
//! Per lane: `small_queue` / `bulk_queue` frames queued, `max_pending_calls` calls
//! waiting. Per accepted connection: `max_in_flight` requests, twice that answers queued.
//! At most `max_inbound` accepted connections. Frames are capped at
//! [`super::frame::MAX_BODY_BYTES`].
//!
//! # Tasks
//! Every task (acceptor, lanes, accepted connections, requests) is tracked and stopped by
//! [`TcpNetwork::shutdown`] (or by [`super::PeerNetwork::disconnect`] for one peer).
//! Locks (peer map, pending calls) are std mutexes held for a map operation, never across
//! an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::frame::{
    decode_error_body, ErrorCode, Frame, FrameError, FrameHeader, FrameKind, HEADER_BYTES,
};
use super::handshake::{
    HandshakeError, HandshakeStatus, Hello, Lane, Welcome, PEER_PROTOCOL_VERSION,
};
use super::{lane_for, BoxFuture, Family, Handlers, NetError, PeerHandler, PeerInfo, PeerNetwork};
use crate::ring::NodeId;

/// Largest coalesced write: frames queued together are copied into one buffer up to this
/// size (64 KiB: a few hundred small messages per syscall; bigger bodies are written
/// straight from their buffer).
pub const COALESCE_BYTES: usize = 64 << 10;
/// Read buffer per connection.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// Tuning of a [`TcpNetwork`]; [`TcpOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// Cluster name sent in every handshake; peers of another cluster are refused.
    pub cluster_name: String,
    /// This node's id.
    pub node: NodeId,
    /// Frames queued per small lane before `send`/`call` answer `Overloaded`.
    pub small_queue: usize,
    /// Frames queued per bulk lane.
    pub bulk_queue: usize,
    /// Calls waiting for an answer per lane.
    pub max_pending_calls: usize,
    /// Requests handled at once per accepted connection.
    pub max_in_flight: usize,
    /// Accepted connections at once.
    pub max_inbound: usize,
    /// Time to open a TCP connection.
    pub connect_timeout: Duration,
    /// Time for a handshake, each side.
    pub handshake_timeout: Duration,
    /// First reconnect backoff.
    pub backoff_min: Duration,
    /// Longest reconnect backoff.
    pub backoff_max: Duration,
    /// Peer protocol version spoken (tests of mixed versions change it).
    pub version: u8,
}

impl TcpOptions {
    /// Defaults for `node` of `cluster_name`.
    pub fn new(cluster_name: &str, node: NodeId) -> TcpOptions {
        TcpOptions {
            cluster_name: cluster_name.to_owned(),
            node,
            small_queue: 4096,
            bulk_queue: 64,
            max_pending_calls: 8192,
            max_in_flight: 1024,
            max_inbound: 1024,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            // Cassandra's reconnect backoff tops out in seconds; 5 s keeps a restarted
            // peer reachable soon after it is back.
            backoff_max: Duration::from_secs(5),
            version: PEER_PROTOCOL_VERSION,
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes, NetError>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The peer network over TCP. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TcpNetwork {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: TcpOptions,
    local: SocketAddr,
    handlers: Handlers,
    /// Outbound peers: a snapshot read without a lock on every message, replaced whole
    /// (under `peers_write`) when a peer is added or removed.
    peers: ArcSwap<BTreeMap<SocketAddr, Arc<Peer>>>,
    peers_write: Mutex<()>,
    inbound: Mutex<HashMap<u64, InboundEntry>>,
    next_conn: AtomicU64,
    closed: AtomicBool,
    cancel: CancellationToken,
    tracker: TaskTracker,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug)]
struct InboundEntry {
    peer: SocketAddr,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct Peer {
    small: Arc<Outbound>,
    bulk: Arc<Outbound>,
    cancel: CancellationToken,
}

/// One outbound lane to one peer.
#[derive(Debug)]
struct Outbound {
    addr: SocketAddr,
    lane: Lane,
    queue: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u32, Reply>>,
    max_pending: usize,
    next_stream: AtomicU32,
    backoff_until: Mutex<Option<Instant>>,
    connected: AtomicBool,
}

impl Outbound {
    fn check_backoff(&self) -> Result<(), NetError> {
        match *lock(&self.backoff_until) {
            Some(until) if Instant::now() < until => Err(NetError::Unreachable {
                addr: self.addr,
                reason: "reconnecting after a failed connect (backoff)".into(),
            }),
            _ => Ok(()),
        }
    }

    fn fail_pending(&self, err: &NetError) {
        let drained: Vec<Reply> = lock(&self.pending).drain().map(|(_, r)| r).collect();
        for r in drained {
            let _ = r.send(Err(err.clone()));
        }
    }
}

impl TcpNetwork {
    /// Listens on `addr` (port 0 picks a free one) and starts accepting peers. Must run
    /// inside a tokio runtime.
    pub async fn bind(addr: SocketAddr, opts: TcpOptions) -> std::io::Result<TcpNetwork> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let inner = Arc::new(Inner {
            opts,
            local,
            handlers: Handlers::default(),
            peers: ArcSwap::from_pointee(BTreeMap::new()),
            peers_write: Mutex::new(()),
            inbound: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        });
        let acceptor = accept_loop(inner.clone(), listener);
        inner.tracker.spawn(acceptor);
        Ok(TcpNetwork { inner })
    }

    /// Accepted connections open from `peer` (its listen address), for tests and metrics.
    pub fn inbound_from(&self, peer: SocketAddr) -> usize {
        lock(&self.inner.inbound)
            .values()
            .filter(|e| e.peer == peer)
            .count()
    }

    /// Outbound lanes to `peer` currently connected (0, 1 or 2).
    pub fn outbound_to(&self, peer: SocketAddr) -> usize {
        self.inner.peers.load().get(&peer).map_or(0, |p| {
            [&p.small, &p.bulk]
                .iter()
                .filter(|o| o.connected.load(Ordering::SeqCst))
                .count()
        })
    }

    fn outbound(&self, to: SocketAddr, lane: Lane) -> Result<Arc<Outbound>, NetError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(NetError::Closed);
        }
        let known = self.inner.peers.load().get(&to).cloned();
        let peer = match known {
            Some(p) => p,
            None => {
                let _w = lock(&self.inner.peers_write);
                match self.inner.peers.load().get(&to) {
                    Some(p) => p.clone(),
                    None => {
                        let p = Arc::new(self.inner.start_peer(to));
                        let mut map = BTreeMap::clone(&self.inner.peers.load());
                        map.insert(to, p.clone());
                        self.inner.peers.store(Arc::new(map));
                        p
                    }
                }
            }
        };
        Ok(match lane {
            Lane::Small => peer.small.clone(),
            Lane::Bulk => peer.bulk.clone(),
        })
    }
}

impl Inner {
    fn start_peer(self: &Arc<Self>, addr: SocketAddr) -> Peer {
        let cancel = self.cancel.child_token();
        let lane = |lane: Lane, cap: usize| {
            let (tx, rx) = mpsc::channel(cap.max(1));
            let out = Arc::new(Outbound {
                addr,
                lane,
                queue: tx,
                pending: Mutex::new(HashMap::new()),
                max_pending: self.opts.max_pending_calls,
                next_stream: AtomicU32::new(1),
                backoff_until: Mutex::new(None),
                connected: AtomicBool::new(false),
            });
            let task = lane_task(self.clone(), out.clone(), rx, cancel.clone());
            self.tracker.spawn_on(task, &self.runtime);
            out
        };
        let small = lane(Lane::Small, self.opts.small_queue);
        let bulk = lane(Lane::Bulk, self.opts.bulk_queue);
        Peer {
            small,
            bulk,
            cancel,
        }
    }

    fn hello(&self, lane: Lane) -> Hello {
        Hello {
            version: self.opts.version,
            lane,
            node: self.opts.node,
            listen: self.local,
            cluster: self.opts.cluster_name.clone(),
        }
    }
}

impl PeerNetwork for TcpNetwork {
    fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    fn local_node(&self) -> NodeId {
        self.inner.opts.node
    }

    fn call(
        &self,
        to: SocketAddr,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        let started = Instant::now();
        let prepared = (|| {
            let out = self.outbound(to, lane_for(family, body.len()))?;
            out.check_backoff()?;
            let stream = out.next_stream.fetch_add(1, Ordering::Relaxed).max(1);
            let frame = Frame::new(family, FrameKind::Request, stream, body).map_err(too_large)?;
            let (tx, rx) = oneshot::channel();
            {
                let mut pending = lock(&out.pending);
                if pending.len() >= out.max_pending {
                    return Err(NetError::Overloaded {
                        addr: to,
                        what: "calls waiting for an answer",
                    });
                }
                pending.insert(stream, tx);
            }
            if let Err(e) = out.queue.try_send(frame) {
                lock(&out.pending).remove(&stream);
                return Err(match e {
                    mpsc::error::TrySendError::Full(_) => NetError::Overloaded {
                        addr: to,
                        what: "outbound queue",
                    },
                    mpsc::error::TrySendError::Closed(_) => NetError::Closed,
                });
            }
            Ok((out, stream, rx))
        })();
        Box::pin(async move {
            let (out, stream, rx) = prepared?;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(NetError::Closed),
                Err(_) => {
                    lock(&out.pending).remove(&stream);
                    Err(NetError::Timeout {
                        addr: to,
                        after: deadline.saturating_duration_since(started),
                    })
                }
            }
        })
    }

    fn send(&self, to: SocketAddr, family: Family, body: Bytes) -> Result<(), NetError> {
        let out = self.outbound(to, lane_for(family, body.len()))?;
        out.check_backoff()?;
        let frame = Frame::new(family, FrameKind::OneWay, 0, body).map_err(too_large)?;
        out.queue.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::Overloaded {
                addr: to,
                what: "outbound queue",
            },
            mpsc::error::TrySendError::Closed(_) => NetError::Closed,
        })
    }

    fn register(&self, family: Family, handler: Arc<dyn PeerHandler>) -> Result<(), NetError> {
        self.inner.handlers.register(family, handler)
    }

    fn disconnect(&self, peer: SocketAddr) {
        let removed = {
            let _w = lock(&self.inner.peers_write);
            let mut map = BTreeMap::clone(&self.inner.peers.load());
            let removed = map.remove(&peer);
            self.inner.peers.store(Arc::new(map));
            removed
        };
        if let Some(p) = removed {
            p.cancel.cancel();
        }
        for e in lock(&self.inner.inbound).values() {
            if e.peer == peer {
                e.cancel.cancel();
            }
        }
        debug!(%peer, "peer connections closed");
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.closed.store(true, Ordering::SeqCst);
            inner.cancel.cancel();
            inner.tracker.close();
            inner.tracker.wait().await;
            let _w = lock(&inner.peers_write);
            inner.peers.store(Arc::new(BTreeMap::new()));
        })
    }
}

fn too_large(e: FrameError) -> NetError {
    match e {
        FrameError::TooLarge { len, max } => NetError::TooLarge { len, max },
        other => NetError::Unreachable {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            reason: other.to_string(),
        },
    }
}

/// Drives one outbound lane until cancelled.
async fn lane_task(
    inner: Arc<Inner>,
    out: Arc<Outbound>,
    mut rx: mpsc::Receiver<Frame>,
    cancel: CancellationToken,
) {
    let mut attempt: u32 = 0;
    loop {
        let first = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            f = rx.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        let connected = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            c = connect(&inner, &out) => c,
        };
        match connected {
            Ok(stream) => {
                attempt = 0;
                *lock(&out.backoff_until) = None;
                out.connected.store(true, Ordering::SeqCst);
                let reason = run_outbound(&out, stream, first, &mut rx, &cancel).await;
                out.connected.store(false, Ordering::SeqCst);
                debug!(peer = %out.addr, lane = ?out.lane, %reason, "peer connection closed");
                out.fail_pending(&NetError::Unreachable {
                    addr: out.addr,
                    reason: format!("connection lost: {reason}"),
                });
            }
            Err(err) => {
                let backoff = backoff(&inner.opts, attempt);
                attempt = attempt.saturating_add(1);
                *lock(&out.backoff_until) = Some(Instant::now() + backoff);
                debug!(peer = %out.addr, lane = ?out.lane, error = %err, ?backoff, "cannot connect to peer");
                drop(first);
                while rx.try_recv().is_ok() {}
                out.fail_pending(&err);
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
    out.connected.store(false, Ordering::SeqCst);
    out.fail_pending(&NetError::Unreachable {
        addr: out.addr,
        reason: "connection closed (peer departed or network shut down)".into(),
    });
}

fn backoff(opts: &TcpOptions, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    opts.backoff_min
        .saturating_mul(factor)
        .min(opts.backoff_max)
}

/// Connects and shakes hands; a refusal is logged here and returned as `Refused`.
async fn connect(inner: &Inner, out: &Outbound) -> Result<TcpStream, NetError> {
    let addr = out.addr;
    let unreachable = |reason: String| NetError::Unreachable { addr, reason };
    let mut stream = tokio::time::timeout(inner.opts.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let hello = inner.hello(out.lane).encode();
    let welcome = tokio::time::timeout(inner.opts.handshake_timeout, async {
        super::handshake::write_all(&mut stream, &hello).await?;
        Welcome::read(&mut stream).await
    })
    .await
    .map_err(|_| unreachable("handshake timed out".into()))?
    .map_err(|e| unreachable(format!("handshake: {e}")))?;
    if welcome.status != HandshakeStatus::Accepted {
        warn!(
            peer = %addr,
            status = ?welcome.status,
            peer_cluster = %welcome.cluster,
            peer_version = welcome.version,
            reason = %welcome.reason,
            "peer refused our handshake"
        );
        return Err(NetError::Refused {
            addr,
            reason: welcome.reason,
        });
    }
    Ok(stream)
}

/// Runs a connected lane until it breaks or is cancelled; returns why it ended.
/// Aborts a connection's helper task when the connection's own task ends.
struct AbortOnDrop(tokio::task::JoinHandle<String>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reader runs as a task of its own, so answers are read while the lane task
/// writes (on a multi-thread runtime, in parallel); it ends with the lane task.
async fn run_outbound(
    out: &Arc<Outbound>,
    stream: TcpStream,
    first: Frame,
    rx: &mut mpsc::Receiver<Frame>,
    cancel: &CancellationToken,
) -> String {
    let (read, mut write) = stream.into_split();
    let reader_out = out.clone();
    let mut reader = AbortOnDrop(tokio::spawn(async move {
        read_answers(&reader_out, &mut FrameReader::new(read)).await
    }));
    tokio::select! {
        biased;
        _ = cancel.cancelled() => "closed".into(),
        r = write_frames(&mut write, rx, Some(first)) => match r {
            Ok(()) => "queue closed".into(),
            Err(e) => format!("write: {e}"),
        },
        r = &mut reader.0 => r.unwrap_or_else(|e| format!("reader task: {e}")),
    }
}

/// Writes frames from `rx`, coalescing what is queued at once into one write.
async fn write_frames(
    w: &mut OwnedWriteHalf,
    rx: &mut mpsc::Receiver<Frame>,
    mut first: Option<Frame>,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(COALESCE_BYTES);
    loop {
        let frame = match first.take() {
            Some(f) => f,
            None => match rx.recv().await {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        push_frame(w, &mut buf, &frame).await?;
        while buf.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(f) => push_frame(w, &mut buf, &f).await?,
                Err(_) => break,
            }
        }
        if !buf.is_empty() {
            w.write_all(&buf).await?;
            buf.clear();
        }
    }
}

async fn push_frame(
    w: &mut OwnedWriteHalf,
    buf: &mut Vec<u8>,
    frame: &Frame,
) -> std::io::Result<()> {
    buf.extend_from_slice(&frame.header());
    if buf.len() + frame.body.len() <= COALESCE_BYTES {
        buf.extend_from_slice(&frame.body);
    } else {
        w.write_all(buf).await?;
        buf.clear();
        w.write_all(&frame.body).await?;
    }
    Ok(())
}

/// Reads frames from one connection into a growing buffer; each body is split off the
/// buffer without a copy.
struct FrameReader {
    r: OwnedReadHalf,
    buf: BytesMut,
}

impl FrameReader {
    fn new(r: OwnedReadHalf) -> FrameReader {
        FrameReader {
            r,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream. The header is checked
    /// (length cap included) before room for the body is reserved.
    async fn next(&mut self) -> Result<Option<(FrameHeader, Bytes)>, String> {
        loop {
            if let Some(head) = self.buf.get(..HEADER_BYTES) {
                let head: [u8; HEADER_BYTES] = head.try_into().unwrap_or([0; HEADER_BYTES]);
                let h = FrameHeader::decode(&head).map_err(|e| format!("malformed frame: {e}"))?;
                let total = HEADER_BYTES + h.len as usize;
                if self.buf.len() >= total {
                    let mut frame = self.buf.split_to(total);
                    let body = frame.split_off(HEADER_BYTES).freeze();
                    h.verify(&head, &body)
                        .map_err(|e| format!("malformed frame: {e}"))?;
                    return Ok(Some((h, body)));
                }
                self.buf.reserve(total - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < HEADER_BYTES {
                self.buf.reserve(READ_BUFFER_BYTES);
            }
            let n = self
                .r
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err("read: connection closed inside a frame".into())
                };
            }
        }
    }
}

/// Reads answers on an outbound connection and completes their calls.
async fn read_answers(out: &Outbound, r: &mut FrameReader) -> String {
    loop {
        let (h, body) = match r.next().await {
            Ok(Some(f)) => f,
            Ok(None) => return "peer closed the connection".into(),
            Err(e) => {
                if e.starts_with("malformed") {
                    warn!(peer = %out.addr, error = %e, "malformed answer; closing the connection");
                }
                return e;
            }
        };
        let answer = match h.kind {
            FrameKind::Response => Ok(body),
            FrameKind::Error => Err(match decode_error_body(&body) {
                Ok((ErrorCode::Overloaded, _)) => NetError::Overloaded {
                    addr: out.addr,
                    what: "requests in flight at the peer",
                },
                Ok((ErrorCode::NoHandler, _)) => NetError::NoHandler {
                    addr: out.addr,
                    family: h.family,
                },
                Ok((ErrorCode::Handler, message)) => NetError::Remote {
                    addr: out.addr,
                    message,
                },
                Err(e) => {
                    warn!(peer = %out.addr, error = %e, "malformed error frame; closing the connection");
                    return format!("malformed frame: {e}");
                }
            }),
            FrameKind::Request | FrameKind::OneWay => {
                warn!(peer = %out.addr, kind = ?h.kind, "peer sent a request on our outbound connection; closing it");
                return "protocol violation".into();
            }
        };
        // An unknown stream is a call that already timed out: its answer is dropped.
        let reply = lock(&out.pending).remove(&h.stream);
        if let Some(reply) = reply {
            let _ = reply.send(answer);
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::SeqCst) >= inner.opts.max_inbound {
            warn!(%remote, limit = inner.opts.max_inbound, "too many peer connections; refusing one");
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let task = {
            let inner = inner.clone();
            let open = open.clone();
            async move {
                serve_inbound(&inner, stream, remote).await;
                open.fetch_sub(1, Ordering::SeqCst);
            }
        };
        inner.tracker.spawn(task);
    }
}

/// The welcome refusing `hello` (or the lack of one), if it must be refused.
fn refusal(inner: &Inner, hello: &Result<Hello, HandshakeError>) -> Option<Welcome> {
    let (status, reason) = match hello {
        Ok(h) if h.cluster == inner.opts.cluster_name => return None,
        Ok(h) => (
            HandshakeStatus::OtherCluster,
            format!(
                "node {} belongs to cluster {:?}, the connecting node {} to {:?}",
                inner.opts.node, inner.opts.cluster_name, h.node, h.cluster
            ),
        ),
        Err(HandshakeError::OtherVersion { got, ours }) => (
            HandshakeStatus::OtherVersion,
            format!(
                "node {} speaks peer protocol version {ours}, the connecting node {got}",
                inner.opts.node
            ),
        ),
        Err(e) => (HandshakeStatus::Malformed, format!("bad handshake: {e}")),
    };
    Some(Welcome {
        version: inner.opts.version,
        status,
        node: inner.opts.node,
        cluster: inner.opts.cluster_name.clone(),
        reason,
    })
}

async fn serve_inbound(inner: &Arc<Inner>, mut stream: TcpStream, remote: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let hello = match tokio::time::timeout(
        inner.opts.handshake_timeout,
        Hello::read(&mut stream, inner.opts.version),
    )
    .await
    {
        Ok(h) => h,
        Err(_) => {
            debug!(%remote, "peer handshake timed out");
            return;
        }
    };
    if let Some(welcome) = refusal(inner, &hello) {
        warn!(%remote, status = ?welcome.status, reason = %welcome.reason, "refused a peer handshake");
        let _ = tokio::time::timeout(
            inner.opts.handshake_timeout,
            super::handshake::write_all(&mut stream, &welcome.encode()),
        )
        .await;
        return;
    }
    let Ok(hello) = hello else { return };
    let welcome = Welcome {
        version: inner.opts.version,
        status: HandshakeStatus::Accepted,
        node: inner.opts.node,
        cluster: inner.opts.cluster_name.clone(),
        reason: String::new(),
    };
    if super::handshake::write_all(&mut stream, &welcome.encode())
        .await
        .is_err()
    {
        return;
    }
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let cancel = inner.cancel.child_token();
    lock(&inner.inbound).insert(
        id,
        InboundEntry {
            peer: hello.listen,
            cancel: cancel.clone(),
        },
    );
    let from = PeerInfo {
        node: hello.node,
        addr: hello.listen,
    };
    debug!(peer = %from.addr, node = %from.node, lane = ?hello.lane, "peer connected");
    let reason = run_inbound(inner, stream, from, &cancel).await;
    cancel.cancel();
    lock(&inner.inbound).remove(&id);
    debug!(peer = %from.addr, %reason, "peer connection ended");
}

/// One running request of a connection; counted down when its task ends.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The frame answering request `h` with a handler's result.
fn answer_frame(h: &FrameHeader, result: Result<Bytes, super::HandlerError>) -> Frame {
    match result {
        Ok(body) => Frame::new(h.family, FrameKind::Response, h.stream, body).unwrap_or_else(|e| {
            Frame::error(h.family, h.stream, ErrorCode::Handler, &e.to_string())
        }),
        Err(e) => Frame::error(h.family, h.stream, ErrorCode::Handler, &e.message),
    }
}

async fn run_inbound(
    inner: &Arc<Inner>,
    stream: TcpStream,
    from: PeerInfo,
    cancel: &CancellationToken,
) -> String {
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read);
    let in_flight = inner.opts.max_in_flight.max(1);
    let (tx, mut rx) = mpsc::channel::<Frame>(in_flight * 2);
    // Requests whose handler is still running (those answered at once never count).
    let running = Arc::new(AtomicUsize::new(0));
    let read_loop = async {
        loop {
            let (h, body) = match reader.next().await {
                Ok(Some(f)) => f,
                Ok(None) => return "peer closed the connection".to_string(),
                Err(e) => {
                    if e.starts_with("malformed") {
                        warn!(peer = %from.addr, error = %e, "malformed peer frame; closing the connection");
                    }
                    return e;
                }
            };
            match h.kind {
                FrameKind::OneWay => match inner.handlers.get(h.family) {
                    Some(handler) => handler.message(from, body).await,
                    None => {
                        debug!(peer = %from.addr, family = ?h.family, "no handler; one-way message dropped")
                    }
                },
                FrameKind::Request => {
                    let Some(handler) = inner.handlers.get(h.family).cloned() else {
                        let _ = tx.try_send(Frame::error(
                            h.family,
                            h.stream,
                            ErrorCode::NoHandler,
                            "no handler",
                        ));
                        continue;
                    };
                    if running.load(Ordering::Acquire) >= in_flight {
                        let _ = tx.try_send(Frame::error(
                            h.family,
                            h.stream,
                            ErrorCode::Overloaded,
                            "too many requests in flight",
                        ));
                        continue;
                    }
                    // Fast path: a handler that answers without waiting (most small
                    // requests) is answered here, without a task of its own. A pending
                    // future is moved into a task, whose polls register real wakers.
                    let mut answer = handler.request(from, body);
                    let ready = answer
                        .as_mut()
                        .poll(&mut Context::from_waker(Waker::noop()));
                    if let Poll::Ready(result) = ready {
                        if tx.send(answer_frame(&h, result)).await.is_err() {
                            return "closed".to_string();
                        }
                        continue;
                    }
                    running.fetch_add(1, Ordering::AcqRel);
                    let slot = Running(running.clone());
                    let tx = tx.clone();
                    let cancel = cancel.clone();
                    inner.tracker.spawn(async move {
                        let _slot = slot;
                        let result = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => return,
                            a = answer => a,
                        };
                        let _ = tx.send(answer_frame(&h, result)).await;
                    });
                }
                FrameKind::Response | FrameKind::Error => {
                    warn!(peer = %from.addr, kind = ?h.kind, "answer on an inbound connection; closing it");
                    return "protocol violation".to_string();
                }
            }
        }
    };
    // The writer runs as a task of its own, so answers are written while requests are
    // read; it ends with the connection's task.
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        match write_frames(&mut write, &mut rx, None).await {
            Ok(()) => "closed".to_string(),
            Err(e) => format!("write: {e}"),
        }
    }));
    tokio::select! {
        biased;
        _ = cancel.cancelled() => "closed".to_string(),
        r = read_loop => r,
        r = &mut writer.0 => r.unwrap_or_else(|e| format!("writer task: {e}")),
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
