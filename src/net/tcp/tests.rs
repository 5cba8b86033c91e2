//! Behaviour of [`TcpNetwork`] over loopback: one behaviour per test.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

use super::*;
use crate::net::frame::HEADER_BYTES;
use crate::net::{HandlerError, PeerInfo};

/// Requests whose body starts with `wait` take a permit of `gate` first; others answer
/// at once; every answer echoes the body. A request or one-way body containing `panic`
/// makes the handler panic (after the gate). One-way messages take a permit of
/// `msg_gate` (when set) and are reported on `seen`.
struct TestHandler {
    gate: Arc<Semaphore>,
    msg_gate: Option<Arc<Semaphore>>,
    seen: mpsc::UnboundedSender<Bytes>,
}

impl PeerHandler for TestHandler {
    fn request(
        &self,
        _from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let gate = self.gate.clone();
        Box::pin(async move {
            if body.starts_with(b"wait") {
                gate.acquire()
                    .await
                    .map_err(|_| HandlerError::new("gate closed"))?
                    .forget();
            }
            if body.starts_with(b"fail") {
                return Err(HandlerError::new("asked to fail"));
            }
            if body.windows(5).any(|w| w == b"panic") {
                panic!("asked to panic");
            }
            Ok(body)
        })
    }

    fn message(&self, _from: PeerInfo, body: Bytes) -> BoxFuture<'static, ()> {
        let gate = self.msg_gate.clone();
        let seen = self.seen.clone();
        Box::pin(async move {
            if let Some(g) = gate {
                if let Ok(p) = g.acquire().await {
                    p.forget();
                }
            }
            if body.windows(5).any(|w| w == b"panic") {
                panic!("asked to panic");
            }
            let _ = seen.send(body);
        })
    }
}

pub(super) struct Node {
    pub(super) net: TcpNetwork,
    gate: Arc<Semaphore>,
    msg_gate: Arc<Semaphore>,
    seen: mpsc::UnboundedReceiver<Bytes>,
}

pub(super) fn opts(cluster: &str, id: u64) -> TcpOptions {
    let mut o = TcpOptions::new(cluster, NodeId(id));
    o.backoff_max = Duration::from_millis(200);
    o
}

pub(super) async fn node_at(addr: SocketAddr, o: TcpOptions, gated_messages: bool) -> Node {
    let net = TcpNetwork::bind(addr, o).await.expect("bind");
    let gate = Arc::new(Semaphore::new(0));
    let msg_gate = Arc::new(Semaphore::new(0));
    let (tx, seen) = mpsc::unbounded_channel();
    for family in [Family::Replica, Family::Stream, Family::Gossip] {
        let handler = TestHandler {
            gate: gate.clone(),
            msg_gate: (gated_messages && family == Family::Stream).then(|| msg_gate.clone()),
            seen: tx.clone(),
        };
        net.register(family, Arc::new(handler)).expect("register");
    }
    Node {
        net,
        gate,
        msg_gate,
        seen,
    }
}

async fn node(id: u64) -> Node {
    node_at(any(), opts("test", id), false).await
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Polls `cond` every 10 ms until it holds or 10 s pass.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn call(
    from: &Node,
    to: &Node,
    body: &'static [u8],
) -> BoxFuture<'static, Result<Bytes, NetError>> {
    from.net.call(
        to.net.local_addr(),
        Family::Replica,
        Bytes::from_static(body),
        soon(),
    )
}

#[tokio::test]
async fn tcp_call_answered() {
    let (a, b) = (node(1).await, node(2).await);
    assert_eq!(
        call(&a, &b, b"hello").await,
        Ok(Bytes::from_static(b"hello"))
    );
    let failed = call(&a, &b, b"fail").await;
    assert!(
        matches!(failed, Err(NetError::Remote { ref message, .. }) if message == "asked to fail"),
        "{failed:?}"
    );
    a.net.shutdown().await;
    b.net.shutdown().await;
}

#[tokio::test]
async fn tcp_answers_out_of_order() {
    let (a, b) = (node(1).await, node(2).await);
    let slow = tokio::spawn(call(&a, &b, b"wait-slow"));
    assert_eq!(call(&a, &b, b"fast").await, Ok(Bytes::from_static(b"fast")));
    assert!(
        !slow.is_finished(),
        "the slow call is still waiting for its gate"
    );
    b.gate.add_permits(1);
    assert_eq!(
        slow.await.expect("join"),
        Ok(Bytes::from_static(b"wait-slow"))
    );
}

#[tokio::test]
async fn tcp_call_times_out() {
    let (a, b) = (node(1).await, node(2).await);
    let deadline = Instant::now() + Duration::from_millis(100);
    let r = a
        .net
        .call(
            b.net.local_addr(),
            Family::Replica,
            Bytes::from_static(b"wait"),
            deadline,
        )
        .await;
    assert!(
        matches!(r, Err(NetError::Timeout { addr, .. }) if addr == b.net.local_addr()),
        "{r:?}"
    );
}

#[tokio::test]
async fn tcp_call_to_a_closed_port_is_unreachable() {
    let a = node(1).await;
    let closed = std::net::TcpListener::bind(any())
        .expect("bind")
        .local_addr()
        .expect("addr");
    let r = a
        .net
        .call(closed, Family::Replica, Bytes::new(), soon())
        .await;
    assert!(
        matches!(r, Err(NetError::Unreachable { addr, .. }) if addr == closed),
        "{r:?}"
    );
    // In backoff now: refused at once, without queueing.
    let r = a.net.send(closed, Family::Replica, Bytes::new());
    assert!(matches!(r, Err(NetError::Unreachable { .. })), "{r:?}");
}

#[tokio::test]
async fn tcp_send_on_a_full_queue_is_overloaded() {
    // A listener that accepts and never answers the handshake: the lane never drains.
    let silent = std::net::TcpListener::bind(any()).expect("bind");
    let to = silent.local_addr().expect("addr");
    let mut o = opts("test", 1);
    o.small_queue = 2;
    let a = node_at(any(), o, false).await;
    let mut results = Vec::new();
    for _ in 0..4 {
        results.push(a.net.send(to, Family::Gossip, Bytes::from_static(b"m")));
    }
    assert!(results.iter().take(2).all(Result::is_ok), "{results:?}");
    assert!(
        matches!(
            results.last(),
            Some(Err(NetError::Overloaded {
                what: "outbound queue",
                ..
            }))
        ),
        "{results:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn tcp_too_many_requests_in_flight_is_overloaded() {
    let a = node(1).await;
    let mut o = opts("test", 2);
    o.max_in_flight = 1;
    let b = node_at(any(), o, false).await;
    let first = tokio::spawn(call(&a, &b, b"wait"));
    let second = call(&a, &b, b"x").await;
    assert!(
        matches!(
            second,
            Err(NetError::Overloaded {
                what: "requests in flight at the peer",
                ..
            })
        ),
        "{second:?}"
    );
    b.gate.add_permits(1);
    assert_eq!(first.await.expect("join"), Ok(Bytes::from_static(b"wait")));
}

#[tokio::test]
async fn tcp_call_after_shutdown_is_closed() {
    let (a, b) = (node(1).await, node(2).await);
    assert!(call(&a, &b, b"x").await.is_ok());
    a.net.shutdown().await;
    assert_eq!(call(&a, &b, b"x").await, Err(NetError::Closed));
    assert_eq!(
        a.net.send(b.net.local_addr(), Family::Gossip, Bytes::new()),
        Err(NetError::Closed)
    );
}

/// Captures every log line written while the guard lives (this thread only: the tests
/// run on a current-thread runtime, so every task of both nodes logs here).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    (buf, tracing::subscriber::set_default(subscriber))
}

fn logged(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

#[tokio::test]
async fn tcp_handshake_refused_for_another_cluster_and_logged_on_both_sides() {
    let (logs, _guard) = capture_logs();
    let a = node_at(any(), opts("alpha", 1), false).await;
    let b = node_at(any(), opts("beta", 2), false).await;
    let r = call(&a, &b, b"x").await;
    assert!(
        matches!(&r, Err(NetError::Refused { reason, .. }) if reason.contains("\"beta\"") && reason.contains("\"alpha\"")),
        "{r:?}"
    );
    let text = logged(&logs);
    assert!(
        text.contains("refused a peer handshake"),
        "acceptor log missing:\n{text}"
    );
    assert!(
        text.contains("peer refused our handshake"),
        "connector log missing:\n{text}"
    );
}

#[tokio::test]
async fn tcp_handshake_refused_for_another_version_and_logged_on_both_sides() {
    let (logs, _guard) = capture_logs();
    let mut o = opts("test", 1);
    o.version = PEER_PROTOCOL_VERSION + 1;
    let a = node_at(any(), o, false).await;
    let b = node(2).await;
    let r = call(&a, &b, b"x").await;
    assert!(
        matches!(&r, Err(NetError::Refused { reason, .. }) if reason.contains("version")),
        "{r:?}"
    );
    let text = logged(&logs);
    assert!(
        text.contains("refused a peer handshake") && text.contains("OtherVersion"),
        "{text}"
    );
    assert!(text.contains("peer refused our handshake"), "{text}");
}

#[tokio::test]
async fn tcp_malformed_frame_closes_only_that_connection() {
    let (a, b) = (node(1).await, node(2).await);
    assert!(call(&a, &b, b"before").await.is_ok());
    let bad_listen: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let to = b.net.local_addr();
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(to).expect("connect");
        let hello = Hello {
            version: PEER_PROTOCOL_VERSION,
            lane: Lane::Small,
            node: NodeId(99),
            listen: bad_listen,
            cluster: "test".into(),
        };
        s.write_all(&hello.encode()).expect("hello");
        s
    })
    .await
    .expect("join");
    wait_for("the raw connection to be accepted", || {
        b.net.inbound_from(bad_listen) == 1
    })
    .await;
    let mut raw = raw;
    raw.write_all(&[0xEE; HEADER_BYTES]).expect("garbage");
    wait_for("the malformed connection to be closed", || {
        b.net.inbound_from(bad_listen) == 0
    })
    .await;
    assert_eq!(
        b.net.inbound_from(a.net.local_addr()),
        1,
        "the good connection stays"
    );
    assert_eq!(
        call(&a, &b, b"after").await,
        Ok(Bytes::from_static(b"after"))
    );
}

#[tokio::test]
async fn tcp_reconnects_after_the_peer_restarts() {
    let a = node(1).await;
    let b = node(2).await;
    let addr = b.net.local_addr();
    assert!(call(&a, &b, b"x").await.is_ok());
    b.net.shutdown().await;
    drop(b);
    let r = a
        .net
        .call(addr, Family::Replica, Bytes::new(), soon())
        .await;
    assert!(matches!(r, Err(NetError::Unreachable { .. })), "{r:?}");
    let b = node_at(addr, opts("test", 2), false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call(&a, &b, b"again").await {
            Ok(body) => break assert_eq!(body, Bytes::from_static(b"again")),
            Err(e) => assert!(Instant::now() < deadline, "never reconnected: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tcp_call_node_refuses_another_node_at_the_address() {
    let a = node(1).await;
    let b = node(2).await;
    let addr = b.net.local_addr();
    let to = |node: u64| {
        a.net.call_node(
            addr,
            NodeId(node),
            Family::Replica,
            Bytes::from_static(b"x"),
            soon(),
        )
    };
    assert_eq!(to(2).await, Ok(Bytes::from_static(b"x")));
    b.net.shutdown().await;
    drop(b);
    // A new node (a wiped disk's new id) comes back at the same address.
    let c = node_at(addr, opts("test", 3), false).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match to(2).await {
            Err(NetError::Unreachable { .. }) => {
                assert!(Instant::now() < deadline, "never reconnected");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other,
        }
    };
    let wrong = Err(NetError::WrongNode {
        addr,
        expected: NodeId(2),
        found: NodeId(3),
    });
    // Answered by node 3: discarded. Then refused before sending.
    assert_eq!(first, wrong);
    assert_eq!(to(2).await, wrong);
    // Calls meant for node 3, or for whoever is there, go through.
    assert_eq!(to(3).await, Ok(Bytes::from_static(b"x")));
    assert_eq!(call(&a, &c, b"y").await, Ok(Bytes::from_static(b"y")));
    a.net.shutdown().await;
    c.net.shutdown().await;
}

#[tokio::test]
async fn tcp_bulk_lane_does_not_delay_small_calls() {
    let a = node(1).await;
    let mut b = node_at(any(), opts("test", 2), true).await;
    let to = b.net.local_addr();
    // Eight 1 MiB stream chunks; b's stream handler holds the first until released, so
    // the bulk connection stops being read and its socket buffers fill.
    for i in 0..8u8 {
        let chunk = Bytes::from(vec![i; 1 << 20]);
        a.net.send(to, Family::Stream, chunk).expect("bulk queued");
    }
    for _ in 0..50 {
        assert_eq!(
            call(&a, &b, b"small").await,
            Ok(Bytes::from_static(b"small"))
        );
    }
    assert!(
        b.seen.try_recv().is_err(),
        "the bulk transfer is still held"
    );
    b.msg_gate.add_permits(8);
    for i in 0..8u8 {
        let chunk = b.seen.recv().await.expect("chunk");
        assert_eq!((chunk.len(), chunk.first().copied()), (1 << 20, Some(i)));
    }
}

#[tokio::test]
async fn tcp_disconnect_closes_a_departed_peers_connections() {
    let (a, b) = (node(1).await, node(2).await);
    assert!(call(&a, &b, b"x").await.is_ok());
    let (a_addr, b_addr) = (a.net.local_addr(), b.net.local_addr());
    wait_for("b to hold a's connection", || {
        b.net.inbound_from(a_addr) == 1
    })
    .await;
    assert_eq!(a.net.outbound_to(b_addr), 1);
    b.net.disconnect(a_addr);
    wait_for("b to close a's connection", || {
        b.net.inbound_from(a_addr) == 0
    })
    .await;
    wait_for("a to see it closed", || a.net.outbound_to(b_addr) == 0).await;
    a.net.disconnect(b_addr);
    assert_eq!(a.net.outbound_to(b_addr), 0);
}

#[path = "tests_handler_panics.rs"]
mod handler_panics;

#[path = "tests_cancelled_calls.rs"]
mod cancelled_calls;

#[path = "tests_error_answers.rs"]
mod error_answers;
