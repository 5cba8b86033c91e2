//! A node process that requires authentication, for the process tests of issue 14
//! (`tests/auth_process.rs`, `tests/permissions_process.rs`, which include this file by
//! path): its directory and logs, the flags of `--auth required` with the first superuser
//! `admin`, and client helpers (log in, the server error of a result).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use sibyl_protocol::{Client, ClientError, ClientOptions, Credentials, ErrorKind};

#[path = "launcher.rs"]
mod launcher;
pub use launcher::SibylProcess;

/// How long a node may take to start (debug builds on a shared machine).
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a user created on one node may take to reach another (a gossip round or
/// two; usually the immediate push).
pub const SPREAD_DEADLINE: Duration = Duration::from_secs(30);
/// Polling interval of every wait.
pub const POLL: Duration = Duration::from_millis(100);
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "root-secret";

/// One node process with its directory and log.
pub struct Node {
    /// The process (ports, PID).
    pub process: SibylProcess,
    /// Its directory: `data/`, the logs, the password file.
    pub dir: PathBuf,
    /// How many times it was started (the log of start `n` is `log.n`).
    pub starts: usize,
}

impl Node {
    pub fn new(dir: &Path, name: &str) -> Node {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Node {
            process: SibylProcess::new(&dir.join("data")),
            dir,
            starts: 0,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join(format!("log.{}", self.starts))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The flags of a node that requires authentication, with the first superuser.
    pub fn auth_flags(&self) -> Vec<String> {
        let pw = self.dir.join("admin-password");
        std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n")).unwrap();
        vec![
            "--auth".into(),
            "required".into(),
            "--auth-superuser".into(),
            ADMIN.into(),
            "--auth-superuser-password-file".into(),
            pw.to_string_lossy().into_owned(),
        ]
    }

    pub fn spawn(&mut self, extra: &[String]) {
        self.starts += 1;
        let log = self.log();
        self.process.spawn(extra, &log, &log);
    }

    /// Starts with `extra` and waits until the client port accepts connections.
    pub fn start(&mut self, extra: &[String]) {
        self.spawn(extra);
        let log = self.log();
        self.process.wait_until(
            "accepting clients",
            START_DEADLINE,
            |p| std::net::TcpStream::connect(p.client).is_ok(),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
    }

    pub fn addr(&self) -> String {
        self.process.client.to_string()
    }
}

pub fn options(credentials: Option<(&str, &str)>) -> ClientOptions {
    ClientOptions {
        token_aware: false,
        pool_size: 1,
        // Longer than the longest delay of a failed login (5 s).
        connect_timeout: Duration::from_secs(20),
        request_timeout: Duration::from_secs(20),
        credentials: credentials.map(|(user, password)| Credentials {
            user: user.into(),
            password: password.into(),
        }),
        ..ClientOptions::default()
    }
}

pub async fn login(addr: &str, user: &str, password: &str) -> Result<Client, ClientError> {
    Client::connect_with(&[addr], options(Some((user, password)))).await
}

pub async fn admin(addr: &str) -> Client {
    login(addr, ADMIN, ADMIN_PASSWORD).await.unwrap()
}

pub fn server_kind(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorKind {
    match r {
        Err(ClientError::Server(e)) => e.kind,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// A started node that requires authentication, with the superuser `admin`.
pub fn auth_node(dir: &Path) -> Node {
    let mut n = Node::new(dir, "n1");
    let flags = n.auth_flags();
    n.start(&flags);
    n
}
