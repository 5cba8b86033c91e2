//! Cleanup: a node drops the data of ranges it no longer replicates, once ring changes
//! moved them to other nodes (a join takes ranges from the nodes that held them; they
//! keep their copies until a cleanup, so a failed change loses nothing).
//!
//! - [`OwnedRanges`]: which tokens of a table this node replicates in a ring, or in any
//!   of several rings (a ring change under way: now and after).
//! - [`drop_unowned`]: the engine-level cleanup of one table: a major compaction leaving
//!   out every key whose token the node replicates in no ring of the view of the moment
//!   (the view is read again as keys go by, so a change that starts meanwhile keeps the
//!   ranges it brings). It is what `sibyl-admin cleanup` runs, refused while a ring
//!   change is under way (`crate::service`).
//! - [`AutoCleanup`]: the background task that runs it on every table once a ring change
//!   made this node lose a range and the ring then stayed unchanged for the grace period
//!   (`--cleanup-grace-secs`, default 3600; 0 = only on demand).
//!
//! What is dropped is removed from disk for good, without tombstones (they would shadow
//! the range's data if the node gained it back later); the table's anti-entropy tree is
//! then rebuilt from what remains. A node that restarts takes the ring it starts with as
//! its baseline: ranges lost before the restart wait for `sibyl-admin cleanup`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sibyl_protocol::TableOptions;
use tokio::sync::watch;

use super::plan::{cut, lost_ranges};
use crate::cluster::{ClusterHandle, ClusterView};
use crate::coordinator::placement::strategy;
use crate::replica::keys::split_engine_key;
use crate::replica::ReplicaHost;
use crate::ring::{NodeId, Partitioner, Ring, Token};
use crate::service::Service;

/// The tokens of one table a node replicates (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRanges {
    /// The end token of every range of the cut, ascending, with whether it is owned.
    ends: Vec<(Token, bool)>,
}

impl OwnedRanges {
    /// The ranges `node` replicates, for a table of `options`, in any of `rings`.
    pub fn of(rings: &[&Ring], node: NodeId, options: &TableOptions) -> OwnedRanges {
        let strategy = strategy(options);
        let mut ends: Vec<(Token, bool)> = cut(rings)
            .into_iter()
            .map(|range| {
                let owned = rings
                    .iter()
                    .any(|r| r.preference_list(&range.end, &strategy).contains(&node));
                (range.end, owned)
            })
            .collect();
        ends.sort_by_key(|(end, _)| *end);
        OwnedRanges { ends }
    }

    /// Whether `token` is in an owned range. With no ring at all, everything is owned.
    pub fn contains(&self, token: Token) -> bool {
        // The range holding `token` is the first whose end is at or after it, or the
        // range that wraps past the largest end.
        let i = self.ends.partition_point(|(end, _)| *end < token);
        match self.ends.get(i).or_else(|| self.ends.first()) {
            Some((_, owned)) => *owned,
            None => true,
        }
    }

    /// True when every range is owned (a cleanup has nothing to drop).
    pub fn owns_everything(&self) -> bool {
        self.ends.iter().all(|(_, owned)| *owned)
    }
}

/// The ranges of `view`'s local node for a table of `options`: in the ring and, while a
/// change is under way, in the future ring.
pub fn owned_in_view(view: &ClusterView, options: &TableOptions) -> OwnedRanges {
    let ring = view.ring();
    match view.future_ring() {
        Some(future) => OwnedRanges::of(&[&ring, &future], view.local, options),
        None => OwnedRanges::of(&[&ring], view.local, options),
    }
}

/// The ownership computed from a view's ring and future ring (compared by pointer: a view
/// reuses the rings while they are unchanged).
type Ownership = (Arc<Ring>, Option<Arc<Ring>>, OwnedRanges);

/// Drops from `table` of `service` every key whose token the local node replicates in no
/// ring of the view current when the key is met (see the module documentation). Returns
/// the entries dropped. Keys that are not well-formed engine keys are kept.
pub fn drop_unowned(
    service: &Service,
    link: &ClusterHandle,
    table: &str,
    options: &TableOptions,
    partitioner: Partitioner,
) -> Result<u64, sibyl_storage::Error> {
    // The ownership of the view last seen, rebuilt when the view's rings change.
    let cache: RefCell<Option<Ownership>> = RefCell::new(None);
    let drop = |key: &[u8]| -> bool {
        let Some(parts) = split_engine_key(partitioner, key) else {
            return false;
        };
        let Some(view) = link.view() else {
            return false;
        };
        let mut cache = cache.borrow_mut();
        let (ring, future) = (view.ring(), view.future_ring());
        let fresh = cache.as_ref().is_some_and(|(r, f, _)| {
            Arc::ptr_eq(r, &ring)
                && match (f, &future) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if !fresh {
            *cache = Some((ring, future, owned_in_view(&view, options)));
        }
        cache
            .as_ref()
            .is_some_and(|(_, _, owned)| !owned.contains(parts.token))
    };
    service.replica().engine().compact_dropping(table, &drop)
}

/// The background cleanup of one node (see the module documentation).
pub struct AutoCleanup {
    service: Arc<Service>,
    cluster: Arc<ClusterHandle>,
    grace: Duration,
}

impl std::fmt::Debug for AutoCleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoCleanup")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How often the view is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl AutoCleanup {
    /// A cleanup task for the node behind `service`, `grace` after a loss.
    pub fn new(service: Arc<Service>, cluster: Arc<ClusterHandle>, grace: Duration) -> Self {
        AutoCleanup {
            service,
            cluster,
            grace,
        }
    }

    /// Watches the view until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut baseline: Option<Arc<Ring>> = None;
        let mut seen: Option<Arc<Ring>> = None;
        let mut lost_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let Some(view) = self.cluster.view() else {
                continue;
            };
            if view.future_ring().is_some() {
                // A change under way: wait for the ring it leads to.
                lost_since = None;
                seen = None;
                continue;
            }
            let ring = view.ring();
            let Some(base) = baseline.clone() else {
                baseline = Some(ring.clone());
                seen = Some(ring);
                continue;
            };
            if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &ring)) {
                seen = Some(ring.clone());
                let tables = self.service.table_options();
                let lost = !lost_ranges(&base, &ring, view.local, &tables).is_empty();
                lost_since = lost.then(Instant::now);
                if !lost {
                    // Gained or unchanged: what it holds now is what it replicates.
                    baseline = Some(ring.clone());
                }
            }
            let Some(since) = lost_since else {
                continue;
            };
            if since.elapsed() < self.grace {
                continue;
            }
            tracing::info!(
                grace_secs = self.grace.as_secs(),
                "ranges lost in a ring change, and the ring unchanged since the grace \
                 period: cleaning up"
            );
            let service = self.service.clone();
            let done = tokio::task::spawn_blocking(move || service.cleanup(None)).await;
            match done {
                Ok(Ok(tables)) => {
                    let dropped: u64 = tables.iter().map(|t| t.dropped).sum();
                    tracing::info!(tables = tables.len(), dropped, "automatic cleanup done");
                    baseline = Some(ring);
                    lost_since = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "automatic cleanup failed; tried again later");
                    lost_since = Some(Instant::now());
                }
                Err(e) => {
                    tracing::error!(error = %e, "automatic cleanup task failed");
                    lost_since = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::plan::tests::{ring, table};

    fn rf(n: u16) -> TableOptions {
        table(n).1
    }

    #[test]
    fn owned_ranges_follow_the_preference_lists_and_wrap() {
        let r = ring(&[(1, &[0]), (2, &[100]), (3, &[200])]);
        let t = Token::Murmur3;
        // rf 1: node 2 owns (0, 100].
        let two = OwnedRanges::of(&[&r], NodeId(2), &rf(1));
        assert!(!two.contains(t(0)));
        assert!(two.contains(t(1)) && two.contains(t(100)));
        assert!(!two.contains(t(101)));
        // Node 1 owns (200, 0], which wraps.
        let one = OwnedRanges::of(&[&r], NodeId(1), &rf(1));
        assert!(one.contains(t(i64::MAX)) && one.contains(t(i64::MIN)) && one.contains(t(0)));
        assert!(!one.contains(t(50)));
        // rf 2: the list of (0, 100] is [2, 3], of (100, 200] is [3, 1], of (200, 0] is
        // [1, 2]: node 2 replicates the first and the last.
        let two = OwnedRanges::of(&[&r], NodeId(2), &rf(2));
        assert!(two.contains(t(50)) && two.contains(t(-5)));
        assert!(!two.contains(t(150)));
        // rf 3 of 3: everything.
        assert!(OwnedRanges::of(&[&r], NodeId(2), &rf(3)).owns_everything());
        // With a future ring where node 4 takes (100, 150] from node 3, node 3 keeps it
        // while the change is under way.
        let future = ring(&[(1, &[0]), (2, &[100]), (3, &[200]), (4, &[150])]);
        let three = OwnedRanges::of(&[&r, &future], NodeId(3), &rf(1));
        assert!(three.contains(t(120)) && three.contains(t(180)));
        let three_after = OwnedRanges::of(&[&future], NodeId(3), &rf(1));
        assert!(!three_after.contains(t(120)) && three_after.contains(t(180)));
        // No ring: nothing is dropped.
        assert!(OwnedRanges::of(&[], NodeId(1), &rf(1)).contains(t(7)));
    }
}
