//! The budget of request data in flight on accepted peer connections: a frame over the
//! read buffer waits for its share before its body is read, and frames of other
//! connections go on meanwhile.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tests::{node_at, opts};
use super::*;
use crate::net::frame::{Frame, FrameHeader, FrameKind, HEADER_BYTES, MAX_BODY_BYTES};

/// Connects to `to` as a peer by hand (hello, welcome), for frames written directly.
async fn raw_peer(to: SocketAddr) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(to).await.expect("connect");
    let hello = Hello {
        version: PEER_PROTOCOL_VERSION,
        lane: Lane::Small,
        node: NodeId(99),
        listen: "127.0.0.1:9".parse().expect("addr"),
        cluster: "test".into(),
    };
    s.write_all(&hello.encode()).await.expect("hello");
    crate::net::handshake::Welcome::read(&mut s)
        .await
        .expect("welcome");
    s
}

#[tokio::test]
async fn tcp_large_frame_waits_for_the_request_data_budget() {
    // A budget of one largest frame.
    let b = node_at(
        "127.0.0.1:0".parse().expect("addr"),
        TcpOptions {
            max_request_data_in_flight: 0,
            ..opts("test", 2)
        },
        false,
    )
    .await;
    let a = node_at("127.0.0.1:0".parse().expect("addr"), opts("test", 1), false).await;
    let c = node_at("127.0.0.1:0".parse().expect("addr"), opts("test", 3), false).await;
    // The hog: a small request, then the header of a largest frame, in one write. The
    // small request's answer comes once the header's share is taken.
    let mut hog = raw_peer(b.net.local_addr()).await;
    let small = Frame::new(
        Family::Replica,
        FrameKind::Request,
        1,
        Bytes::from_static(b"hi"),
    )
    .expect("frame");
    let huge = Frame::new(
        Family::Replica,
        FrameKind::Request,
        2,
        Bytes::from(vec![0u8; MAX_BODY_BYTES]),
    )
    .expect("frame");
    let mut bytes = small.to_vec();
    bytes.extend_from_slice(&huge.header());
    hog.write_all(&bytes).await.expect("write");
    let mut head = [0u8; HEADER_BYTES];
    hog.read_exact(&mut head).await.expect("answer");
    let answer = FrameHeader::decode(&head).expect("answer header");
    assert_eq!(answer.stream, 1);
    // So a large call from another node now waits for its share...
    let big = tokio::spawn(a.net.call(
        b.net.local_addr(),
        Family::Replica,
        Bytes::from(vec![7u8; 100 << 10]),
        Instant::now() + Duration::from_secs(30),
    ));
    // ...while small calls are answered.
    let echoed = c
        .net
        .call(
            b.net.local_addr(),
            Family::Replica,
            Bytes::from_static(b"small"),
            Instant::now() + Duration::from_secs(10),
        )
        .await;
    assert_eq!(echoed, Ok(Bytes::from_static(b"small")));
    assert!(
        !big.is_finished(),
        "a large frame was read past a spent budget"
    );
    // The hog leaves: its share comes back and the large call is answered.
    drop(hog);
    let answered = big
        .await
        .expect("join")
        .expect("answered once the budget frees");
    assert_eq!(answered.len(), 100 << 10);
}
