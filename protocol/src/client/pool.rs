//! [`NodePool`]: a small fixed set of connections to one node, used round-robin.
//!
//! A slot holds at most one [`Connection`]. A request takes the next slot; if the slot is
//! empty or its connection closed, it connects anew (this is how the client reconnects
//! after a failure). Two callers may race to refill the same slot; the later one wins and
//! the earlier connection is dropped once its in-flight requests finish with it. After a
//! connect failure the node is marked down for `reconnect_backoff`, so other nodes are
//! preferred meanwhile. The slot mutexes are never held across an `.await`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::client::connection::Connection;
use crate::client::error::ClientError;
use crate::client::ClientOptions;

/// The connections to one node.
#[derive(Debug)]
pub struct NodePool {
    addr: SocketAddr,
    slots: Vec<Mutex<Option<Arc<Connection>>>>,
    next: AtomicUsize,
    down_until: Mutex<Option<Instant>>,
}

impl NodePool {
    /// An empty pool of `size` (at least 1) slots for `addr`; nothing connects yet.
    pub fn new(addr: SocketAddr, size: usize) -> Self {
        NodePool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            down_until: Mutex::new(None),
        }
    }

    /// The node address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True while a recent connect failure says to prefer other nodes.
    pub fn is_marked_down(&self) -> bool {
        let until = *self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| Instant::now() < t)
    }

    /// Number of open connections in the pool.
    pub fn open_connections(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_some_and(|c| !c.is_closed())
            })
            .count()
    }

    /// A live connection from the next slot, connecting if the slot is empty or dead.
    pub async fn connection(
        &self,
        options: &ClientOptions,
    ) -> Result<Arc<Connection>, ClientError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let Some(slot) = self.slots.get(i) else {
            return Err(ClientError::NoNodes);
        };
        let current = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(conn) = current {
            if !conn.is_closed() {
                return Ok(conn);
            }
        }
        match Connection::connect(self.addr, options).await {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&conn));
                *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(conn)
            }
            Err(e) => {
                *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Instant::now() + options.reconnect_backoff);
                Err(e)
            }
        }
    }
}
