//! Error answers (`NoHandler`, `Overloaded`) are never dropped, even when the
//! connection's answer queue is full: the reader waits for room (backpressure), as it
//! does for a handler's answer.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

use super::conn::FrameReader;
use super::*;
use crate::net::frame::ErrorCode;

/// Requests sent without reading answers: their answers (29 bytes each) are several
/// times what the socket buffers hold (tcp_wmem max 4 MiB), so b's answer queue fills.
const REQUESTS: u32 = 300_000;

#[tokio::test]
async fn tcp_error_answers_are_not_dropped_when_the_answer_queue_is_full() {
    let b = node(2).await;
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut s = socket.connect(b.net.local_addr()).await.expect("connect");
    let hello = Hello {
        version: PEER_PROTOCOL_VERSION,
        lane: Lane::Small,
        node: NodeId(99),
        listen: "127.0.0.1:9".parse().expect("addr"),
        cluster: "test".into(),
    };
    s.write_all(&hello.encode()).await.expect("hello");
    let welcome = crate::net::handshake::Welcome::read(&mut s)
        .await
        .expect("welcome");
    assert_eq!(
        welcome.status,
        crate::net::handshake::HandshakeStatus::Accepted
    );
    let (read, mut write) = s.into_split();
    // Family Hints has no handler at b: every request is answered `NoHandler`.
    let mut requests = Vec::with_capacity(REQUESTS as usize * HEADER_BYTES);
    for stream in 1..=REQUESTS {
        let f = Frame::new(Family::Hints, FrameKind::Request, stream, Bytes::new()).expect("frame");
        requests.extend_from_slice(&f.to_vec());
    }
    let writer = tokio::spawn(async move {
        write.write_all(&requests).await.expect("requests");
        write
    });
    let mut reader = FrameReader::new(read);
    let mut answered = 0u32;
    while answered < REQUESTS {
        // An answer that never comes shows as a silent gap.
        let next = tokio::time::timeout(Duration::from_secs(3), reader.next()).await;
        let Ok(Ok(Some((h, body)))) = next else { break };
        assert_eq!(h.kind, FrameKind::Error);
        let (code, _) = crate::net::frame::decode_error_body(&body).expect("error body");
        assert_eq!(code, ErrorCode::NoHandler);
        answered += 1;
    }
    assert_eq!(answered, REQUESTS, "every request answered");
    drop(writer.await.expect("join"));
}
