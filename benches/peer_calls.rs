//! Small request throughput over loopback, peer path beside client path (not a test).
//!
//! - Peer: two [`TcpNetwork`]s, node A calling node B's replica family with an 8-byte
//!   body that B's handler echoes: one multiplexed connection, `IN_FLIGHT` calls
//!   outstanding at once.
//! - Client: `sibyl_protocol`'s client (one pooled connection) sending PING to an
//!   in-process `sibyl::server` over a real service, the same number in flight.
//!
//! Prints calls/s for both and the ratio peer/client (the peer path should not be the
//! slower). Run: `cargo bench --bench peer_calls` (release). `PEER_CALLS` overrides the
//! number of calls per round; `PEER_BENCH=peer` or `=client` runs one path only (for
//! profiling).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl::net::{
    BoxFuture, Family, HandlerError, PeerHandler, PeerInfo, PeerNetwork, TcpNetwork, TcpOptions,
};
use sibyl::ring::NodeId;
use sibyl::server::{self, ServerOptions};
use sibyl::service::{Service, ServiceOptions};
use sibyl_protocol::client::{Client, ClientOptions};

/// Calls outstanding at once (both paths).
const IN_FLIGHT: usize = 128;
/// Rounds per setup of a path.
const ROUNDS: usize = 2;
/// Setups per path, alternating peer and client so a change of load on the (shared)
/// machine hits both alike; the best round of each path is reported.
const ALTERNATIONS: usize = 3;

struct Echo;

impl PeerHandler for Echo {
    fn request(
        &self,
        _from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        Box::pin(async move { Ok(body) })
    }
    fn message(&self, _from: PeerInfo, _body: Bytes) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

fn calls_per_round() -> usize {
    std::env::var("PEER_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// Runs `total` calls of `one` with `IN_FLIGHT` workers; returns calls per second.
async fn measure<F, Fut>(total: usize, one: F) -> f64
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let per_worker = total / IN_FLIGHT;
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let one = one.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..per_worker {
                assert!(one().await, "a call failed");
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    (per_worker * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
}

async fn peer_path(total: usize) -> f64 {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let a = TcpNetwork::bind(any, TcpOptions::new("bench", NodeId(1)))
        .await
        .expect("bind a");
    let b = TcpNetwork::bind(any, TcpOptions::new("bench", NodeId(2)))
        .await
        .expect("bind b");
    b.register(Family::Replica, Arc::new(Echo))
        .expect("register");
    let to = b.local_addr();
    let body = Bytes::from_static(b"pingpong");
    let mut best: f64 = 0.0;
    for _ in 0..ROUNDS {
        let (a, body) = (a.clone(), body.clone());
        let rate = measure(total, move || {
            let call = a.call(
                to,
                Family::Replica,
                body.clone(),
                tokio::time::Instant::now() + Duration::from_secs(10),
            );
            async move { call.await.is_ok() }
        })
        .await;
        best = best.max(rate);
    }
    a.shutdown().await;
    b.shutdown().await;
    best
}

async fn client_path(total: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = ServiceOptions {
        memtable_size: 1 << 20,
        ..ServiceOptions::new(dir.path(), Arc::new(sibyl::versioning::SystemClock))
    };
    let service = Arc::new(Service::open(opts).expect("service"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(server::serve(
        listener,
        service.clone(),
        ServerOptions {
            max_connections: 64,
            max_in_flight: 4096,
            max_frame_len: sibyl_protocol::DEFAULT_MAX_FRAME_LEN,
            max_request_data_in_flight: server::DEFAULT_MAX_REQUEST_DATA_IN_FLIGHT,
            idle_timeout: None,
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 64,
            shutdown_grace: Duration::from_secs(1),
            requests: Arc::default(),
            auth: sibyl::auth::Authenticator::open_access(),
        },
        stop_rx,
    ));
    let client = Client::connect_with(
        &[addr.to_string()],
        ClientOptions {
            pool_size: 1,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect");
    let mut best: f64 = 0.0;
    for _ in 0..ROUNDS {
        let client = client.clone();
        let rate = measure(total, move || {
            let client = client.clone();
            async move { client.ping().await.is_ok() }
        })
        .await;
        best = best.max(rate);
    }
    drop(client);
    let _ = stop_tx.send(true);
    let _ = server.await;
    best
}

fn main() {
    // `cargo bench` passes `--bench`; no other arguments are taken.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let total = calls_per_round();
    println!(
        "small calls over loopback: {IN_FLIGHT} in flight on one connection, {total} calls \
         per round, best of {} rounds, peer and client alternating",
        ROUNDS * ALTERNATIONS
    );
    let only = std::env::var("PEER_BENCH").unwrap_or_default();
    let mut peer: Option<f64> = None;
    let mut client: Option<f64> = None;
    for _ in 0..ALTERNATIONS {
        if only != "client" {
            let rate = runtime.block_on(peer_path(total));
            peer = Some(peer.map_or(rate, |p| p.max(rate)));
        }
        if only != "peer" {
            let rate = runtime.block_on(client_path(total));
            client = Some(client.map_or(rate, |c| c.max(rate)));
        }
    }
    if let Some(rate) = peer {
        println!("peer   (TcpNetwork call, replica family, 8-byte echo): {rate:>12.0} calls/s");
    }
    if let Some(rate) = client {
        println!("client (sibyl_protocol PING to sibyl::server):        {rate:>12.0} calls/s");
    }
    if let (Some(p), Some(c)) = (peer, client) {
        println!("ratio peer/client: {:.2}", p / c);
    }
}
