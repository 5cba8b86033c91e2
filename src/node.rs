//! The running node: wires the configuration, the service (engine + schemas + actor) and
//! the servers together, and takes them down in order.
//!
//! Start-up order: open the service first (it takes the data directory's lock, so a
//! second node on the same directory fails with a clear message before touching any
//! port), then bind the client and peer ports, then start accepting. Shutdown order: stop
//! accepting, let connections finish their requests in flight (bounded by a grace period),
//! then close the engine, which syncs the commit log.
//!
//! The peer port is bound (so the address is reserved and checked at start-up) but speaks
//! nothing yet: connections to it are closed at once until the cluster layer serves it.
//!
//! Threading: [`Node::start`] and [`Node::shutdown`] run on a tokio runtime; the service's
//! blocking open and close run on the blocking pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sibyl_protocol::DEFAULT_MAX_FRAME_LEN;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::server::{self, ServerOptions};
use crate::service::{Service, ServiceError, ServiceOptions};
use crate::versioning::SystemClock;

/// How long shutdown waits for client connections to finish their requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The service (storage engine, schemas, actor) could not open.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A listening address could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// `"clients"` or `"peers"`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Closing the storage engine failed (the commit log may not be synced).
    #[error("closing the storage engine: {source}")]
    Close {
        /// The engine's error.
        #[source]
        source: sibyl_storage::Error,
    },
    /// A start-up or shutdown task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A started node.
#[derive(Debug)]
pub struct Node {
    service: Arc<Service>,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<()>,
    peer: JoinHandle<()>,
}

impl Node {
    /// Opens the data directory, binds the ports and starts serving clients.
    pub async fn start(config: &Config) -> Result<Node, NodeError> {
        let svc_opts = ServiceOptions {
            data_dir: config.data_dir.clone(),
            sync: config.sync,
            memtable_size: config.memtable_size,
            max_siblings: config.max_siblings,
            max_value_len: config.max_value_len,
            node_address: config.listen.to_string(),
            clock: Arc::new(SystemClock),
        };
        let service =
            Arc::new(tokio::task::spawn_blocking(move || Service::open(svc_opts)).await??);
        let listener = bind("clients", config.listen).await?;
        let peer_listener = bind("peers", config.peer_listen).await?;
        let client_addr = local_addr("clients", &listener, config.listen)?;
        let peer_addr = local_addr("peers", &peer_listener, config.peer_listen)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let opts = ServerOptions {
            max_connections: config.max_connections,
            max_in_flight: config.max_in_flight,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            idle_timeout: config.idle_timeout,
            shutdown_grace: SHUTDOWN_GRACE,
        };
        let server = tokio::spawn(server::serve(
            listener,
            service.clone(),
            opts,
            shutdown_rx.clone(),
        ));
        let peer = tokio::spawn(refuse_peers(peer_listener, shutdown_rx));
        Ok(Node {
            service,
            client_addr,
            peer_addr,
            shutdown_tx,
            server,
            peer,
        })
    }

    /// The bound client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The bound peer address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The request handler.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Stops accepting, drains connections, closes the engine (syncing the commit log).
    pub async fn shutdown(self) -> Result<(), NodeError> {
        let _ = self.shutdown_tx.send(true);
        self.server.await?;
        self.peer.await?;
        let service = self.service;
        tokio::task::spawn_blocking(move || service.close())
            .await?
            .map_err(|source| NodeError::Close { source })?;
        tracing::info!(
            sibling_limit_rejections = crate::versioning::sibling_limit_rejections(),
            corrupt_cells_seen = crate::versioning::corrupt_cells_seen(),
            "storage engine closed; commit log synced"
        );
        Ok(())
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind { what, addr, source })
}

fn local_addr(
    what: &'static str,
    l: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, NodeError> {
    l.local_addr()
        .map_err(|source| NodeError::Bind { what, addr, source })
}

/// Accepts peer connections and closes them: no peer protocol is served yet.
async fn refuse_peers(listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                match accepted {
                    Ok((_, addr)) => {
                        tracing::debug!(%addr, "peer connection closed: peer protocol not served yet");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
}
