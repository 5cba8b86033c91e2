//! Authentication on real `sibyl` processes (issue 14): nodes started with `--auth
//! required` and a first superuser, spoken to through the client library and, where the
//! exact bytes matter, raw frames. Free ports, a temp directory per test, conditions
//! polled with deadlines, every child killed by its own PID when the test ends.
#![allow(clippy::unwrap_used)] // tests may unwrap (workspace lint)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sibyl_protocol::scram::{ScramClient, MECHANISM};
use sibyl_protocol::{
    Client, ClientError, ErrorKind, Frame, FrameCodec, Request, Response, TableOptions,
    HANDSHAKE_MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

#[path = "common/auth_node.rs"]
mod auth_node;
use auth_node::{
    admin, auth_node, login, options, server_kind, Node, ADMIN, ADMIN_PASSWORD, POLL,
    SPREAD_DEADLINE,
};

/// A raw connection: handshake done, frames one at a time.
struct Raw {
    stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut raw = Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            codec: FrameCodec::with_max_frame_len(HANDSHAKE_MAX_FRAME_LEN),
            buf: BytesMut::new(),
        };
        let hello = Request::Handshake {
            version: PROTOCOL_VERSION,
            client: "auth-test".into(),
        };
        let r = raw.call(&hello, 0).await.unwrap();
        assert!(matches!(r, Response::Handshake { .. }), "{r:?}");
        raw
    }

    async fn send_frame(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        FrameCodec::with_max_frame_len(usize::MAX)
            .encode(frame, &mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            match tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf))
                .await
                .expect("the server answers within 30 s")
            {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn call(&mut self, request: &Request, stream_id: u32) -> Option<Response> {
        self.send_frame(request.to_frame(stream_id).unwrap()).await;
        let frame = self.read_frame().await?;
        Some(Response::from_frame(&frame).unwrap())
    }

    /// A SCRAM login; returns server-first and the answer to AUTH_FINISH.
    async fn login(&mut self, user: &str, password: &str) -> (String, Response) {
        let mut scram = ScramClient::new(user, password);
        let start = Request::AuthStart {
            mechanism: MECHANISM.into(),
            message: Bytes::from(scram.client_first().into_bytes()),
        };
        let server_first = match self.call(&start, 1).await.unwrap() {
            Response::AuthContinue { message } => String::from_utf8(message.to_vec()).unwrap(),
            other => panic!("AUTH_START answered {other:?}"),
        };
        let last = scram.client_final(&server_first).unwrap();
        let finish = Request::AuthFinish {
            message: Bytes::from(last.into_bytes()),
        };
        (server_first, self.call(&finish, 2).await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_unauthenticated_requests_are_denied() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let anonymous = Client::connect_with(&[n.addr()], options(None))
        .await
        .unwrap();
    anonymous.ping().await.unwrap();
    assert_eq!(
        server_kind(anonymous.list_tables().await),
        ErrorKind::Unauthenticated
    );
    let created = anonymous
        .create_table_if_not_exists("t", TableOptions::default())
        .await;
    assert_eq!(server_kind(created), ErrorKind::Unauthenticated);
    // After logging in, the same requests pass.
    let a = admin(&n.addr()).await;
    assert!(a.list_tables().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_pre_authentication_frame_cap_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let mut raw = Raw::connect(n.process.client).await;
    // Handshaken but not logged in: the 64 KiB cap still applies.
    let big = Frame {
        version: PROTOCOL_VERSION,
        flags: 0,
        opcode: sibyl_protocol::Opcode::Ping.as_u8(),
        stream_id: 9,
        body: Bytes::from(vec![0u8; HANDSHAKE_MAX_FRAME_LEN]),
    };
    raw.send_frame(big).await;
    let answer = raw
        .read_frame()
        .await
        .expect("an error frame before the close");
    let r = Response::from_frame(&answer).unwrap();
    assert!(
        matches!(&r, Response::Error(e) if e.kind == ErrorKind::Protocol),
        "{r:?}"
    );
    assert!(raw.read_frame().await.is_none(), "connection closed");
    // The node lives on.
    admin(&n.addr()).await.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_wrong_password_and_unknown_user_get_the_same_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let mut wrong = Raw::connect(n.process.client).await;
    let (first_wrong, answer_wrong) = wrong.login(ADMIN, "not-the-password").await;
    let mut unknown = Raw::connect(n.process.client).await;
    let (first_unknown, answer_unknown) = unknown.login("nobody", "not-the-password").await;
    assert_eq!(answer_wrong, answer_unknown, "one answer for both");
    assert!(
        matches!(&answer_wrong, Response::Error(e) if e.kind == ErrorKind::AuthenticationFailed),
        "{answer_wrong:?}"
    );
    // The server-first messages have the same shape: nonce, a 16-byte salt, 4096.
    let shape = |m: &str| -> Vec<usize> { m.split(',').map(str::len).skip(1).collect() };
    assert_eq!(shape(&first_wrong), shape(&first_unknown));
    assert!(first_unknown.ends_with(",i=4096"), "{first_unknown}");
    // Both connections are closed after the failure.
    assert!(wrong.read_frame().await.is_none());
    assert!(unknown.read_frame().await.is_none());
    // Through the client library: the same typed error, naming the user.
    match login(&n.addr(), "nobody", "x").await {
        Err(ClientError::AuthenticationFailed { user }) => assert_eq!(user, "nobody"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_only_holders_of_users_manage_users() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let a = admin(&n.addr()).await;
    assert!(a
        .create_user("carol", "carol-pw", false, false)
        .await
        .unwrap());
    let carol = login(&n.addr(), "carol", "carol-pw").await.unwrap();
    // Carol holds nothing: she manages no users.
    let denied = server_kind(carol.create_user("dave", "pw", false, false).await);
    assert_eq!(
        denied,
        ErrorKind::Unauthorized {
            permission: "users".into()
        }
    );
    assert!(matches!(
        server_kind(carol.drop_user(ADMIN, false).await),
        ErrorKind::Unauthorized { .. }
    ));
    assert!(matches!(
        server_kind(carol.list_users().await),
        ErrorKind::Unauthorized { .. }
    ));
    let names: Vec<(String, bool)> = a
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.superuser))
        .collect();
    assert_eq!(
        names,
        vec![(ADMIN.to_owned(), true), ("carol".to_owned(), false)]
    );
    // A new password applies to new logins; a dropped user cannot log in.
    a.alter_user_password("carol", "new-pw").await.unwrap();
    assert!(matches!(
        login(&n.addr(), "carol", "carol-pw").await,
        Err(ClientError::AuthenticationFailed { .. })
    ));
    login(&n.addr(), "carol", "new-pw").await.unwrap();
    assert!(a.drop_user("carol", false).await.unwrap());
    assert!(matches!(
        login(&n.addr(), "carol", "new-pw").await,
        Err(ClientError::AuthenticationFailed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_users_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = auth_node(tmp.path());
    let a = admin(&n.addr()).await;
    a.create_user("bob", "bob-pw", false, false).await.unwrap();
    let create = sibyl_protocol::Grant {
        permission: sibyl_protocol::Permission::Create,
        table: None,
    };
    assert!(a.grant("bob", create.permission, None).await.unwrap());
    drop(a);
    n.process.signal(libc::SIGTERM);
    let logs = n.logs();
    n.process.wait_exit(|| logs.clone());
    let flags = n.auth_flags();
    n.start(&flags);
    login(&n.addr(), "bob", "bob-pw").await.unwrap();
    let users = admin(&n.addr()).await.list_users().await.unwrap();
    let bob = users.iter().find(|u| u.name == "bob").unwrap();
    assert_eq!(bob.grants, vec![create], "grants survive the restart");
    // The superuser flag did not recreate (or reset) the existing superuser.
    assert!(n.logs().contains("superuser exists"), "{}", n.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_created_user_logs_in_on_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    let n1 = auth_node(tmp.path());
    let mut n2 = Node::new(tmp.path(), "n2");
    let mut flags = n2.auth_flags();
    flags.extend(["--seeds".to_owned(), n1.process.peer.to_string()]);
    n2.start(&flags);
    admin(&n1.addr())
        .await
        .create_user("alice", "alice-pw", false, false)
        .await
        .unwrap();
    let deadline = Instant::now() + SPREAD_DEADLINE;
    loop {
        match login(&n2.addr(), "alice", "alice-pw").await {
            Ok(c) => {
                c.ping().await.unwrap();
                break;
            }
            Err(ClientError::AuthenticationFailed { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(POLL).await; // polling interval
            }
            Err(e) => panic!("alice never reached n2: {e}\n{}", n2.logs()),
        }
    }
    // A drop spreads the same way.
    admin(&n2.addr())
        .await
        .drop_user("alice", false)
        .await
        .unwrap();
    let deadline = Instant::now() + SPREAD_DEADLINE;
    while login(&n1.addr(), "alice", "alice-pw").await.is_ok() {
        assert!(Instant::now() < deadline, "the drop never reached n1");
        tokio::time::sleep(POLL).await; // polling interval
    }
}

#[test]
fn auth_non_loopback_node_without_auth_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut n = Node::new(tmp.path(), "n1");
    let port = n.process.client.port();
    n.process.client = SocketAddr::from(([0, 0, 0, 0], port));
    n.spawn(&[]);
    let logs = n.log();
    let status = n
        .process
        .wait_exit(|| std::fs::read_to_string(&logs).unwrap_or_default());
    assert_eq!(status.code(), Some(2), "{}", n.logs());
    let said = n.logs();
    assert!(said.contains("not a loopback address"), "{said}");
    assert!(said.contains("--auth required"), "{said}");
    assert!(said.contains("--insecure-no-auth"), "{said}");
    // With the explicit flag it starts (and serves on every address, loopback included).
    n.start(&["--insecure-no-auth".to_owned()]);
    let probe = SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect(probe).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failed_login_flood_does_not_block_another_client() {
    let tmp = tempfile::tempdir().unwrap();
    let n = auth_node(tmp.path());
    let good = admin(&n.addr()).await;
    let one = sibyl_protocol::Consistency::ONE;
    let single = TableOptions {
        replication_factor: 1,
        read_consistency: one,
        write_consistency: one,
        ..TableOptions::default()
    };
    good.create_table_if_not_exists("t", single).await.unwrap();
    let table = good.table("t");
    // Four attackers from the same address, three failed logins each, one after another
    // (a failure closes its connection): the later ones wait up to 5 s for their answer.
    let addr = n.addr();
    let flood: Vec<_> = (0..4)
        .map(|i| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut longest = Duration::ZERO;
                for j in 0..3 {
                    let started = Instant::now();
                    let r = login(&addr, ADMIN, &format!("guess-{i}-{j}")).await;
                    assert!(
                        matches!(r, Err(ClientError::AuthenticationFailed { .. })),
                        "{r:?}"
                    );
                    longest = longest.max(started.elapsed());
                }
                longest
            })
        })
        .collect();
    // Meanwhile the logged-in client keeps working, and a new login with the right
    // password from the same address is not delayed into a failure.
    let mut served = 0u32;
    while flood.iter().any(|h| !h.is_finished()) {
        table.put(format!("k{served}"), [("c", "v")]).await.unwrap();
        table.get(format!("k{served}")).await.unwrap();
        served += 1;
    }
    login(&n.addr(), ADMIN, ADMIN_PASSWORD)
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    let mut longest = Duration::ZERO;
    for h in flood {
        longest = longest.max(h.await.unwrap());
    }
    eprintln!("served {served} put+get pairs during the flood; slowest failure {longest:?}");
    // Twelve failures from one address: the seventh and later wait at least 3.2 s.
    assert!(
        longest >= Duration::from_secs(3),
        "failures were slowed: {longest:?}"
    );
    assert!(served > 0, "the other client was served during the flood");
}
