//! A call whose caller stops waiting (drops its future) leaves nothing behind.

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
