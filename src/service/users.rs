//! User management requests (CREATE_USER, ALTER_USER, DROP_USER, LIST_USERS, GRANT,
//! REVOKE) over the node's users table ([`crate::auth::UserStore`]). Who may make them is the connection's
//! business ([`crate::auth::Authenticator::authorize`]); here they are executed and a
//! change is announced to gossip, which spreads users with the schema.
//!
//! Threading: changes write the users file; [`super::Service::execution`] runs them on a
//! blocking thread.

use sibyl_protocol::scram::ScramVerifier;
use sibyl_protocol::{ErrorKind, Grant, Response, ServerError};

use super::{invalid, Service};
use crate::auth::{Applied, UserStoreError};

fn refused(e: UserStoreError) -> ServerError {
    match e {
        UserStoreError::Invalid(message) => invalid(message),
        other => {
            tracing::error!(error = %other, "cannot change the users table");
            ServerError::new(sibyl_protocol::ErrorKind::Server, other.to_string())
        }
    }
}

impl Service {
    fn user_changed(&self, name: String, applied: Applied) -> Response {
        if applied == Applied::Changed {
            self.announce_schema_change();
        }
        Response::UserChanged {
            name,
            applied: applied == Applied::Changed,
        }
    }

    pub(super) fn create_user(
        &self,
        name: String,
        superuser: bool,
        if_not_exists: bool,
        verifier: ScramVerifier,
    ) -> Result<Response, ServerError> {
        let now = self.clock.now_micros();
        let applied = self
            .users
            .create(&name, superuser, verifier, if_not_exists, now)
            .map_err(refused)?;
        if applied == Applied::Changed {
            tracing::info!(user = %name, superuser, "user created");
        }
        Ok(self.user_changed(name, applied))
    }

    pub(super) fn alter_user(
        &self,
        name: String,
        verifier: ScramVerifier,
    ) -> Result<Response, ServerError> {
        let now = self.clock.now_micros();
        let applied = self.users.alter(&name, verifier, now).map_err(refused)?;
        tracing::info!(user = %name, "user password changed");
        Ok(self.user_changed(name, applied))
    }

    pub(super) fn drop_user(&self, name: String, if_exists: bool) -> Result<Response, ServerError> {
        let now = self.clock.now_micros();
        let applied = self
            .users
            .drop_user(&name, if_exists, now)
            .map_err(refused)?;
        if applied == Applied::Changed {
            tracing::info!(user = %name, "user dropped");
        }
        Ok(self.user_changed(name, applied))
    }

    /// GRANT (`add`) or REVOKE. As in Cassandra, a GRANT on a table this node does not
    /// know is `UNKNOWN_TABLE`; a REVOKE never looks at the schema (a permission on a
    /// table dropped since can always be revoked).
    pub(super) fn change_grant(
        &self,
        name: String,
        grant: Grant,
        add: bool,
    ) -> Result<Response, ServerError> {
        if let (true, Some(table)) = (add, &grant.table) {
            if !self.has_table(table) {
                return Err(ServerError::new(
                    ErrorKind::UnknownTable {
                        table: table.clone(),
                    },
                    format!("cannot grant {grant}: no table {table:?}"),
                ));
            }
        }
        let now = self.clock.now_micros();
        let applied = self
            .users
            .change_grant(&name, &grant, add, now)
            .map_err(refused)?;
        if applied == Applied::Changed {
            let verb = if add { "granted" } else { "revoked" };
            tracing::info!(user = %name, grant = %grant, "permission {verb}");
        }
        Ok(self.user_changed(name, applied))
    }

    /// Creates the configured first superuser unless the name is known (live or
    /// dropped); announces it when created.
    pub fn ensure_superuser(&self, name: &str, password: &str) -> Result<bool, UserStoreError> {
        let created = self
            .users
            .ensure_superuser(name, password, self.clock.now_micros())?;
        if created {
            tracing::info!(user = %name, "first superuser created");
            self.announce_schema_change();
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sibyl_protocol::{ErrorKind, Request, Response, UserInfo};

    use crate::cluster::SchemaSource;
    use crate::service::{Service, ServiceOptions};
    use crate::versioning::ManualClock;

    fn open(dir: &std::path::Path) -> Service {
        let clock = Arc::new(ManualClock::new(1_000_000));
        Service::open(ServiceOptions::new(dir, clock)).unwrap()
    }

    fn create(name: &str) -> Request {
        Request::CreateUser {
            name: name.into(),
            superuser: false,
            if_not_exists: false,
            verifier: sibyl_protocol::scram::ScramVerifier::derive("pw", b"salt-salt", 4096),
        }
    }

    #[test]
    fn users_requests_change_the_table_and_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let svc = open(dir.path());
        assert_eq!(svc.schema_version(), 0);
        let r = svc.handle(create("alice"));
        assert_eq!(
            r,
            Response::UserChanged {
                name: "alice".into(),
                applied: true
            }
        );
        assert_ne!(
            svc.schema_version(),
            0,
            "users are part of the spread schema"
        );
        assert!(matches!(
            svc.handle(create("alice")),
            Response::Error(e) if e.kind == ErrorKind::Invalid
        ));
        assert_eq!(
            svc.handle(Request::ListUsers),
            Response::Users(vec![UserInfo {
                name: "alice".into(),
                superuser: false,
                grants: Vec::new(),
            }])
        );
        let dropped = svc.handle(Request::DropUser {
            name: "alice".into(),
            if_exists: false,
        });
        assert!(matches!(
            dropped,
            Response::UserChanged { applied: true, .. }
        ));
        assert_eq!(svc.handle(Request::ListUsers), Response::Users(Vec::new()));
    }

    #[test]
    fn users_grant_needs_a_known_table_and_revoke_does_not() {
        use sibyl_protocol::{Grant, Permission, TableOptions};
        let dir = tempfile::tempdir().unwrap();
        let svc = open(dir.path());
        svc.handle(create("alice"));
        let read_kv = Grant {
            permission: Permission::Read,
            table: Some("kv".into()),
        };
        let grant = || Request::Grant {
            user: "alice".into(),
            grant: read_kv.clone(),
        };
        assert!(matches!(
            svc.handle(grant()),
            Response::Error(e) if e.kind == ErrorKind::UnknownTable { table: "kv".into() }
        ));
        let created = svc.handle(Request::CreateTable {
            name: "kv".into(),
            options: TableOptions {
                replication_factor: 1,
                ..TableOptions::default()
            },
            if_not_exists: false,
        });
        assert!(
            matches!(created, Response::SchemaChanged { .. }),
            "{created:?}"
        );
        let version = svc.schema_version();
        assert!(matches!(
            svc.handle(grant()),
            Response::UserChanged { applied: true, .. }
        ));
        assert_ne!(
            svc.schema_version(),
            version,
            "a grant spreads with the schema"
        );
        assert!(matches!(
            svc.handle(grant()),
            Response::UserChanged { applied: false, .. }
        ));
        let Response::Users(users) = svc.handle(Request::ListUsers) else {
            panic!("LIST_USERS")
        };
        assert_eq!(users[0].grants, vec![read_kv.clone()]);
        let revoke = |user: &str| Request::Revoke {
            user: user.into(),
            grant: read_kv.clone(),
        };
        assert!(matches!(
            svc.handle(revoke("alice")),
            Response::UserChanged { applied: true, .. }
        ));
        assert!(matches!(
            svc.handle(revoke("nobody")),
            Response::Error(e) if e.kind == ErrorKind::Invalid
        ));
        let cluster_with_table = Request::Grant {
            user: "alice".into(),
            grant: Grant {
                permission: Permission::Create,
                table: Some("kv".into()),
            },
        };
        assert!(matches!(
            svc.handle(cluster_with_table),
            Response::Error(e) if e.kind == ErrorKind::Invalid
        ));
        // Dropping the table revokes the grants on it.
        svc.handle(grant());
        let dropped = svc.handle(Request::DropTable {
            name: "kv".into(),
            if_exists: false,
        });
        assert!(matches!(
            dropped,
            Response::SchemaChanged { applied: true, .. }
        ));
        assert!(svc.users().list()[0].grants.is_empty());
    }

    #[test]
    fn users_spread_through_the_schema_export() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (open(da.path()), open(db.path()));
        a.handle(create("bob"));
        let version = b.import(&a.export()).unwrap();
        assert_eq!(version, a.schema_version());
        assert!(b.users().lookup("bob").is_some());
        drop(b);
        let reopened = open(db.path());
        assert!(
            reopened.users().lookup("bob").is_some(),
            "kept across a restart"
        );
        assert_eq!(reopened.schema_version(), a.schema_version());
    }
}
