//! Anti-entropy against real engines: trees stay equal to a rebuild from the data under
//! every kind of write, compaction and expiry; exchanges make diverged replicas identical
//! and move nothing but hashes when they already are. Two services in temp dirs talk
//! through a loopback [`PeerNetwork`] that hands repair calls to the other's handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use sibyl_protocol::{
    CellContext, ColumnWrite, ConflictMode, Consistency, DeleteTarget, Request, Response,
    RowDelete, RowInsert, TableOptions,
};
use tokio::time::Instant;

use super::peer::answer;
use super::session::Session;
use super::space::intervals;
use super::{RepairRequest, SyncStats};
use crate::net::{BoxFuture, Family, NetError, PeerHandler, PeerNetwork};
use crate::replica::{RawCell, ReplicaExecution, ReplicaHost, TokenRange};
use crate::ring::{NodeId, Token};
use crate::service::{Service, ServiceOptions};
use crate::versioning::ManualClock;

const T0: i64 = 1_700_000_000;

/// Write timestamps: distinct and increasing, as a real clock gives them (the lww form of
/// a mortal version is its timestamp, see `super::hash`).
static NEXT_MICROS: std::sync::atomic::AtomicI64 =
    std::sync::atomic::AtomicI64::new(T0 * 1_000_000);

fn next_micros() -> Option<i64> {
    Some(NEXT_MICROS.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Service {
    Service::open(ServiceOptions {
        memtable_size: 256 << 10,
        ..ServiceOptions::new(dir, clock)
    })
    .unwrap()
}

fn create(svc: &Service, name: &str, mode: ConflictMode) {
    let r = svc.handle(Request::CreateTable {
        name: name.into(),
        options: TableOptions {
            replication_factor: 3,
            read_consistency: Consistency::ONE,
            write_consistency: Consistency::ONE,
            conflict_mode: mode,
            ..TableOptions::default()
        },
        if_not_exists: false,
    });
    assert!(
        matches!(r, Response::SchemaChanged { applied: true, .. }),
        "{r:?}"
    );
}

fn put(svc: &Service, table: &str, key: &str, col: &str, value: &str, ttl: Option<u32>) {
    let r = svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: table.into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            ttl_secs: ttl,
            timestamp_micros: next_micros(),
            columns: vec![ColumnWrite {
                name: Bytes::copy_from_slice(col.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                context: Bytes::new(),
            }],
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

fn delete(svc: &Service, table: &str, key: &str, col: Option<&str>) {
    let target = match col {
        Some(c) => DeleteTarget::Columns(vec![CellContext {
            name: Bytes::copy_from_slice(c.as_bytes()),
            context: Bytes::new(),
        }]),
        None => DeleteTarget::Row { contexts: vec![] },
    };
    let r = svc.handle(Request::Delete {
        delete: RowDelete {
            write_id: None,
            table: table.into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            timestamp_micros: next_micros(),
            target,
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

/// Every leaf of `table`'s tree.
fn leaves(svc: &Service, table: &str) -> Vec<u64> {
    let tree = svc.replica().trees().get(table).unwrap();
    tree.leaves(0, tree.leaf_count() - 1).expect("ready")
}

/// The leaves a fresh rebuild from the stored data gives.
fn rebuilt(svc: &Service, table: &str, mode: ConflictMode) -> Vec<u64> {
    let replica = svc.replica();
    let merge = crate::versioning::CausalMerge::replicated(Arc::new(ManualClock::at_secs(T0)));
    let fresh = super::TableTree::new(mode, replica.partitioner(), 16, Arc::new(merge));
    fresh
        .rebuild(replica.engine(), table, || replica.lock_all())
        .unwrap();
    fresh.leaves(0, fresh.leaf_count() - 1).unwrap()
}

/// Every stored cell of `table`, raw.
fn cells(svc: &Service, table: &str) -> Vec<RawCell> {
    let whole = TokenRange {
        start: Token::Murmur3(0),
        end: Token::Murmur3(0),
    };
    let mut scan = svc.replica().scan_range(table, whole).unwrap();
    let mut out = Vec::new();
    while let Some((k, v)) = scan.next_entry().unwrap() {
        out.push(RawCell {
            table: table.into(),
            key: k.to_vec(),
            value: v.to_vec(),
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn seed() -> u64 {
    let s = std::env::var("SIBYL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {s} (rerun with SIBYL_TEST_SEED={s})");
    s
}

/// Random writes of every kind on `svc` (`n` of them, keys from a pool of `keys`).
fn random_writes(svc: &Service, table: &str, rng: &mut impl Rng, n: usize, keys: usize) {
    for _ in 0..n {
        let key = format!("k{}", rng.gen_range(0..keys));
        let col = format!("c{}", rng.gen_range(0..3));
        match rng.gen_range(0..10) {
            0 => delete(svc, table, &key, Some(&col)),
            1 => delete(svc, table, &key, None),
            2 => put(svc, table, &key, &col, "short-lived", Some(5)),
            _ => put(
                svc,
                table,
                &key,
                &col,
                &format!("v{}", rng.gen::<u32>()),
                None,
            ),
        }
    }
}

#[test]
fn tree_equals_a_rebuild_after_writes_deletes_expiry_flush_and_compaction() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at_secs(T0));
        let svc = open(dir.path(), clock.clone());
        create(&svc, "t", mode);
        random_writes(&svc, "t", &mut rng, 1500, 200);
        assert_eq!(
            leaves(&svc, "t"),
            rebuilt(&svc, "t", mode),
            "{mode:?} after writes"
        );
        assert!(leaves(&svc, "t").iter().any(|&l| l != 0));
        // TTLs run out; flush and compaction rewrite expired and covered cells.
        clock.advance_secs(60);
        svc.replica().engine().flush(Some("t")).unwrap();
        random_writes(&svc, "t", &mut rng, 500, 200);
        svc.replica().engine().flush(Some("t")).unwrap();
        svc.replica().engine().compact("t").unwrap();
        if mode == ConflictMode::Causal {
            // Lww cells a row tombstone covers are dropped by compaction, which the tree
            // does not see (documented in `super::hash`); causal cells keep their counters.
            assert_eq!(
                leaves(&svc, "t"),
                rebuilt(&svc, "t", mode),
                "{mode:?} after compaction"
            );
        }
        // Applying cells minted elsewhere (here: the same cells again, and a peer's)
        // moves the tree exactly as the data moves.
        let again = cells(&svc, "t");
        svc.replica().apply(&again, |_| Some(mode)).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = open(other_dir.path(), clock.clone());
        create(&other, "t", mode);
        random_writes(&other, "t", &mut rng, 300, 200);
        svc.replica()
            .apply(&cells(&other, "t"), |_| Some(mode))
            .unwrap();
        let fresh = rebuilt(&svc, "t", mode);
        if mode == ConflictMode::Causal {
            assert_eq!(leaves(&svc, "t"), fresh, "{mode:?} after applies");
        }
    }
}

#[test]
fn tree_rebuild_while_writes_go_on_equals_a_quiet_rebuild() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at_secs(T0));
    let svc = Arc::new(open(dir.path(), clock));
    create(&svc, "t", ConflictMode::Causal);
    random_writes(&svc, "t", &mut rng, 2000, 500);
    // Lose the tree state; rebuild it on one thread while another keeps writing.
    let merge = Arc::new(crate::versioning::CausalMerge::replicated(Arc::new(
        ManualClock::at_secs(T0),
    )));
    svc.replica().untrack_tree("t");
    svc.replica()
        .track_tree("t", ConflictMode::Causal, merge, None);
    assert!(!svc.replica().trees().get("t").unwrap().is_ready());
    let writer = {
        let svc = svc.clone();
        let s: u64 = rng.gen();
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(s);
            random_writes(&svc, "t", &mut rng, 3000, 500);
        })
    };
    svc.replica().rebuild_trees().unwrap();
    writer.join().unwrap();
    assert!(svc.replica().trees().get("t").unwrap().is_ready());
    assert_eq!(leaves(&svc, "t"), rebuilt(&svc, "t", ConflictMode::Causal));
}

/// A peer network of one peer: calls of the repair family go to `peer`'s handler.
struct Loopback {
    peer: Arc<Service>,
    addr: SocketAddr,
}

impl PeerNetwork for Loopback {
    fn local_addr(&self) -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }
    fn local_node(&self) -> NodeId {
        NodeId(1)
    }
    fn call(
        &self,
        _to: SocketAddr,
        family: Family,
        body: Bytes,
        _deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        assert_eq!(family, Family::Repair);
        let request = RepairRequest::decode(&body).unwrap();
        let answer = answer(&*self.peer, request, None).encode();
        Box::pin(async move { Ok(answer) })
    }
    fn call_node(
        &self,
        to: SocketAddr,
        _node: NodeId,
        family: Family,
        body: Bytes,
        deadline: Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        assert_eq!(to, self.addr);
        self.call(to, family, body, deadline)
    }
    fn send(&self, _to: SocketAddr, _family: Family, _body: Bytes) -> Result<(), NetError> {
        Err(NetError::Closed)
    }
    fn register(&self, _f: Family, _h: Arc<dyn PeerHandler>) -> Result<(), NetError> {
        Ok(())
    }
    fn disconnect(&self, _peer: SocketAddr) {}
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

fn sync(a: &Arc<Service>, b: &Arc<Service>, table: &str, range: TokenRange) -> SyncStats {
    let addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
    let net = Arc::new(Loopback {
        peer: b.clone(),
        addr,
    });
    let session = Session::new(
        a.clone(),
        net,
        ReplicaExecution::Inline,
        (addr, NodeId(2)),
        Duration::from_secs(5),
    );
    futures_lite(session.sync(table, range)).unwrap()
}

/// Runs a future whose every await is ready (inline execution, loopback network).
fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn whole_ring() -> TokenRange {
    TokenRange {
        start: Token::Murmur3(i64::MIN),
        end: Token::Murmur3(i64::MIN),
    }
}

#[test]
fn exchange_makes_diverged_replicas_identical_and_moves_only_what_differs() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    for mode in [ConflictMode::Causal, ConflictMode::Lww] {
        let clock = Arc::new(ManualClock::at_secs(T0));
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Arc::new(open(da.path(), clock.clone()));
        let b = Arc::new(open(db.path(), clock.clone()));
        create(&a, "t", mode);
        create(&b, "t", mode);
        // A common history, then writes each replica alone saw (some on the same keys).
        random_writes(&a, "t", &mut rng, 3000, 2000);
        b.replica().apply(&cells(&a, "t"), |_| Some(mode)).unwrap();
        assert_eq!(cells(&a, "t"), cells(&b, "t"));
        random_writes(&a, "t", &mut rng, 40, 2000);
        random_writes(&b, "t", &mut rng, 40, 2000);
        assert_ne!(cells(&a, "t"), cells(&b, "t"));
        let stats = sync(&a, &b, "t", whole_ring());
        assert!(stats.differed);
        assert_eq!(
            cells(&a, "t"),
            cells(&b, "t"),
            "{mode:?}: replicas identical"
        );
        // About 80 keys differed, and a little more moved (concurrent keys both ways).
        let moved = stats.cells_received + stats.cells_sent;
        assert!(
            (40..=240).contains(&moved),
            "{mode:?}: moved {moved} cells: {stats:?}"
        );
        // Now identical: one root each way.
        let again = sync(&a, &b, "t", whole_ring());
        assert!(!again.differed);
        assert_eq!((again.cells_sent, again.cells_received), (0, 0));
        assert!(
            again.bytes_sent + again.bytes_received < 100,
            "identical replicas exchanged {again:?}"
        );
    }
}

#[test]
fn exchange_of_one_range_moves_nothing_outside_it() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let clock = Arc::new(ManualClock::at_secs(T0));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(open(da.path(), clock.clone()));
    let b = Arc::new(open(db.path(), clock));
    create(&a, "t", ConflictMode::Causal);
    create(&b, "t", ConflictMode::Causal);
    random_writes(&a, "t", &mut rng, 2000, 2000);
    // A range that wraps, with bounds in the middle of leaves.
    let range = TokenRange {
        start: Token::Murmur3(i64::MAX / 3 + 12_345),
        end: Token::Murmur3(i64::MIN / 5 - 777),
    };
    let stats = sync(&a, &b, "t", range);
    assert!(stats.differed);
    let p = a.replica().partitioner();
    let in_range = |c: &RawCell| {
        let x = super::space::point_of_key(p, &c.key);
        intervals(p, range).iter().any(|i| i.lo <= x && x <= i.hi)
    };
    let want: Vec<RawCell> = cells(&a, "t").into_iter().filter(in_range).collect();
    assert!(!want.is_empty() && want.len() < cells(&a, "t").len());
    assert_eq!(cells(&b, "t"), want);
    assert_eq!(stats.cells_sent, want.len() as u64);
    // The range is now equal; the rest of the ring is not.
    assert!(!sync(&a, &b, "t", range).differed);
    assert!(sync(&a, &b, "t", whole_ring()).differed);
    assert_eq!(cells(&a, "t"), cells(&b, "t"));
}

#[test]
fn exchange_with_a_building_tree_is_refused_and_changes_nothing() {
    let clock = Arc::new(ManualClock::at_secs(T0));
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Arc::new(open(da.path(), clock.clone()));
    let b = Arc::new(open(db.path(), clock));
    create(&a, "t", ConflictMode::Causal);
    create(&b, "t", ConflictMode::Causal);
    put(&a, "t", "k", "c", "v", None);
    let merge = Arc::new(crate::versioning::CausalMerge::replicated(Arc::new(
        ManualClock::at_secs(T0),
    )));
    b.replica().untrack_tree("t");
    b.replica()
        .track_tree("t", ConflictMode::Causal, merge, None);
    let addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
    let net = Arc::new(Loopback {
        peer: b.clone(),
        addr,
    });
    let session = Session::new(
        a.clone(),
        net,
        ReplicaExecution::Inline,
        (addr, NodeId(2)),
        Duration::from_secs(5),
    );
    let err = futures_lite(session.sync("t", whole_ring())).unwrap_err();
    assert!(
        matches!(
            err,
            super::SyncError::Refused {
                code: super::messages::RepairErrorCode::NotReady,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(cells(&b, "t").is_empty());
    b.replica().rebuild_trees().unwrap();
    assert!(sync(&a, &b, "t", whole_ring()).differed);
    assert_eq!(cells(&a, "t"), cells(&b, "t"));
}
