//! The permission check table: what each request needs (`doc/wire_format.md`, section 6
//! "Permissions", the table under "The check"), and the check of a user's record against
//! it. [`super::Authenticator::authorize`] is its one caller, before any work is done.
//!
//! Pure functions: no state, no I/O.

use sibyl_protocol::{ErrorKind, Permission, Request, ServerError};

use super::record::UserRecord;

/// Calls `need` with every (permission, table) `request` needs, stopping at the first
/// error. Requests that need only a login call it never.
pub fn each_required<E>(
    request: &Request,
    mut need: impl FnMut(Permission, Option<&str>) -> Result<(), E>,
) -> Result<(), E> {
    match request {
        Request::Handshake { .. }
        | Request::Ping
        | Request::AuthStart { .. }
        | Request::AuthFinish { .. }
        | Request::Topology
        | Request::ListTables
        | Request::DescribeTable { .. }
        | Request::TableStats { .. }
        | Request::RepairStatus { .. }
        | Request::Hints
        | Request::Metrics
        | Request::DescribeCluster
        | Request::Health
        | Request::Streams {
            set_throughput: None,
        } => Ok(()),
        Request::Get { table, .. } => need(Permission::Read, Some(table)),
        Request::Insert { insert, .. } => need(Permission::Write, Some(&insert.table)),
        Request::Delete { delete, .. } => need(Permission::Write, Some(&delete.table)),
        Request::Batch { mutations, .. } => mutations
            .iter()
            .try_for_each(|m| need(Permission::Write, Some(m.table()))),
        Request::CreateTable { .. } => need(Permission::Create, None),
        Request::DropTable { name, .. } => need(Permission::Alter, Some(name)),
        Request::CreateUser { .. }
        | Request::AlterUser { .. }
        | Request::DropUser { .. }
        | Request::ListUsers
        | Request::Grant { .. }
        | Request::Revoke { .. } => need(Permission::Users, None),
        Request::Flush { .. }
        | Request::Compact { .. }
        | Request::RemoveNode { .. }
        | Request::Decommission
        | Request::Repair { .. }
        | Request::Cleanup { .. }
        | Request::Rebalance
        | Request::Move { .. }
        | Request::Streams {
            set_throughput: Some(_),
        } => need(Permission::Operate, None),
    }
}

/// Whether user `name`, with `record` as this node holds it now, may make `request`: a
/// superuser may make any; anyone else needs every permission [`each_required`] lists.
/// The error is `UNAUTHORIZED` naming the first permission missing (and its table).
pub fn check(name: &str, record: &UserRecord, request: &Request) -> Result<(), ServerError> {
    if record.superuser {
        return Ok(());
    }
    each_required(request, |permission, table| {
        if record.permissions.holds(permission, table) {
            return Ok(());
        }
        let message = match table {
            Some(t) => format!("user {name:?} lacks {permission} on table {t:?}"),
            None => format!("user {name:?} lacks {permission}"),
        };
        Err(ServerError::new(
            ErrorKind::Unauthorized {
                permission: permission.name().to_owned(),
            },
            message,
        ))
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sibyl_protocol::scram::ScramVerifier;
    use sibyl_protocol::{
        DeleteTarget, Grant, Mutation, RowDelete, RowInsert, Selector, TableOptions,
    };

    use super::*;
    use crate::auth::record::Permissions;

    fn insert(table: &str) -> RowInsert {
        RowInsert {
            table: table.into(),
            key: Bytes::from_static(b"k"),
            ttl_secs: None,
            timestamp_micros: None,
            write_id: None,
            columns: Vec::new(),
        }
    }

    fn get(table: &str) -> Request {
        Request::Get {
            table: table.into(),
            key: Bytes::from_static(b"k"),
            selector: Selector::All,
            consistency: None,
        }
    }

    fn user(grants: &[(Permission, Option<&str>)]) -> UserRecord {
        let mut permissions = Permissions::default();
        for (permission, table) in grants {
            permissions.add(&Grant {
                permission: *permission,
                table: table.map(str::to_owned),
            });
        }
        UserRecord {
            superuser: false,
            verifier: ScramVerifier::derive("pw", b"saltsalt", 4096),
            permissions,
        }
    }

    fn denied(record: &UserRecord, request: &Request) -> Option<String> {
        match check("u", record, request) {
            Ok(()) => None,
            Err(ServerError {
                kind: ErrorKind::Unauthorized { permission },
                ..
            }) => Some(permission),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    /// Every row of the spec's check table, one request each, for a user holding nothing.
    #[test]
    fn permission_check_table_matches_the_spec() {
        let nobody = user(&[]);
        let table_requests = [
            (get("kv"), Some("read")),
            (
                Request::Insert {
                    insert: insert("kv"),
                    consistency: None,
                },
                Some("write"),
            ),
            (
                Request::Delete {
                    delete: RowDelete {
                        table: "kv".into(),
                        key: Bytes::from_static(b"k"),
                        timestamp_micros: None,
                        write_id: None,
                        target: DeleteTarget::Row {
                            contexts: Vec::new(),
                        },
                    },
                    consistency: None,
                },
                Some("write"),
            ),
            (
                Request::CreateTable {
                    name: "t".into(),
                    options: TableOptions::default(),
                    if_not_exists: false,
                },
                Some("create"),
            ),
            (
                Request::DropTable {
                    name: "kv".into(),
                    if_exists: false,
                },
                Some("alter"),
            ),
            (Request::ListUsers, Some("users")),
            (
                Request::DropUser {
                    name: "x".into(),
                    if_exists: true,
                },
                Some("users"),
            ),
            (
                Request::Grant {
                    user: "x".into(),
                    grant: Grant {
                        permission: Permission::Read,
                        table: Some("kv".into()),
                    },
                },
                Some("users"),
            ),
            (Request::Flush { table: None }, Some("operate")),
            (Request::Compact { table: "kv".into() }, Some("operate")),
            (Request::Decommission, Some("operate")),
            (Request::Rebalance, Some("operate")),
            (Request::Move { tokens: vec![] }, Some("operate")),
            (Request::Cleanup { table: None }, Some("operate")),
            (
                Request::Streams {
                    set_throughput: Some(1),
                },
                Some("operate"),
            ),
            (
                Request::Streams {
                    set_throughput: None,
                },
                None,
            ),
            (Request::Topology, None),
            (Request::ListTables, None),
            (Request::DescribeTable { name: "kv".into() }, None),
            (Request::Metrics, None),
            (Request::Health, None),
            (Request::DescribeCluster, None),
            (Request::Hints, None),
            (Request::Ping, None),
        ];
        for (request, expected) in &table_requests {
            assert_eq!(
                denied(&nobody, request).as_deref(),
                *expected,
                "{:?}",
                request.opcode()
            );
        }
        let mut superuser = user(&[]);
        superuser.superuser = true;
        for (request, _) in &table_requests {
            assert_eq!(denied(&superuser, request), None);
        }
    }

    #[test]
    fn permission_check_is_per_table() {
        let reader = user(&[(Permission::Read, Some("kv"))]);
        assert_eq!(denied(&reader, &get("kv")), None);
        assert_eq!(denied(&reader, &get("other")).as_deref(), Some("read"));
        let write_kv = Request::Insert {
            insert: insert("kv"),
            consistency: None,
        };
        assert_eq!(denied(&reader, &write_kv).as_deref(), Some("write"));
        let err = check("reader", &reader, &write_kv).unwrap_err();
        assert!(err.message.contains("write") && err.message.contains("kv"));
    }

    #[test]
    fn permission_check_refuses_a_batch_with_one_table_denied() {
        let writer = user(&[(Permission::Write, Some("a"))]);
        let batch = |tables: &[&str]| Request::Batch {
            mutations: tables.iter().map(|t| Mutation::Insert(insert(t))).collect(),
            consistency: None,
        };
        assert_eq!(denied(&writer, &batch(&["a", "a"])), None);
        assert_eq!(
            denied(&writer, &batch(&["a", "b"])).as_deref(),
            Some("write")
        );
        assert_eq!(denied(&writer, &batch(&[])), None);
    }
}
