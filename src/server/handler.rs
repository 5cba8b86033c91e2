//! The request-handler seam: what a connection calls to answer a request.
//!
//! A connection decodes a request and hands it to [`RequestHandler::start`], which says
//! how the answer comes:
//! - [`Started::Ready`]: answered on the spot (microseconds of CPU and memory work on the
//!   connection's task; no allocation, no task, no wake-up);
//! - [`Started::Insert`]: a quick INSERT handed back to the connection, which answers it
//!   together with the other quick INSERTs of the same burst through
//!   [`RequestHandler::insert_group`] (one engine write for the burst);
//! - [`Started::Pending`]: a future the connection runs on a task of its own and whose
//!   answer it writes when it completes. A node-local handler returns one for work that
//!   waits for disk (run on the blocking pool); a coordinator that awaits its peers
//!   returns one for every replicated request.
//!
//! The connection does not know which handler it serves: [`super::serve`] is generic over
//! it, so a coordinator plugs in without touching connections. [`Service`] (the node-local
//! handler) implements it here from its public `execution` / `handle` / `insert_group` /
//! `written_body`.
//!
//! Threading: `start` and `insert_group` run on the connection's async task and must not
//! block (work that may wait goes into the `Pending` future). The future is `'static` and
//! `Send`: it may run on any worker thread, after the connection that started it is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use sibyl_protocol::{Consistency, ErrorKind, Request, Response, RowInsert, ServerError};
use tokio::task::JoinHandle;

use crate::service::{Execution, Service};

/// How the answer to one request comes (see the module documentation).
#[derive(Debug)]
pub enum Started<P> {
    /// The answer, computed on the spot.
    Ready(Response),
    /// A quick INSERT for the connection to answer in a group with
    /// [`RequestHandler::insert_group`].
    Insert {
        /// The row written.
        insert: RowInsert,
        /// The consistency the request named, if any.
        consistency: Option<Consistency>,
    },
    /// The answer, once the future completes.
    Pending(P),
}

/// What a client connection calls to answer requests.
pub trait RequestHandler: Send + Sync + 'static {
    /// The future of an answer that is not ready on the spot.
    type Pending: Future<Output = Response> + Send + 'static;

    /// Starts answering `request`. The connection answers HANDSHAKE and PING itself and
    /// never passes them. Runs on the connection's task: must not block.
    fn start(self: &Arc<Self>, request: Request) -> Started<Self::Pending>;

    /// Answers the INSERTs [`RequestHandler::start`] handed back as [`Started::Insert`]:
    /// one result per insert, in order. Runs on the connection's task.
    fn insert_group(
        &self,
        inserts: &[(&RowInsert, Option<Consistency>)],
    ) -> Vec<Result<(), ServerError>>;

    /// The encoded body of the answer to a write that succeeded (shared, never
    /// re-encoded), used for the INSERTs of a group.
    fn written_body(&self) -> Bytes;
}

impl RequestHandler for Service {
    type Pending = BlockingAnswer;

    fn start(self: &Arc<Self>, request: Request) -> Started<BlockingAnswer> {
        match self.execution(&request) {
            Execution::Inline => match request {
                Request::Insert {
                    insert,
                    consistency,
                } => Started::Insert {
                    insert,
                    consistency,
                },
                request => Started::Ready(self.handle(request)),
            },
            Execution::Blocking => {
                let service = Arc::clone(self);
                Started::Pending(BlockingAnswer(tokio::task::spawn_blocking(move || {
                    service.handle(request)
                })))
            }
        }
    }

    fn insert_group(
        &self,
        inserts: &[(&RowInsert, Option<Consistency>)],
    ) -> Vec<Result<(), ServerError>> {
        Service::insert_group(self, inserts)
    }

    fn written_body(&self) -> Bytes {
        Service::written_body(self)
    }
}

/// The answer of a request running on the blocking pool. A panic there becomes a
/// `SERVER` error (the client is answered either way).
#[derive(Debug)]
pub struct BlockingAnswer(JoinHandle<Response>);

impl Future for BlockingAnswer {
    type Output = Response;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|e| {
                tracing::error!(error = %e, "request handler failed on the blocking pool");
                Response::Error(ServerError::new(
                    ErrorKind::Server,
                    format!("the request failed in the server: {e}"),
                ))
            })
        })
    }
}
