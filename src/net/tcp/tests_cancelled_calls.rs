//! Calls that end early leave nothing behind: one whose caller drops its future, one
//! racing the `disconnect` that stops its lane (it fails `Unreachable`, never `Closed`
//! or a wait on a queue nobody reads).

use super::*;

fn pending_to(from: &Node, to: &Node) -> usize {
    from.net
        .inner
        .peers
        .load()
        .get(&to.net.local_addr())
        .map_or(0, |p| lock(&p.small.pending).len())
}

#[tokio::test]
async fn tcp_dropped_call_leaves_no_pending_entry() {
    let (a, b) = (node(1).await, node(2).await);
    let waiting = call(&a, &b, b"wait");
    assert_eq!(pending_to(&a, &b), 1);
    // A caller that stops waiting (a quorum reached elsewhere, a select) drops it.
    drop(waiting);
    assert_eq!(pending_to(&a, &b), 0);
}

#[tokio::test]
async fn tcp_call_racing_a_disconnect_is_unreachable() {
    let (a, b) = (node(1).await, node(2).await);
    let to = b.net.local_addr();
    assert!(call(&a, &b, b"x").await.is_ok());
    // A call that picked its lane just before `disconnect` stopped that lane.
    let lane = a.net.outbound(to, Lane::Small).expect("lane");
    a.net.disconnect(to);
    wait_for("the lane to stop", || lane.queue.is_closed()).await;
    let r = a
        .net
        .call_on(lane, Family::Replica, Bytes::from_static(b"y"), soon())
        .await;
    assert!(
        matches!(r, Err(NetError::Unreachable { addr, .. }) if addr == to),
        "{r:?}"
    );
}
