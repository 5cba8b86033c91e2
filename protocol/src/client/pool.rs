//! [`NodePool`]: a small fixed set of connections to one node, used round-robin.
//!
//! A slot holds at most one [`Connection`]. A request takes the next slot; if the slot is
//! empty or its connection closed, it connects anew (this is how the client reconnects
//! after a failure). Refilling a slot is serialised by the slot's async connect lock: a
//! caller that finds the slot empty waits for a refill already under way and uses its
//! connection, so concurrent callers (a request and a topology refresh, say) open one
//! connection, not one each. After a connect failure the node is marked down for
//! `reconnect_backoff`, so other nodes are preferred meanwhile. The slot mutexes are never
//! held across an `.await`; the connect lock is held only across the connect.

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
    /// One per slot: held while that slot is being refilled.
    connecting: Vec<tokio::sync::Mutex<()>>,
    next: AtomicUsize,
    down_until: Mutex<Option<Instant>>,
}

impl NodePool {
    /// An empty pool of `size` (at least 1) slots for `addr`; nothing connects yet.
    pub fn new(addr: SocketAddr, size: usize) -> Self {
        NodePool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            connecting: (0..size.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
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
        if let Some(conn) = live(slot) {
            return Ok(conn);
        }
        let Some(connecting) = self.connecting.get(i) else {
            return Err(ClientError::NoNodes);
        };
        let _refilling = connecting.lock().await;
        // Someone else may have refilled the slot while this caller waited.
        if let Some(conn) = live(slot) {
            return Ok(conn);
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

/// The slot's connection if it is open.
fn live(slot: &Mutex<Option<Arc<Connection>>>) -> Option<Arc<Connection>> {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|c| !c.is_closed())
        .cloned()
}
