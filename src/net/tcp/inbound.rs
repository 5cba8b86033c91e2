//! The accepting side of a [`super::TcpNetwork`]: the acceptor, the handshake check, and
//! per accepted connection a reader that dispatches requests and one-way messages to
//! their handlers and a writer task for the answers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::conn::{write_frames, FrameReader};
use super::outbound::AbortOnDrop;
use super::{lock, InboundEntry, Inner};
use crate::net::frame::{ErrorCode, Frame, FrameHeader, FrameKind};
use crate::net::handshake::{self, HandshakeError, HandshakeStatus, Hello, Welcome};
use crate::net::unwind::{call_catching, CatchUnwind};
use crate::net::{HandlerError, PeerInfo};

pub(super) async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
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
            // Counted down however the connection's task ends.
            let slot = Running(open.clone());
            async move {
                let _slot = slot;
                serve_inbound(&inner, stream, remote).await;
            }
        };
        inner.tracker.spawn(task);
    }
}

/// The welcome refusing `hello` (or the lack of one), if it must be refused.
pub(super) fn refusal(inner: &Inner, hello: &Result<Hello, HandshakeError>) -> Option<Welcome> {
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

pub(super) async fn serve_inbound(inner: &Arc<Inner>, mut stream: TcpStream, remote: SocketAddr) {
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
            handshake::write_all(&mut stream, &welcome.encode()),
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
    if handshake::write_all(&mut stream, &welcome.encode())
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
    let _entry = InboundGuard { inner, id };
    let from = PeerInfo {
        node: hello.node,
        addr: hello.listen,
    };
    debug!(peer = %from.addr, node = %from.node, lane = ?hello.lane, "peer connected");
    let reason = run_inbound(inner, stream, from, &cancel).await;
    cancel.cancel();
    debug!(peer = %from.addr, %reason, "peer connection ended");
}

/// Removes an accepted connection from the network's map however its task ends.
struct InboundGuard<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for InboundGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.inbound).remove(&self.id);
    }
}

/// One running request (or accepted connection); counted down when its task ends.
pub(super) struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handler's result, its panic (caught by [`CatchUnwind`]) made a handler error.
fn unwound(
    from: &PeerInfo,
    h: &FrameHeader,
    result: Result<Result<Bytes, HandlerError>, String>,
) -> Result<Bytes, HandlerError> {
    result.unwrap_or_else(|panic| {
        warn!(peer = %from.addr, family = ?h.family, %panic, "request handler panicked");
        Err(HandlerError::new(format!("handler panicked: {panic}")))
    })
}

/// The frame answering request `h` with a handler's result.
pub(super) fn answer_frame(h: &FrameHeader, result: Result<Bytes, HandlerError>) -> Frame {
    match result {
        Ok(body) => Frame::new(h.family, FrameKind::Response, h.stream, body).unwrap_or_else(|e| {
            Frame::error(h.family, h.stream, ErrorCode::Handler, &e.to_string())
        }),
        Err(e) => Frame::error(h.family, h.stream, ErrorCode::Handler, &e.message),
    }
}

pub(super) async fn run_inbound(
    inner: &Arc<Inner>,
    stream: TcpStream,
    from: PeerInfo,
    cancel: &CancellationToken,
) -> String {
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::with_budget(read, Arc::clone(&inner.request_data));
    let in_flight = inner.opts.max_in_flight.max(1);
    let (tx, mut rx) = mpsc::channel::<Frame>(in_flight * 2);
    // Requests whose handler is still running (those answered at once never count).
    let running = Arc::new(AtomicUsize::new(0));
    let read_loop = async {
        loop {
            let (h, body, share) = match reader.next_charged().await {
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
                    Some(handler) => {
                        let done = match call_catching(|| handler.message(from, body)) {
                            Ok(fut) => CatchUnwind(fut).await,
                            Err(panic) => Err(panic),
                        };
                        if let Err(panic) = done {
                            warn!(peer = %from.addr, family = ?h.family, %panic, "message handler panicked; message dropped");
                        }
                        drop(share);
                    }
                    None => {
                        debug!(peer = %from.addr, family = ?h.family, "no handler; one-way message dropped")
                    }
                },
                FrameKind::Request => {
                    // Error answers wait for room in the answer queue like any answer
                    // (backpressure on this reader): dropping one would leave its caller
                    // waiting until its deadline.
                    let Some(handler) = inner.handlers.get(h.family).cloned() else {
                        let refusal =
                            Frame::error(h.family, h.stream, ErrorCode::NoHandler, "no handler");
                        if tx.send(refusal).await.is_err() {
                            return "closed".to_string();
                        }
                        continue;
                    };
                    if running.load(Ordering::Acquire) >= in_flight {
                        let refusal = Frame::error(
                            h.family,
                            h.stream,
                            ErrorCode::Overloaded,
                            "too many requests in flight",
                        );
                        if tx.send(refusal).await.is_err() {
                            return "closed".to_string();
                        }
                        continue;
                    }
                    // Fast path: a handler that answers without waiting (most small
                    // requests) is answered here, without a task of its own. A pending
                    // future is moved into a task, whose polls register real wakers.
                    let mut answer = match call_catching(|| handler.request(from, body)) {
                        Ok(fut) => CatchUnwind(fut),
                        Err(panic) => {
                            let result = unwound(&from, &h, Err(panic));
                            if tx.send(answer_frame(&h, result)).await.is_err() {
                                return "closed".to_string();
                            }
                            continue;
                        }
                    };
                    let ready = Pin::new(&mut answer).poll(&mut Context::from_waker(Waker::noop()));
                    if let Poll::Ready(result) = ready {
                        let result = unwound(&from, &h, result);
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
                        let _share = share;
                        let result = tokio::select! {
                            biased;
                            _ = cancel.cancelled() => return,
                            a = answer => unwound(&from, &h, a),
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
