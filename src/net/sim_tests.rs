//! Behaviour of [`SimNetwork`]: one fault per test, on a current-thread runtime with
//! paused time (so every test is deterministic; seeds are fixed and printed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::net::HandlerError;

/// Echoes requests; reports one-way messages on a channel.
struct Echo {
    seen: mpsc::UnboundedSender<(SocketAddr, Bytes)>,
}

impl PeerHandler for Echo {
    fn request(
        &self,
        _from: PeerInfo,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        Box::pin(async move { Ok(body) })
    }

    fn message(&self, from: PeerInfo, body: Bytes) -> BoxFuture<'static, ()> {
        let _ = self.seen.send((from.addr, body));
        Box::pin(async {})
    }
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7401))
}

struct Peer {
    net: SimNode,
    seen: mpsc::UnboundedReceiver<(SocketAddr, Bytes)>,
}

fn peer(world: &SimNetwork, i: u8) -> Peer {
    let net = world.node(addr(i), NodeId(u64::from(i)));
    let (tx, seen) = mpsc::unbounded_channel();
    net.register(Family::Replica, Arc::new(Echo { seen: tx }))
        .expect("register");
    Peer { net, seen }
}

fn quiet() -> SimConfig {
    SimConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::ZERO,
        ..SimConfig::default()
    }
}

fn within(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

fn body(i: u32) -> Bytes {
    Bytes::copy_from_slice(&i.to_be_bytes())
}

fn drain(p: &mut Peer) -> Vec<Bytes> {
    let mut got = Vec::new();
    while let Ok((_, b)) = p.seen.try_recv() {
        got.push(b);
    }
    got
}

#[tokio::test(start_paused = true)]
async fn sim_call_is_answered_after_two_latencies() {
    let world = SimNetwork::new(quiet(), 1);
    let (a, _b) = (peer(&world, 1), peer(&world, 2));
    let start = Instant::now();
    let r = a
        .net
        .call(addr(2), Family::Replica, body(7), within(1000))
        .await;
    assert_eq!(r, Ok(body(7)));
    assert_eq!(start.elapsed(), Duration::from_millis(10));
}

/// A noisy run: calls and one-way messages under jitter, loss, duplication, reordering.
async fn noisy_trace(seed: u64) -> Vec<SimTraceEvent> {
    println!("seed = {seed}");
    let config = SimConfig {
        latency: Duration::from_millis(1),
        jitter: Duration::from_millis(30),
        loss: 0.2,
        duplicate: 0.2,
        reorder: 0.2,
        reorder_delay: Duration::from_millis(50),
    };
    let world = SimNetwork::new(config, seed);
    let (a, b) = (peer(&world, 1), peer(&world, 2));
    let mut calls = Vec::new();
    for i in 0..40 {
        let _ = a.net.send(addr(2), Family::Replica, body(i));
        let _ = b.net.send(addr(1), Family::Replica, body(i));
        calls.push(a.net.call(addr(2), Family::Replica, body(i), within(500)));
    }
    for c in calls {
        let _ = c.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    world.shutdown().await;
    world.trace()
}

#[tokio::test(start_paused = true)]
async fn sim_same_seed_gives_the_same_trace() {
    let first = noisy_trace(42).await;
    assert!(first.len() > 120, "{} events", first.len());
    assert_eq!(first, noisy_trace(42).await);
    assert_ne!(first, noisy_trace(43).await);
}

#[tokio::test(start_paused = true)]
async fn sim_loss_makes_a_call_time_out() {
    let world = SimNetwork::new(
        SimConfig {
            loss: 1.0,
            ..quiet()
        },
        1,
    );
    let (a, _b) = (peer(&world, 1), peer(&world, 2));
    let r = a
        .net
        .call(addr(2), Family::Replica, body(1), within(100))
        .await;
    assert!(matches!(r, Err(NetError::Timeout { .. })), "{r:?}");
    assert_eq!(world.trace().first().map(|e| e.fate), Some(SimFate::Lost));
}

#[tokio::test(start_paused = true)]
async fn sim_duplication_delivers_a_message_twice() {
    let world = SimNetwork::new(
        SimConfig {
            duplicate: 1.0,
            ..quiet()
        },
        1,
    );
    let (a, mut b) = (peer(&world, 1), peer(&world, 2));
    a.net.send(addr(2), Family::Replica, body(5)).expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(drain(&mut b), vec![body(5), body(5)]);
}

#[tokio::test(start_paused = true)]
async fn sim_reordering_lets_later_messages_overtake() {
    let world = SimNetwork::new(
        SimConfig {
            reorder: 0.3,
            ..quiet()
        },
        3,
    );
    let (a, mut b) = (peer(&world, 1), peer(&world, 2));
    for i in 0..50 {
        a.net.send(addr(2), Family::Replica, body(i)).expect("send");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = drain(&mut b);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).map(body).collect::<Vec<_>>(), "all arrive");
    assert_ne!(got, sorted, "some arrive out of order");
}

#[tokio::test(start_paused = true)]
async fn sim_one_way_partition_cuts_one_direction_only() {
    let world = SimNetwork::new(quiet(), 1);
    let (mut a, mut b) = (peer(&world, 1), peer(&world, 2));
    world.block(addr(1), addr(2));
    a.net.send(addr(2), Family::Replica, body(1)).expect("send");
    b.net.send(addr(1), Family::Replica, body(2)).expect("send");
    let r = a
        .net
        .call(addr(2), Family::Replica, body(3), within(100))
        .await;
    assert!(matches!(r, Err(NetError::Timeout { .. })), "{r:?}");
    assert!(drain(&mut b).is_empty(), "a -> b is cut");
    assert_eq!(drain(&mut a), vec![body(2)], "b -> a still flows");
    world.heal();
    let r = a
        .net
        .call(addr(2), Family::Replica, body(4), within(100))
        .await;
    assert_eq!(r, Ok(body(4)));
}

#[tokio::test(start_paused = true)]
async fn sim_crash_and_restart_of_a_node() {
    let world = SimNetwork::new(quiet(), 1);
    let (a, b) = (peer(&world, 1), peer(&world, 2));
    world.crash(addr(2));
    let r = a
        .net
        .call(addr(2), Family::Replica, body(1), within(100))
        .await;
    assert!(matches!(r, Err(NetError::Unreachable { .. })), "{r:?}");
    assert_eq!(
        b.net.send(addr(1), Family::Replica, body(1)),
        Err(NetError::Closed)
    );
    let restarted = world.restart(addr(2)).expect("known node");
    let (tx, _seen) = mpsc::unbounded_channel();
    restarted
        .register(Family::Replica, Arc::new(Echo { seen: tx }))
        .expect("register");
    let r = a
        .net
        .call(addr(2), Family::Replica, body(2), within(100))
        .await;
    assert_eq!(r, Ok(body(2)));
    assert_eq!(
        b.net.send(addr(1), Family::Replica, body(1)),
        Err(NetError::Closed),
        "the old process stays dead"
    );
}

#[tokio::test(start_paused = true)]
async fn sim_crash_drops_messages_in_flight() {
    let world = SimNetwork::new(quiet(), 1);
    let (a, mut b) = (peer(&world, 1), peer(&world, 2));
    a.net.send(addr(2), Family::Replica, body(1)).expect("send");
    world.crash(addr(2));
    let _restarted = world.restart(addr(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&mut b).is_empty());
    assert!(world.trace().iter().any(|e| e.fate == SimFate::Crashed));
}

#[tokio::test(start_paused = true)]
async fn sim_clock_skew_shows_in_a_nodes_clock() {
    let world = SimNetwork::new(quiet(), 1);
    let (_a, _b) = (peer(&world, 1), peer(&world, 2));
    world.set_skew(addr(2), 5_000_000);
    let (ca, cb) = (world.clock(addr(1)), world.clock(addr(2)));
    assert_eq!(cb.now_micros() - ca.now_micros(), 5_000_000);
    let before = ca.now_micros();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ca.now_micros() - before,
        3_000_000,
        "clocks follow simulated time"
    );
}

#[tokio::test(start_paused = true)]
async fn sim_dropped_call_leaves_no_pending_entry() {
    // Seed 13 (printed for replay); every message is lost, so no answer ever comes.
    let world = SimNetwork::new(
        SimConfig {
            loss: 1.0,
            ..quiet()
        },
        13,
    );
    let (a, b) = (peer(&world, 1), peer(&world, 2));
    let call = a
        .net
        .call(b.net.local_addr(), Family::Replica, body(1), within(60_000));
    assert_eq!(lock(&world.shared).nodes[&addr(1)].pending.len(), 1);
    // A caller that stops waiting (a quorum reached elsewhere, a select) drops it.
    drop(call);
    assert_eq!(lock(&world.shared).nodes[&addr(1)].pending.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn sim_crash_fails_calls_outstanding_to_it_unreachable() {
    // Over TCP a crashed peer's connection breaks and its outstanding calls fail
    // `Unreachable` at once; the simulation must not turn that into a timeout.
    let world = SimNetwork::new(quiet(), 1);
    let (a, _b) = (peer(&world, 1), peer(&world, 2));
    let started = Instant::now();
    let call = a
        .net
        .call(addr(2), Family::Replica, body(1), within(60_000));
    world.crash(addr(2));
    let r = call.await;
    assert!(
        matches!(r, Err(NetError::Unreachable { addr: to, .. }) if to == addr(2)),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1), "failed at once");
}

/// Panics while taking a message or a request, before returning its future.
struct Panicking;

impl PeerHandler for Panicking {
    fn request(
        &self,
        _from: PeerInfo,
        _body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        panic!("asked to panic");
    }

    fn message(&self, _from: PeerInfo, _body: Bytes) -> BoxFuture<'static, ()> {
        panic!("asked to panic");
    }
}

#[tokio::test(start_paused = true)]
async fn sim_handler_panic_fails_only_its_message() {
    let world = SimNetwork::new(quiet(), 1);
    let (a, b) = (peer(&world, 1), peer(&world, 2));
    b.net
        .register(Family::Gossip, Arc::new(Panicking))
        .expect("register");
    a.net.send(addr(2), Family::Gossip, body(1)).expect("send");
    let r = a
        .net
        .call(addr(2), Family::Gossip, body(2), within(1_000))
        .await;
    assert!(
        matches!(r, Err(NetError::Remote { ref message, .. }) if message.contains("panicked")),
        "{r:?}"
    );
    // The router survived both: other families are still delivered.
    let r = a
        .net
        .call(addr(2), Family::Replica, body(3), within(1_000))
        .await;
    assert_eq!(r, Ok(body(3)));
}

#[tokio::test(start_paused = true)]
async fn sim_call_node_refuses_another_node_at_the_address() {
    let world = SimNetwork::new(quiet(), 1);
    let a = peer(&world, 1);
    let _b = peer(&world, 2);
    let call = |node: u64| {
        a.net.call_node(
            addr(2),
            NodeId(node),
            Family::Replica,
            body(1),
            within(1000),
        )
    };
    assert_eq!(call(2).await, Ok(body(1)));
    // Node 2's disk is wiped: a new node id comes up at its address.
    world.crash(addr(2));
    let new = world.node(addr(2), NodeId(9));
    let (tx, _seen) = mpsc::unbounded_channel();
    new.register(Family::Replica, Arc::new(Echo { seen: tx }))
        .expect("register");
    assert_eq!(
        call(2).await,
        Err(NetError::WrongNode {
            addr: addr(2),
            expected: NodeId(2),
            found: NodeId(9),
        })
    );
    assert_eq!(call(9).await, Ok(body(1)));
}
