//! Client authentication and authorization: users with SCRAM-SHA-256 password verifiers,
//! the login exchange a connection runs after its HANDSHAKE, and the permission check
//! every later request passes (`doc/wire_format.md`, section 6 "Authentication", "Users"
//! and "Permissions").
//!
//! # Layout
//! - [`record`]: a user's record (with its [`record::Permissions`]) and the `users` file
//!   (byte formats).
//! - [`permissions`]: what each request needs, and the check of a record against it.
//! - [`store`]: [`UserStore`], the users system table: last-writer-wins per name,
//!   persisted, spread with the schema.
//! - [`throttle`]: [`LoginThrottle`], the per-source delay before a failed login's answer.
//! - here: [`Authenticator`] (the node's policy: required or not, the users, the
//!   throttle) and [`Session`] (one connection's login state).
//!
//! # Invariants
//! - On a node that requires authentication, a connection whose session has no user is
//!   served only AUTH_START, AUTH_FINISH and PING ([`Authenticator::authorize`]).
//! - A session holds only its user's name: every request is checked against the user's
//!   record as the [`UserStore`] holds it at that moment, so a GRANT, a REVOKE or a drop
//!   applies to the next request of a connection already open.
//! - An unknown user and a wrong password are told apart only in the node's log: the
//!   client sees the same server-first shape ([`UserStore::login_verifier`]), the same
//!   error and the same delay.
//! - The SCRAM arithmetic is [`sibyl_protocol::scram`]'s; nothing here hashes by hand.
//!
//! # Threading
//! [`Authenticator`] is shared by every connection; its calls are short and never block
//! (the delay of a failure is returned, for the connection to sleep on its own task).

pub mod permissions;
pub mod record;
pub mod store;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sibyl_protocol::scram::{ClientFirst, ScramServer, MECHANISM};
use sibyl_protocol::{ErrorKind, Opcode, Request, Response, ServerError};

pub use record::{UserRecord, MAX_USER_NAME_LEN};
pub use store::{Applied, UserStore, UserStoreError};
pub use throttle::LoginThrottle;

use crate::config::AuthMode;

/// Who a connection is authenticated as: a name only, never a copy of the record (its
/// permissions are looked up at each request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The user name.
    pub name: String,
}

/// One connection's login state.
#[derive(Debug, Default)]
pub struct Session {
    user: Option<AuthenticatedUser>,
    /// An exchange between AUTH_START and AUTH_FINISH.
    exchange: Option<ScramServer>,
}

impl Session {
    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&AuthenticatedUser> {
        self.user.as_ref()
    }
}

/// A login step's result.
#[derive(Debug)]
pub enum Step {
    /// Answer this and go on (AUTH_START's server-first, AUTH_FINISH's success, or an
    /// `INVALID` for a step out of order).
    Answer(Response),
    /// The login failed: answer [`Authenticator::failure`]'s error after its delay, then
    /// close the connection.
    Failed {
        /// The user name the client gave (for the log), if it got that far.
        user: String,
        /// Why, for the log only.
        reason: String,
    },
}

/// The node's authentication policy and users (see the module documentation).
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    users: Arc<UserStore>,
    throttle: LoginThrottle,
}

fn invalid(message: impl Into<String>) -> Response {
    Response::Error(ServerError::new(ErrorKind::Invalid, message))
}

impl Authenticator {
    /// A node's authenticator over its users table.
    pub fn new(mode: AuthMode, users: Arc<UserStore>) -> Authenticator {
        Authenticator {
            mode,
            users,
            throttle: LoginThrottle::new(),
        }
    }

    /// No authentication required and no users (servers in tests and benchmarks).
    pub fn open_access() -> Arc<Authenticator> {
        Arc::new(Authenticator::new(
            AuthMode::Off,
            Arc::new(UserStore::in_memory()),
        ))
    }

    /// True when every connection must authenticate.
    pub fn required(&self) -> bool {
        self.mode == AuthMode::Required
    }

    /// The users table.
    pub fn users(&self) -> &Arc<UserStore> {
        &self.users
    }

    /// AUTH_START: reads client-first and answers server-first.
    pub fn start(&self, session: &mut Session, mechanism: &str, message: &[u8]) -> Step {
        if session.user.is_some() {
            return Step::Answer(invalid("the connection is already authenticated"));
        }
        if mechanism != MECHANISM {
            return Step::Answer(invalid(format!(
                "unsupported mechanism {mechanism:?}; this node speaks {MECHANISM}"
            )));
        }
        let first = match std::str::from_utf8(message)
            .map_err(|_| "client-first is not UTF-8".to_owned())
            .and_then(|m| ClientFirst::parse(m).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(reason) => {
                return Step::Failed {
                    user: String::new(),
                    reason,
                }
            }
        };
        let (verifier, _) = self.users.login_verifier(&first.user);
        let server = ScramServer::new(first, verifier);
        let answer = Response::AuthContinue {
            message: Bytes::copy_from_slice(server.server_first().as_bytes()),
        };
        session.exchange = Some(server);
        Step::Answer(answer)
    }

    /// AUTH_FINISH: checks client-final; on success the session is authenticated.
    pub fn finish(&self, session: &mut Session, message: &[u8]) -> Step {
        let Some(server) = session.exchange.take() else {
            return Step::Answer(invalid("AUTH_FINISH without an AUTH_START before it"));
        };
        let user = server.user().to_owned();
        let checked = std::str::from_utf8(message)
            .map_err(|_| "client-final is not UTF-8".to_owned())
            .and_then(|m| server.finish(m).map_err(|e| e.to_string()));
        // Looked up again: a user dropped since AUTH_START does not log in.
        let record = self.users.lookup(&user);
        match (checked, record) {
            (Ok(server_final), Some(record)) if record.verifier == *server_verifier(&server) => {
                let superuser = record.superuser;
                session.user = Some(AuthenticatedUser { name: user.clone() });
                Step::Answer(Response::AuthOk {
                    message: Bytes::from(server_final.into_bytes()),
                    user,
                    superuser,
                })
            }
            (Ok(_), _) => Step::Failed {
                user,
                reason: "the user was dropped or changed during the exchange".into(),
            },
            (Err(reason), Some(_)) => Step::Failed { user, reason },
            (Err(_), None) => Step::Failed {
                user,
                reason: "no such user".into(),
            },
        }
    }

    /// Records a failed login from `source`: logs it and returns the error to answer and
    /// how long to wait before answering (see [`throttle`]).
    pub fn failure(
        &self,
        source: Option<IpAddr>,
        user: &str,
        reason: &str,
    ) -> (ServerError, Duration) {
        let (count, delay) = match source {
            Some(ip) => self.throttle.failure(ip, Instant::now()),
            None => (1, Duration::ZERO),
        };
        // The first failures from a source, then every hundredth: a flood cannot flood
        // the log.
        if count <= 10 || count % 100 == 0 {
            tracing::warn!(
                source = ?source,
                user = %user,
                reason = %reason,
                failures = count,
                delay_ms = delay.as_millis() as u64,
                "authentication failed"
            );
        }
        let error = ServerError::new(ErrorKind::AuthenticationFailed, "authentication failed");
        (error, delay)
    }

    /// Whether `session` may make `request`: on a node that requires authentication the
    /// session must be logged in and its user, as the users table holds it now, must hold
    /// every permission the request needs ([`permissions::check`]). HANDSHAKE,
    /// AUTH_START, AUTH_FINISH and PING are the connection's and always pass; a node
    /// without authentication lets everything pass.
    pub fn authorize(&self, session: &Session, request: &Request) -> Result<(), ServerError> {
        if !self.required()
            || matches!(
                request.opcode(),
                Opcode::Handshake | Opcode::Ping | Opcode::AuthStart | Opcode::AuthFinish
            )
        {
            return Ok(());
        }
        let Some(user) = &session.user else {
            return Err(ServerError::new(
                ErrorKind::Unauthenticated,
                "this node requires authentication: send AUTH_START and AUTH_FINISH first",
            ));
        };
        self.users.with_user(&user.name, |record| match record {
            Some(record) => permissions::check(&user.name, record, request),
            None => Err(ServerError::new(
                ErrorKind::Unauthenticated,
                format!(
                    "user {:?} was dropped: this connection must authenticate again",
                    user.name
                ),
            )),
        })
    }
}

/// The verifier an exchange runs against (to check it is still the user's at the end).
fn server_verifier(server: &ScramServer) -> &sibyl_protocol::scram::ScramVerifier {
    server.verifier()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::scram::{ScramClient, ScramVerifier};

    fn node(mode: AuthMode) -> Authenticator {
        let users = Arc::new(UserStore::in_memory());
        users
            .create("admin", true, ScramVerifier::generate("root-pw"), false, 1)
            .unwrap();
        users
            .create(
                "reader",
                false,
                ScramVerifier::generate("read-pw"),
                false,
                1,
            )
            .unwrap();
        Authenticator::new(mode, users)
    }

    /// Runs a login; the final answer or the failure's error.
    fn login(auth: &Authenticator, session: &mut Session, user: &str, pw: &str) -> Response {
        let mut client = ScramClient::new(user, pw);
        let first = client.client_first();
        let server_first = match auth.start(session, MECHANISM, first.as_bytes()) {
            Step::Answer(Response::AuthContinue { message }) => message,
            Step::Answer(other) => return other,
            Step::Failed { user, reason } => {
                return Response::Error(auth.failure(None, &user, &reason).0)
            }
        };
        let last = client
            .client_final(std::str::from_utf8(&server_first).unwrap())
            .unwrap();
        match auth.finish(session, last.as_bytes()) {
            Step::Answer(r) => {
                if let Response::AuthOk { message, .. } = &r {
                    client
                        .verify_server_final(std::str::from_utf8(message).unwrap())
                        .unwrap();
                }
                r
            }
            Step::Failed { user, reason } => Response::Error(auth.failure(None, &user, &reason).0),
        }
    }

    #[test]
    fn auth_login_succeeds_and_authorizes() {
        let auth = node(AuthMode::Required);
        let mut s = Session::default();
        assert!(matches!(
            auth.authorize(&s, &get("kv")).unwrap_err().kind,
            ErrorKind::Unauthenticated
        ));
        assert!(auth.authorize(&s, &Request::Ping).is_ok());
        let r = login(&auth, &mut s, "reader", "read-pw");
        assert!(
            matches!(
                r,
                Response::AuthOk {
                    superuser: false,
                    ..
                }
            ),
            "{r:?}"
        );
        assert!(auth.authorize(&s, &Request::Topology).is_ok());
        let denied = auth.authorize(&s, &Request::ListUsers).unwrap_err();
        assert_eq!(
            denied.kind,
            ErrorKind::Unauthorized {
                permission: "users".into()
            }
        );
        let mut su = Session::default();
        login(&auth, &mut su, "admin", "root-pw");
        assert!(auth.authorize(&su, &Request::ListUsers).is_ok());
    }

    fn get(table: &str) -> Request {
        Request::Get {
            table: table.into(),
            key: Bytes::from_static(b"k"),
            selector: sibyl_protocol::Selector::All,
            consistency: None,
        }
    }

    #[test]
    fn auth_grants_revokes_and_drops_apply_to_an_open_session() {
        let auth = node(AuthMode::Required);
        let mut s = Session::default();
        login(&auth, &mut s, "reader", "read-pw");
        let denied = auth.authorize(&s, &get("kv")).unwrap_err();
        assert_eq!(
            denied.kind,
            ErrorKind::Unauthorized {
                permission: "read".into()
            }
        );
        let read_kv = sibyl_protocol::Grant {
            permission: sibyl_protocol::Permission::Read,
            table: Some("kv".into()),
        };
        auth.users()
            .change_grant("reader", &read_kv, true, 2)
            .unwrap();
        assert!(
            auth.authorize(&s, &get("kv")).is_ok(),
            "no new login needed"
        );
        auth.users()
            .change_grant("reader", &read_kv, false, 3)
            .unwrap();
        assert!(auth.authorize(&s, &get("kv")).is_err());
        auth.users().drop_user("reader", false, 4).unwrap();
        assert_eq!(
            auth.authorize(&s, &Request::Topology).unwrap_err().kind,
            ErrorKind::Unauthenticated
        );
    }

    #[test]
    fn auth_unknown_user_and_wrong_password_get_the_same_answer() {
        let auth = node(AuthMode::Required);
        let wrong = login(&auth, &mut Session::default(), "reader", "nope");
        let unknown = login(&auth, &mut Session::default(), "nobody", "nope");
        assert_eq!(wrong, unknown);
        assert!(matches!(
            wrong,
            Response::Error(ServerError {
                kind: ErrorKind::AuthenticationFailed,
                ..
            })
        ));
    }

    #[test]
    fn auth_off_serves_everything_and_still_checks_credentials() {
        let auth = node(AuthMode::Off);
        let s = Session::default();
        assert!(auth.authorize(&s, &Request::ListUsers).is_ok());
        let r = login(&auth, &mut Session::default(), "reader", "bad");
        assert!(matches!(r, Response::Error(_)));
    }

    #[test]
    fn auth_steps_out_of_order_are_invalid() {
        let auth = node(AuthMode::Required);
        let mut s = Session::default();
        assert!(matches!(
            auth.finish(&mut s, b"c=biws,r=x,p=AA=="),
            Step::Answer(Response::Error(_))
        ));
        assert!(matches!(
            auth.start(&mut s, "PLAIN", b"x"),
            Step::Answer(Response::Error(_))
        ));
        assert!(matches!(
            auth.start(&mut s, MECHANISM, b"garbage"),
            Step::Failed { .. }
        ));
    }
}
