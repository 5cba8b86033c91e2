//! What anti-entropy costs (a benchmark, not a test).
//!
//! 1. **Repair of a small divergence.** Two replicas (two services in temp dirs, one
//!    table of rf 3, lww cells of 20-byte values) hold the same `REPAIR_KEYS` keys (1M by
//!    default); then 0.1% of the cells diverge (half overwritten on one replica, half on
//!    the other). One exchange of the whole ring makes them identical. Reported: its wall
//!    time, the bytes it sent both ways, the bytes of the divergent cells (their encoded
//!    size, both versions of each), the ratio of the two without the tree hashes (the aim
//!    is under 2), and the tree-hash bytes apart.
//! 2. **Repair of identical replicas.** The same exchange again: bytes and CPU time.
//! 3. **The tree on the write path.** Puts per second into a replicated lww table and a
//!    replicated causal table with anti-entropy on and off (same process, alternating),
//!    and the ratio on/off.
//!
//! The exchange runs over an in-process loopback network (the peer's repair handler is
//! called directly), so the bytes are exactly the repair messages. Run:
//! `cargo bench --bench repair_cost` (release). `REPAIR_KEYS` and `PUT_KEYS` override the
//! sizes.

#![allow(clippy::unwrap_used)] // a benchmark: a failure is a panic with its message

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl::net::{BoxFuture, Family, NetError, PeerHandler, PeerNetwork};
use sibyl::repair::peer::answer;
use sibyl::repair::{RepairRequest, Session};
use sibyl::replica::{RawCell, ReplicaExecution, ReplicaHost, TokenRange};
use sibyl::ring::{NodeId, Token};
use sibyl::service::{Service, ServiceOptions};
use sibyl::versioning::SystemClock;
use sibyl_protocol::{
    ColumnWrite, ConflictMode, Consistency, Request, Response, RowInsert, TableOptions,
};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn open(dir: &std::path::Path, anti_entropy: bool) -> Arc<Service> {
    Arc::new(
        Service::open(ServiceOptions {
            anti_entropy,
            ..ServiceOptions::new(dir, Arc::new(SystemClock))
        })
        .expect("open"),
    )
}

fn create(svc: &Service, mode: ConflictMode) {
    let r = svc.handle(Request::CreateTable {
        name: "t".into(),
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

fn put(svc: &Service, i: usize, value: &[u8]) {
    let r = svc.handle(Request::Insert {
        insert: RowInsert {
            write_id: None,
            table: "t".into(),
            key: Bytes::from(format!("key{i:010}")),
            ttl_secs: None,
            timestamp_micros: None,
            columns: vec![ColumnWrite {
                name: Bytes::from_static(b"c"),
                value: Bytes::copy_from_slice(value),
                context: Bytes::new(),
            }],
        },
        consistency: None,
    });
    assert!(matches!(r, Response::Written { .. }), "{r:?}");
}

fn whole() -> TokenRange {
    TokenRange {
        start: Token::Murmur3(i64::MIN),
        end: Token::Murmur3(i64::MIN),
    }
}

/// Every stored cell of table `t`.
fn cells(svc: &Service) -> Vec<RawCell> {
    let mut scan = svc.replica().scan_range("t", whole()).expect("scan");
    let mut out = Vec::new();
    while let Some((k, v)) = scan.next_entry().expect("scan") {
        out.push(RawCell {
            table: "t".into(),
            key: k.to_vec(),
            value: v.to_vec(),
        });
    }
    out
}

struct Loopback {
    peer: Arc<Service>,
}

impl PeerNetwork for Loopback {
    fn local_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }
    fn local_node(&self) -> NodeId {
        NodeId(1)
    }
    fn call(
        &self,
        _to: SocketAddr,
        _family: Family,
        body: Bytes,
        _deadline: tokio::time::Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        let request = RepairRequest::decode(&body).expect("decodable");
        let answer = answer(&*self.peer, request, None).encode();
        Box::pin(async move { Ok(answer) })
    }
    fn call_node(
        &self,
        to: SocketAddr,
        _node: NodeId,
        family: Family,
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'static, Result<Bytes, NetError>> {
        self.call(to, family, body, deadline)
    }
    fn send(&self, _to: SocketAddr, _f: Family, _b: Bytes) -> Result<(), NetError> {
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

fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes the struct it is given; a zeroed rusage is valid input.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn sync(a: &Arc<Service>, b: &Arc<Service>) -> (sibyl::repair::SyncStats, Duration, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let session = Session::new(
        a.clone(),
        Arc::new(Loopback { peer: b.clone() }),
        ReplicaExecution::Inline,
        (SocketAddr::from(([127, 0, 0, 1], 2)), NodeId(2)),
        Duration::from_secs(600),
    );
    let (cpu, t) = (cpu_secs(), Instant::now());
    let stats = rt.block_on(session.sync("t", whole())).expect("sync");
    (stats, t.elapsed(), cpu_secs() - cpu)
}

fn repair_cost() {
    let keys = env_usize("REPAIR_KEYS", 1_000_000);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (open(da.path(), true), open(db.path(), true));
    create(&a, ConflictMode::Lww);
    create(&b, ConflictMode::Lww);
    let t = Instant::now();
    for i in 0..keys {
        put(&a, i, format!("value-{i:014}").as_bytes());
    }
    let all = cells(&a);
    for chunk in all.chunks(10_000) {
        b.replica()
            .apply(chunk, |_| Some(ConflictMode::Lww))
            .unwrap();
    }
    println!("loaded {keys} keys on both replicas in {:.1?}", t.elapsed());
    // 0.1% divergent: half overwritten on each side.
    let divergent = keys / 1000;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut chosen = std::collections::BTreeSet::new();
    while chosen.len() < divergent {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chosen.insert((seed % keys as u64) as usize);
    }
    for (n, &i) in chosen.iter().enumerate() {
        let side = if n % 2 == 0 { &a } else { &b };
        put(side, i, format!("changed-{i:012}").as_bytes());
    }
    // Both versions of each divergent cell, encoded as a repair message carries them.
    let mut divergent_bytes = 0usize;
    let p = a.replica().partitioner();
    for &i in &chosen {
        let key = sibyl::replica::keys::RowPrefix::new(p, format!("key{i:010}").as_bytes())
            .cell_key(b"c");
        for side in [&a, &b] {
            let value = side.replica().read_raw("t", &key).unwrap().expect("stored");
            divergent_bytes += RawCell {
                table: "t".into(),
                key: key.clone(),
                value,
            }
            .encoded_len();
        }
    }
    let (s, took, cpu) = sync(&a, &b);
    let total = s.bytes_sent + s.bytes_received;
    let data = total - s.hash_bytes;
    println!(
        "repair of {divergent} divergent cells in {keys}: {took:.2?} wall, {cpu:.2} s cpu; \
         {} cells pulled, {} pushed; {total} bytes both ways ({} tree hashes, {data} keys and cells); \
         divergent cells {divergent_bytes} bytes; ratio (without hashes) {:.2}, with hashes {:.2}",
        s.cells_received,
        s.cells_sent,
        s.hash_bytes,
        data as f64 / divergent_bytes.max(1) as f64,
        total as f64 / divergent_bytes.max(1) as f64,
    );
    assert_eq!(cells(&a).len(), cells(&b).len());
    let (s, took, cpu) = sync(&a, &b);
    println!(
        "repair of identical replicas: {took:.2?} wall, {cpu:.3} s cpu, {} bytes both ways, {} cells",
        s.bytes_sent + s.bytes_received,
        s.cells_sent + s.cells_received
    );
}

fn put_rate(mode: ConflictMode, anti_entropy: bool, n: usize) -> f64 {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), anti_entropy);
    create(&s, mode);
    let value = [b'v'; 20];
    let t = Instant::now();
    for i in 0..n {
        put(&s, i, &value);
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn write_path() {
    let n = env_usize("PUT_KEYS", 300_000);
    for mode in [ConflictMode::Lww, ConflictMode::Causal] {
        let (mut on, mut off) = (0f64, 0f64);
        for _ in 0..3 {
            on = on.max(put_rate(mode, true, n));
            off = off.max(put_rate(mode, false, n));
        }
        println!(
            "{mode:?} puts/s, best of 3 x {n}: trees on {on:.0}, off {off:.0}, on/off {:.2}",
            on / off
        );
    }
}

fn main() {
    match std::env::var("REPAIR_BENCH").as_deref() {
        Ok("repair") => repair_cost(),
        Ok("write") => write_path(),
        _ => {
            repair_cost();
            write_path();
        }
    }
}
