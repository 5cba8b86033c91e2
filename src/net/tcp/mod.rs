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
//! connection's bounded writer queue. A malformed frame closes that connection only. A
//! handler that panics fails only its own request (an error frame `Handler`) or message
//! (dropped); the connection keeps serving.
//!
//! # Bounds
//! Per lane: `small_queue` / `bulk_queue` frames queued, `max_pending_calls` calls
//! waiting. Per accepted connection: `max_in_flight` requests, twice that answers queued.
//! At most `max_inbound` accepted connections. Frames are capped at
//! [`super::frame::MAX_BODY_BYTES`]. No room is reserved for a body on the word of its
//! header: a body takes memory as it arrives, and on accepted connections a frame over
//! the read buffer (64 KiB) first takes its length from the network's budget of request
//! data in flight (`max_request_data_in_flight`), held until its handler is done; a
//! connection whose frame does not fit is not read further until it does.
//!
//! # Tasks
//! Every task (acceptor, lanes, accepted connections, requests) is tracked and stopped by
//! [`TcpNetwork::shutdown`] (or by [`super::PeerNetwork::disconnect`] for one peer).
//! Locks (peer map, pending calls) are std mutexes held for a map operation, never across
//! an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::frame::{Frame, FrameKind, MAX_BODY_BYTES};
use super::handshake::{Hello, Lane, PEER_PROTOCOL_VERSION};
use super::{lane_for, BoxFuture, Family, Handlers, NetError, PeerHandler, PeerNetwork};
use crate::ring::NodeId;
use inbound::accept_loop;
use outbound::lane_task;

mod conn;
mod inbound;
mod outbound;

/// Largest coalesced write: frames queued together are copied into one buffer up to this
/// size (64 KiB: a few hundred small messages per syscall; bigger bodies are written
/// straight from their buffer).
pub const COALESCE_BYTES: usize = 64 << 10;
/// Read buffer per connection.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// Default [`TcpOptions::max_request_data_in_flight`]: 128 MiB, as on the client port.
pub const DEFAULT_PEER_REQUEST_DATA_IN_FLIGHT: usize = 128 << 20;

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
    /// Bytes of frames over 64 KiB read on accepted connections and not yet handled, all
    /// connections together (raised to the largest frame if lower).
    pub max_request_data_in_flight: usize,
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
            max_request_data_in_flight: DEFAULT_PEER_REQUEST_DATA_IN_FLIGHT,
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
    /// Budget of request bytes in flight on accepted connections (one permit a byte).
    request_data: Arc<tokio::sync::Semaphore>,
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
    /// The node that last shook hands on this lane (its welcome's id).
    remote: Mutex<Option<NodeId>>,
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

/// A call's entry in its lane's pending map, removed when the call ends (answered, timed
/// out, or its future dropped by a caller that stopped waiting), so the map holds only
/// calls someone still waits for.
struct PendingCall {
    out: Arc<Outbound>,
    stream: u32,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        lock(&self.out.pending).remove(&self.stream);
    }
}

impl TcpNetwork {
    /// Listens on `addr` (port 0 picks a free one) and starts accepting peers. Must run
    /// inside a tokio runtime.
    pub async fn bind(addr: SocketAddr, opts: TcpOptions) -> std::io::Result<TcpNetwork> {
        let request_data = opts.max_request_data_in_flight.clamp(
            super::frame::HEADER_BYTES + super::frame::MAX_BODY_BYTES,
            tokio::sync::Semaphore::MAX_PERMITS,
        );
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
            request_data: Arc::new(tokio::sync::Semaphore::new(request_data)),
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

    /// Starts a call on lane `out` (the half of [`PeerNetwork::call`] after the lane
    /// lookup).
    fn call_on(
        &self,
        out: Arc<Outbound>,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        let started = Instant::now();
        let to = out.addr;
        let prepared = (|| {
            out.check_backoff()?;
            check_size(&body)?;
            let (tx, rx) = oneshot::channel();
            let stream = {
                let mut pending = lock(&out.pending);
                if pending.len() >= out.max_pending {
                    return Err(NetError::Overloaded {
                        addr: to,
                        what: "calls waiting for an answer",
                    });
                }
                // Non-zero and not outstanding (ids wrap after 2^32 calls).
                let mut id = out.next_stream.fetch_add(1, Ordering::Relaxed);
                while id == 0 || pending.contains_key(&id) {
                    id = out.next_stream.fetch_add(1, Ordering::Relaxed);
                }
                pending.insert(id, tx);
                id
            };
            let frame = Frame {
                family,
                kind: FrameKind::Request,
                stream,
                body,
            };
            if let Err(e) = out.queue.try_send(frame) {
                lock(&out.pending).remove(&stream);
                return Err(self.queue_error(to, e));
            }
            Ok((PendingCall { out, stream }, rx))
        })();
        Box::pin(async move {
            // Held to the end: the entry goes however the call ends (answer, timeout, or
            // the caller dropping this future).
            let (_pending, rx) = prepared?;
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(NetError::Closed),
                Err(_) => Err(NetError::Timeout {
                    addr: to,
                    after: deadline.saturating_duration_since(started),
                }),
            }
        })
    }

    /// The error of a frame the lane's queue refused: `Closed` only when this network
    /// was shut down; a lane stopped by `disconnect` (a call racing it) is `Unreachable`.
    fn queue_error(&self, to: SocketAddr, e: mpsc::error::TrySendError<Frame>) -> NetError {
        match e {
            mpsc::error::TrySendError::Full(_) => NetError::Overloaded {
                addr: to,
                what: "outbound queue",
            },
            mpsc::error::TrySendError::Closed(_) if self.inner.closed.load(Ordering::SeqCst) => {
                NetError::Closed
            }
            mpsc::error::TrySendError::Closed(_) => NetError::Unreachable {
                addr: to,
                reason: "connection closed (peer departed)".into(),
            },
        }
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
                remote: Mutex::new(None),
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
        match self.outbound(to, lane_for(family, body.len())) {
            Ok(out) => self.call_on(out, family, body, deadline),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn call_node(
        &self,
        to: SocketAddr,
        node: NodeId,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        let out = match self.outbound(to, lane_for(family, body.len())) {
            Ok(out) => out,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let wrong = move |out: &Outbound| match *lock(&out.remote) {
            Some(found) if found != node => Err(NetError::WrongNode {
                addr: to,
                expected: node,
                found,
            }),
            _ => Ok(()),
        };
        if let Err(e) = wrong(&out) {
            return Box::pin(async move { Err(e) });
        }
        let call = self.call_on(Arc::clone(&out), family, body, deadline);
        Box::pin(async move {
            let answer = call.await?;
            // The lane may have reconnected to whoever holds the address now.
            wrong(&out)?;
            Ok(answer)
        })
    }

    fn send(&self, to: SocketAddr, family: Family, body: Bytes) -> Result<(), NetError> {
        let out = self.outbound(to, lane_for(family, body.len()))?;
        out.check_backoff()?;
        check_size(&body)?;
        let frame = Frame {
            family,
            kind: FrameKind::OneWay,
            stream: 0,
            body,
        };
        out.queue
            .try_send(frame)
            .map_err(|e| self.queue_error(to, e))
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

/// Refuses a body larger than a frame may carry.
fn check_size(body: &Bytes) -> Result<(), NetError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(NetError::TooLarge {
            len: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_request_data;
