//! The outbound side of a [`super::TcpNetwork`]: one task per lane that connects, shakes
//! hands, writes queued frames and (in a reader task of its own) completes pending
//! calls with their answers; reconnect backoff after a failed connect.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::conn::{write_frames, FrameReader};
use super::{lock, Inner, Outbound, TcpOptions};
use crate::net::frame::{decode_error_body, ErrorCode, Frame, FrameKind};
use crate::net::handshake::{self, HandshakeStatus, Welcome};
use crate::net::NetError;
use crate::ring::NodeId;

/// Drives one outbound lane until cancelled.
pub(super) async fn lane_task(
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
            Ok((stream, remote)) => {
                attempt = 0;
                *lock(&out.remote) = Some(remote);
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
    // Closed before the last fail_pending: a call racing this end either finds the queue
    // closed (and fails at once) or registered before it (and is failed here), never
    // waits on a queue nobody reads.
    rx.close();
    out.fail_pending(&NetError::Unreachable {
        addr: out.addr,
        reason: "connection closed (peer departed or network shut down)".into(),
    });
}

pub(super) fn backoff(opts: &TcpOptions, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.min(16);
    opts.backoff_min
        .saturating_mul(factor)
        .min(opts.backoff_max)
}

/// Connects and shakes hands; returns the stream and the peer's node id. A refusal is
/// logged here and returned as `Refused`.
pub(super) async fn connect(
    inner: &Inner,
    out: &Outbound,
) -> Result<(TcpStream, NodeId), NetError> {
    let addr = out.addr;
    let unreachable = |reason: String| NetError::Unreachable { addr, reason };
    let mut stream = tokio::time::timeout(inner.opts.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    let hello = inner.hello(out.lane).encode();
    let welcome = tokio::time::timeout(inner.opts.handshake_timeout, async {
        handshake::write_all(&mut stream, &hello).await?;
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
    Ok((stream, welcome.node))
}

/// Aborts a connection's helper task when the connection's own task ends.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<String>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a connected lane until it breaks or is cancelled; returns why it ended. The
/// reader runs as a task of its own, so answers are read while the lane task
/// writes (on a multi-thread runtime, in parallel); it ends with the lane task.
pub(super) async fn run_outbound(
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

/// Reads answers on an outbound connection and completes their calls.
pub(super) async fn read_answers(out: &Outbound, r: &mut FrameReader) -> String {
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
