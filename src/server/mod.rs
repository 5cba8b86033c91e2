//! The client server: accepts connections on the client port and runs one
//! [`connection::Connection`] task per client; each answers its requests through a
//! [`handler::RequestHandler`] (the node-local [`crate::service::Service`] today; a coordinator can take
//! its place without a change here).
//!
//! It owns the limits: a cap on open connections (a client over it gets an `Overloaded`
//! error frame and is closed), a smaller one on connections that have not finished their
//! handshake (past it the oldest of those is closed, [`pending`]), the handshake
//! deadline, the node-wide in-flight semaphore shared by all connections, the node-wide
//! budget of request bytes in flight (large frames wait for their share before their
//! body is read, so headers alone cannot grow the node), the frame cap and the idle
//! timeout. So clients that connect and stay silent hold at most
//! `max_pending_handshakes` slots, each for at most the handshake timeout, and the other
//! slots stay free for clients that handshake. Shutdown is a `watch` channel: when it turns true
//! the accept loop stops, every connection stops reading, finishes its requests in flight,
//! writes their answers and closes; [`serve`] returns once all connections are gone or the
//! grace period ends.
//!
//! Threading: runs on the tokio runtime; a handler's answers that wait (the service's
//! blocking calls, see [`crate::service::Execution`]) run as futures on tasks of their own.

pub mod connection;
pub mod handler;
pub mod pending;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sibyl_protocol::frame::{
    CONNECTION_ERROR_OPCODE, CONNECTION_ERROR_STREAM_ID, FLAG_ERROR, FLAG_RESPONSE,
};
use sibyl_protocol::{ErrorKind, Frame, Response, ServerError, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::metrics::RequestMetrics;
use connection::{Connection, ConnectionContext};
use handler::RequestHandler;

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time allowed to tell a refused client why before dropping it.
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Default budget of request bytes in flight: 128 MiB. Cassandra keeps a tenth of its
/// heap; a fixed figure here, since the node has no heap size to take it from: eight
/// largest frames (16 MiB), or 128 requests of 1 MiB, at once.
pub const DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT: usize = 128 << 20;

/// Limits of the client server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Most open client connections.
    pub max_connections: usize,
    /// Most requests executing at once, all connections together.
    pub max_in_flight: usize,
    /// Frame cap after the handshake (header + body).
    pub max_frame_len: usize,
    /// Bytes of request frames over 16 KiB that may be in flight at once, all
    /// connections together (raised to `max_frame_len` if lower, so any frame can pass):
    /// a connection whose next frame does not fit waits before reading its body
    /// (Cassandra's `native_transport_max_request_data_in_flight`).
    pub max_request_data_in_flight: usize,
    /// Idle timeout of a connection; `None` = never.
    pub idle_timeout: Option<Duration>,
    /// Time a connection has, from its accept, to finish its handshake.
    pub handshake_timeout: Duration,
    /// Most connections at once that have not finished their handshake (they count
    /// against `max_connections` too); a new one past it closes the oldest of them.
    pub max_pending_handshakes: usize,
    /// How long shutdown waits for connections to finish their requests.
    pub shutdown_grace: Duration,
    /// Where connections count each request, its latency and its error
    /// ([`crate::metrics`]).
    pub requests: Arc<RequestMetrics>,
    /// Authentication: required or not, the users, the login throttle.
    pub auth: Arc<crate::auth::Authenticator>,
}

/// Accepts clients on `listener` until `shutdown` turns true, then drains connections.
/// Every request is answered by `handler`.
pub async fn serve<H: RequestHandler>(
    listener: TcpListener,
    handler: Arc<H>,
    opts: ServerOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(opts.max_connections));
    let mut handshaking = pending::PendingHandshakes::new(opts.max_pending_handshakes);
    let ctx = ConnectionContext {
        handler,
        in_flight: Arc::new(Semaphore::new(opts.max_in_flight)),
        body_budget: Arc::new(Semaphore::new(
            opts.max_request_data_in_flight
                .max(opts.max_frame_len)
                .min(Semaphore::MAX_PERMITS),
        )),
        max_frame_len: opts.max_frame_len,
        idle_timeout: opts.idle_timeout,
        handshake_timeout: opts.handshake_timeout,
        server_name: concat!("sibyl/", env!("CARGO_PKG_VERSION")).to_owned(),
        requests: opts.requests.clone(),
        auth: opts.auth.clone(),
    };
    // Every connection task holds a clone of `done_tx`; `recv` returns `None` once all
    // of them have finished (mini-redis's shutdown-complete pattern).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    match connections.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (ticket, evicted) = handshaking.admit();
                            if evicted {
                                tracing::debug!(
                                    "connections still in their handshake at the cap: \
                                     closing the oldest"
                                );
                            }
                            let conn = Connection::new(stream, ctx.clone(), Some(ticket));
                            let rx = shutdown.clone();
                            let done = done_tx.clone();
                            tokio::spawn(async move {
                                conn.run(rx).await;
                                drop(permit);
                                drop(done);
                            });
                        }
                        Err(_) => {
                            let done = done_tx.clone();
                            tokio::spawn(async move {
                                refuse(stream).await;
                                drop(done);
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    drop(done_tx);
    if tokio::time::timeout(opts.shutdown_grace, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = opts.shutdown_grace.as_millis() as u64,
            "connections still open after the shutdown grace period"
        );
    }
}

/// Tells a client over the connection limit why it is refused, then closes.
async fn refuse(mut stream: TcpStream) {
    let err = Response::Error(ServerError::new(
        ErrorKind::Overloaded,
        "too many client connections; retry later",
    ));
    let Ok(body) = err.encode_body() else {
        return;
    };
    let frame = Frame {
        version: PROTOCOL_VERSION,
        flags: FLAG_RESPONSE | FLAG_ERROR,
        opcode: CONNECTION_ERROR_OPCODE,
        stream_id: CONNECTION_ERROR_STREAM_ID,
        body,
    };
    let mut buf = BytesMut::new();
    if frame.encode(&mut buf, usize::MAX).is_ok() {
        let _ = tokio::time::timeout(REFUSE_WRITE_TIMEOUT, stream.write_all(&buf)).await;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests;
