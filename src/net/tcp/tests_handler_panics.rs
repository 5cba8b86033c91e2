//! A panicking handler fails only its own request or message: the caller gets an error
//! at once and the connection keeps serving.

use super::*;

#[tokio::test]
async fn tcp_request_handler_panic_is_a_remote_error() {
    let (a, b) = (node(1).await, node(2).await);
    let panicking = tokio::spawn(call(&a, &b, b"wait-panic"));
    // Answered after b read the waiting request (one lane, frames in order): that
    // request now waits for the gate in a task of its own, where it will panic.
    assert_eq!(call(&a, &b, b"ping").await, Ok(Bytes::from_static(b"ping")));
    b.gate.add_permits(1);
    // The call's deadline is 10 s away: only an answer ends it within 5.
    let r = tokio::time::timeout(Duration::from_secs(5), panicking)
        .await
        .map(|joined| joined.expect("join"));
    assert!(
        matches!(r, Ok(Err(NetError::Remote { ref message, .. })) if message.contains("panicked")),
        "{r:?}"
    );
}

#[tokio::test]
async fn tcp_request_handler_panic_keeps_the_connection() {
    let (a, b) = (node(1).await, node(2).await);
    // Panics on its first poll (the fast path, on the connection's reader).
    let r = call(&a, &b, b"panic").await;
    assert!(
        matches!(r, Err(NetError::Remote { ref message, .. }) if message.contains("panicked")),
        "{r:?}"
    );
    assert_eq!(
        call(&a, &b, b"after").await,
        Ok(Bytes::from_static(b"after"))
    );
    assert_eq!(b.net.inbound_from(a.net.local_addr()), 1);
}

#[tokio::test]
async fn tcp_message_handler_panic_keeps_the_connection() {
    let (a, mut b) = (node(1).await, node(2).await);
    let to = b.net.local_addr();
    a.net
        .send(to, Family::Replica, Bytes::from_static(b"panic"))
        .expect("send");
    a.net
        .send(to, Family::Replica, Bytes::from_static(b"next"))
        .expect("send");
    let next = tokio::time::timeout(Duration::from_secs(5), b.seen.recv()).await;
    assert_eq!(next, Ok(Some(Bytes::from_static(b"next"))));
    assert_eq!(
        call(&a, &b, b"after").await,
        Ok(Bytes::from_static(b"after"))
    );
    assert_eq!(b.net.inbound_from(a.net.local_addr()), 1);
}
