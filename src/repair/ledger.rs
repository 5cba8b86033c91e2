//! Which exchanges this node completed, per (table, range, peer), and when they started,
//! by this node's clock — on both sides of an exchange.
//!
//! The initiator records the second it started an exchange once it completes. The peer
//! records the second it answered the exchange's `root` request, and makes it a completed
//! exchange when the initiator's `done` arrives: everything the peer held before that
//! second was compared and, where the initiator lacked it, pulled. So each node knows,
//! for every pair it belongs to, which of its own cells the other replica holds, whoever
//! initiated (the background plan initiates each pair from one side only).
//!
//! In memory: a restart forgets it, and the watermark starts again from nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ring::{NodeId, Token};

/// (table, range start, range end, peer).
pub type SyncKey = (String, Token, Token, NodeId);

/// The exchanges of this node (see the module documentation).
#[derive(Debug, Default)]
pub struct SyncLedger {
    /// Completed: the start (seconds) of the latest completed exchange.
    synced: Mutex<HashMap<SyncKey, u64>>,
    /// Answered a `root` at this second, `done` not yet received.
    opened: Mutex<HashMap<SyncKey, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SyncLedger {
    /// This node initiated an exchange of `key` that started at `secs` and completed.
    pub fn completed(&self, key: SyncKey, secs: u64) {
        let mut synced = lock(&self.synced);
        let slot = synced.entry(key).or_insert(secs);
        *slot = (*slot).max(secs);
    }

    /// This node answered the `root` of an exchange of `key` at `secs`.
    pub fn opened(&self, key: SyncKey, secs: u64) {
        lock(&self.opened).insert(key, secs);
    }

    /// The initiator of the exchange of `key` says it completed.
    pub fn closed(&self, key: &SyncKey) {
        let Some(secs) = lock(&self.opened).remove(key) else {
            return;
        };
        self.completed(key.clone(), secs);
    }

    /// The start of the latest completed exchange of `key`.
    pub fn get(&self, key: &SyncKey) -> Option<u64> {
        lock(&self.synced).get(key).copied()
    }

    /// Every completed exchange.
    pub fn snapshot(&self) -> HashMap<SyncKey, u64> {
        lock(&self.synced).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_counts_the_peer_side_only_once_the_initiator_is_done() {
        let l = SyncLedger::default();
        let k: SyncKey = ("t".into(), Token::Murmur3(1), Token::Murmur3(2), NodeId(7));
        l.opened(k.clone(), 100);
        assert_eq!(l.get(&k), None, "answered a root: not yet synced");
        l.closed(&k);
        assert_eq!(l.get(&k), Some(100));
        l.closed(&k);
        l.completed(k.clone(), 90);
        assert_eq!(l.get(&k), Some(100), "the latest start stays");
        l.completed(k.clone(), 120);
        assert_eq!(l.get(&k), Some(120));
    }
}
