//! Users as LIST_USERS reports them ([`UserInfo`]) and the permissions GRANT and REVOKE
//! name ([`Permission`], [`Grant`]). The password verifier a CREATE_USER carries is
//! [`crate::scram::ScramVerifier`]. Pure data.

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

/// One permission (spec: `doc/wire_format.md`, section 6 "Permissions"). Wire: `u8`
/// code. Table permissions are held per table, the others cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// GET on a table.
    Read = 0x01,
    /// INSERT, DELETE and BATCH mutations of a table.
    Write = 0x02,
    /// DROP_TABLE of a table.
    Alter = 0x03,
    /// CREATE_TABLE.
    Create = 0x04,
    /// User management: CREATE_USER, ALTER_USER, DROP_USER, LIST_USERS, GRANT, REVOKE.
    Users = 0x05,
    /// Operator commands (flush, compact, decommission, removenode, repair, cleanup,
    /// rebalance, move, setting the stream throughput).
    Operate = 0x06,
}

impl Permission {
    /// Every permission, in code order.
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::Write,
        Permission::Alter,
        Permission::Create,
        Permission::Users,
        Permission::Operate,
    ];

    /// The byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The permission of a code, if any.
    pub fn from_u8(code: u8) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_u8() == code)
    }

    /// Its name, as the spec, `UNAUTHORIZED` and the shell spell it.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Alter => "alter",
            Permission::Create => "create",
            Permission::Users => "users",
            Permission::Operate => "operate",
        }
    }

    /// The permission of a name (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// True for the permissions held per table (read, write, alter).
    pub fn is_table_scoped(self) -> bool {
        matches!(
            self,
            Permission::Read | Permission::Write | Permission::Alter
        )
    }

    /// Writes the code.
    pub fn encode(self, w: &mut WireWriter) {
        w.u8(self.as_u8());
    }

    /// Reads a code; an unknown one is malformed.
    pub fn decode(r: &mut WireReader) -> Result<Permission, ProtocolError> {
        let code = r.u8("permission")?;
        Permission::from_u8(code).ok_or_else(|| ProtocolError::InvalidValue {
            what: "permission",
            reason: format!("unknown permission code {code:#04x}"),
        })
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A permission a user holds: cluster-wide (`table` is `None`) or on one table. Wire:
/// `u8` permission, `option<string>` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// The permission.
    pub permission: Permission,
    /// Its table, for a table permission.
    pub table: Option<String>,
}

impl Grant {
    /// Smallest encoding: the code and an absent table.
    pub const MIN_LEN: usize = 1 + 1;

    /// Writes the grant.
    pub fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        self.permission.encode(w);
        w.option(self.table.as_ref(), |w, t| w.string("table", t))
    }

    /// Reads a grant.
    pub fn decode(r: &mut WireReader) -> Result<Grant, ProtocolError> {
        Ok(Grant {
            permission: Permission::decode(r)?,
            table: r.option("table", |r| r.string("table"))?,
        })
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.table {
            Some(t) => write!(f, "{} on {t}", self.permission),
            None => write!(f, "{}", self.permission),
        }
    }
}

/// One user. Wire: `string` name, `bool` superuser, `list<grant>` grants.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Whether the user is a superuser (holds every permission).
    pub superuser: bool,
    /// The permissions granted to it: cluster-wide first, then by table.
    pub grants: Vec<Grant>,
}

impl UserInfo {
    /// Smallest encoding: an empty name, the flag and an empty list.
    pub const MIN_LEN: usize = 2 + 1 + 4;

    /// Writes the user.
    pub fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("user", &self.name)?;
        w.bool(self.superuser);
        w.list("grants", &self.grants, |w, g| g.encode(w))
    }

    /// Reads a user.
    pub fn decode(r: &mut WireReader) -> Result<UserInfo, ProtocolError> {
        Ok(UserInfo {
            name: r.string("user")?,
            superuser: r.bool("superuser")?,
            grants: r.list("grants", Grant::MIN_LEN, Grant::decode)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_round_trip_and_reject_truncation() {
        let u = UserInfo {
            name: "admin".into(),
            superuser: true,
            grants: vec![
                Grant {
                    permission: Permission::Create,
                    table: None,
                },
                Grant {
                    permission: Permission::Read,
                    table: Some("kv".into()),
                },
            ],
        };
        let mut w = WireWriter::new();
        u.encode(&mut w).unwrap();
        let bytes = w.finish();
        let mut r = WireReader::new(bytes.clone());
        assert_eq!(UserInfo::decode(&mut r).unwrap(), u);
        for cut in 0..bytes.len() {
            let mut short = WireReader::new(bytes.slice(..cut));
            assert!(UserInfo::decode(&mut short).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn permission_codes_and_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_u8(p.as_u8()), Some(p));
            assert_eq!(Permission::from_name(p.name()), Some(p));
            assert_eq!(Permission::from_name(&p.name().to_uppercase()), Some(p));
        }
        assert_eq!(Permission::from_u8(0), None);
        assert_eq!(Permission::from_u8(7), None);
        let mut r = WireReader::new(bytes::Bytes::from_static(&[0x07]));
        assert!(Permission::decode(&mut r).is_err());
    }
}
