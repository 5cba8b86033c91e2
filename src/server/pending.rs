//! The cap on connections that have not finished their handshake.
//!
//! Every accepted connection gets a [`HandshakeTicket`] and holds it until its handshake
//! succeeds or it closes. The accept loop keeps the tickets' slots in arrival order
//! ([`PendingHandshakes`]); when a new connection would take the count past the cap, the
//! oldest connection still in its handshake is told to close (its ticket's token is
//! cancelled). So silent or slow clients hold at most `cap` connection slots, each for at
//! most the handshake timeout, and a new client always gets its chance: a working client
//! finishes its handshake in one round trip, before `cap` newer connections push it out.
//!
//! Threading: [`PendingHandshakes`] belongs to the accept loop alone; a ticket is shared
//! with it through an `Arc` of atomics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// One connection's place among those still in their handshake.
#[derive(Debug, Default)]
struct Slot {
    /// Set once the connection handshook or closed: the slot no longer counts.
    released: AtomicBool,
    /// Cancelled to make the connection close (the cap was reached by newer ones).
    evicted: CancellationToken,
}

/// Held by a connection until its handshake succeeds; dropping it releases the slot.
#[derive(Debug)]
pub struct HandshakeTicket {
    slot: Arc<Slot>,
}

impl HandshakeTicket {
    /// Resolves when the server wants this connection closed to make room.
    pub async fn evicted(&self) {
        self.slot.evicted.cancelled().await;
    }

    /// The handshake succeeded: the slot stops counting (also done on drop).
    pub fn release(&self) {
        self.slot.released.store(true, Ordering::Release);
    }
}

impl Drop for HandshakeTicket {
    fn drop(&mut self) {
        self.release();
    }
}

/// The connections still in their handshake, oldest first, at most `cap` of them.
#[derive(Debug)]
pub struct PendingHandshakes {
    cap: usize,
    slots: VecDeque<Arc<Slot>>,
}

impl PendingHandshakes {
    /// Allows `cap` connections (at least one) in their handshake at once.
    pub fn new(cap: usize) -> Self {
        PendingHandshakes {
            cap: cap.max(1),
            slots: VecDeque::new(),
        }
    }

    /// A ticket for a connection just accepted. When `cap` connections are already in
    /// their handshake, the oldest of them is evicted first; returns whether one was.
    pub fn admit(&mut self) -> (HandshakeTicket, bool) {
        self.slots.retain(|s| !s.released.load(Ordering::Acquire));
        let mut evicted = false;
        while self.slots.len() >= self.cap {
            if let Some(oldest) = self.slots.pop_front() {
                oldest.evicted.cancel();
                evicted = true;
            }
        }
        let slot = Arc::new(Slot::default());
        self.slots.push_back(Arc::clone(&slot));
        (HandshakeTicket { slot }, evicted)
    }

    /// Connections counted as still in their handshake (as of the last admission).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when none is counted.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_handshakes_evict_the_oldest_past_the_cap() {
        let mut p = PendingHandshakes::new(2);
        let (a, ea) = p.admit();
        let (b, eb) = p.admit();
        assert!(!ea && !eb);
        let (_c, ec) = p.admit();
        assert!(ec, "the third evicts the oldest");
        assert!(a.slot.evicted.is_cancelled());
        assert!(!b.slot.evicted.is_cancelled());
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn pending_handshakes_stop_counting_a_released_ticket() {
        let mut p = PendingHandshakes::new(2);
        let (a, _) = p.admit();
        let (b, _) = p.admit();
        drop(a); // handshook or closed
        let (_c, evicted) = p.admit();
        assert!(!evicted, "a released slot makes room");
        assert!(!b.slot.evicted.is_cancelled());
        assert_eq!(p.len(), 2);
    }
}
