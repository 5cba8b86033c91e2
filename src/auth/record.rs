//! The byte formats of users: one user's record (the metadata of a `user:` entry in the
//! schema export peers exchange) and the node's `users` file (spec: `doc/node-files.md`).
//!
//! # User record (versions 1 and 2)
//! ```text
//! record     = version flags iterations salt_len salt stored_key server_key [grants]
//! version    = 0x01 (no grants follow) | 0x02 (grants follow)
//! flags      = u8: bit 0 superuser; other bits 0
//! iterations = u32be (4096..=1048576)      salt_len = u8 (8..=64)
//! stored_key = 32 bytes                    server_key = 32 bytes
//! grants     = cluster:u8 table_count:u16be (name_len:u8 name mask:u8)*
//! ```
//! A mask holds permission `p` as bit `1 << p.code` (`sibyl_protocol::Permission`): the
//! cluster mask only create, users, operate; a table's mask only read, write, alter and
//! never 0. Tables are sorted by name, names 1..=255 bytes of UTF-8.
//!
//! A record without grants is written as version 1 (so nodes of an older build still read
//! the users that hold no permissions), one with grants as version 2. A reader refuses a
//! record of a version it does not know rather than guess.
//!
//! # Users file `users` (version 1)
//! ```text
//! file    = magic version secret count entry* crc
//! magic   = "SUSR"    version = 0x01    secret = 32 bytes    count = u32be
//! entry   = name_len u8, name, micros u64be, dropped u8 (0 live, 1 dropped),
//!           [record_len u16be, record]       (live users only)
//! crc     = CRC-32 (IEEE) of magic..entries, u32be
//! ```
//! `secret` is the node's own random key for the mock salts of unknown users (so they
//! stay the same across restarts). Entries are sorted by name.
//!
//! Decoding never panics: every length is checked before slicing, counts are bounded by
//! the bytes present, trailing bytes are refused. Pure functions.

use std::collections::BTreeMap;

use sibyl_coding::ByteReader;
use sibyl_protocol::scram::{ScramVerifier, KEY_LEN};
use sibyl_protocol::{Grant, Permission};

use crate::service::schema_sync::Stamp;

/// Longest user name (bytes).
pub const MAX_USER_NAME_LEN: usize = 64;
/// Magic of the users file.
const FILE_MAGIC: [u8; 4] = *b"SUSR";
/// Version of the users file, and of a record without grants.
const VERSION: u8 = 1;
/// Version of a record with grants.
const VERSION_GRANTS: u8 = 2;
/// Bytes of the node's mock-salt secret.
pub const SECRET_LEN: usize = 32;
/// Smallest encoded file entry: name_len, 1-byte name, micros, dropped.
const MIN_ENTRY_LEN: usize = 1 + 1 + 8 + 1;
const FLAG_SUPERUSER: u8 = 0x01;

/// A live user: what a login and an authorization check need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Holds every permission.
    pub superuser: bool,
    /// The password's SCRAM verifier.
    pub verifier: ScramVerifier,
    /// The permissions granted to it.
    pub permissions: Permissions,
}

/// The permissions granted to a user: cluster-wide ones and, per table, table ones (as
/// masks, `1 << code`; see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions {
    cluster: u8,
    tables: BTreeMap<String, u8>,
}

const fn bit(p: Permission) -> u8 {
    1 << (p as u8)
}

const TABLE_MASK: u8 = bit(Permission::Read) | bit(Permission::Write) | bit(Permission::Alter);
const CLUSTER_MASK: u8 =
    bit(Permission::Create) | bit(Permission::Users) | bit(Permission::Operate);

impl Permissions {
    /// True when nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.cluster == 0 && self.tables.is_empty()
    }

    /// Whether `permission` is held (on `table`, for a table permission; a table
    /// permission asked without a table, or a cluster one with a table, is not held).
    pub fn holds(&self, permission: Permission, table: Option<&str>) -> bool {
        match (permission.is_table_scoped(), table) {
            (true, Some(t)) => self
                .tables
                .get(t)
                .is_some_and(|mask| mask & bit(permission) != 0),
            (false, None) => self.cluster & bit(permission) != 0,
            _ => false,
        }
    }

    /// Adds a grant; false if it was held already. The caller checks the scope
    /// ([`check_scope`]).
    pub fn add(&mut self, grant: &Grant) -> bool {
        if self.holds(grant.permission, grant.table.as_deref()) {
            return false;
        }
        match &grant.table {
            Some(t) => *self.tables.entry(t.clone()).or_insert(0) |= bit(grant.permission),
            None => self.cluster |= bit(grant.permission),
        }
        true
    }

    /// Removes a grant; false if it was not held.
    pub fn remove(&mut self, grant: &Grant) -> bool {
        if !self.holds(grant.permission, grant.table.as_deref()) {
            return false;
        }
        match &grant.table {
            Some(t) => {
                if let Some(mask) = self.tables.get_mut(t) {
                    *mask &= !bit(grant.permission);
                    if *mask == 0 {
                        self.tables.remove(t);
                    }
                }
            }
            None => self.cluster &= !bit(grant.permission),
        }
        true
    }

    /// Removes every permission on `table`; false if there was none.
    pub fn forget_table(&mut self, table: &str) -> bool {
        self.tables.remove(table).is_some()
    }

    /// Every grant: cluster-wide ones in code order, then by table, each table's in code
    /// order (the order LIST_USERS reports).
    pub fn grants(&self) -> Vec<Grant> {
        let cluster = Permission::ALL
            .into_iter()
            .filter(|p| self.cluster & bit(*p) != 0)
            .map(|permission| Grant {
                permission,
                table: None,
            });
        let tables = self.tables.iter().flat_map(|(t, mask)| {
            Permission::ALL
                .into_iter()
                .filter(move |p| mask & bit(*p) != 0)
                .map(move |permission| Grant {
                    permission,
                    table: Some(t.clone()),
                })
        });
        cluster.chain(tables).collect()
    }

    fn encode(&self, b: &mut Vec<u8>) {
        let tables: Vec<(&String, &u8)> = self
            .tables
            .iter()
            .filter(|(t, _)| !t.is_empty() && t.len() <= usize::from(u8::MAX))
            .take(usize::from(u16::MAX))
            .collect();
        b.push(self.cluster);
        b.extend_from_slice(&(tables.len() as u16).to_be_bytes());
        for (table, mask) in tables {
            b.push(table.len() as u8);
            b.extend_from_slice(table.as_bytes());
            b.push(*mask);
        }
    }

    fn decode(r: &mut ByteReader<'_>) -> Result<Permissions, &'static str> {
        const T: &str = "truncated user grants";
        let cluster = r.u8().ok_or(T)?;
        if cluster & !CLUSTER_MASK != 0 {
            return Err("unknown cluster permission bits");
        }
        let count = usize::from(r.u16_be().ok_or(T)?);
        let mut tables = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..count {
            let len = usize::from(r.u8().ok_or(T)?);
            if len == 0 {
                return Err("empty table name in grants");
            }
            let name = std::str::from_utf8(r.take(len).ok_or(T)?)
                .map_err(|_| "table name in grants is not UTF-8")?
                .to_owned();
            let mask = r.u8().ok_or(T)?;
            if mask == 0 || mask & !TABLE_MASK != 0 {
                return Err("bad table permission bits");
            }
            if last.as_ref().is_some_and(|prev| *prev >= name) {
                return Err("grant tables not sorted by name");
            }
            last = Some(name.clone());
            tables.insert(name, mask);
        }
        Ok(Permissions { cluster, tables })
    }
}

/// Why a grant is refused for its scope: a table permission needs a table, a cluster
/// permission must not have one; a table name is 1..=255 bytes.
pub fn check_scope(grant: &Grant) -> Result<(), String> {
    match (grant.permission.is_table_scoped(), &grant.table) {
        (true, None) => Err(format!(
            "{} is a table permission: name the table (ON table)",
            grant.permission
        )),
        (false, Some(t)) => Err(format!(
            "{} is a cluster-wide permission, not one on table {t:?}",
            grant.permission
        )),
        (true, Some(t)) if t.is_empty() || t.len() > usize::from(u8::MAX) => {
            Err(format!("table name must be 1..=255 bytes, got {}", t.len()))
        }
        _ => Ok(()),
    }
}

/// One user name's state: live (with its record) or dropped, and when it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// When the create, alter or drop that set this state happened (last writer wins).
    pub stamp: Stamp,
    /// The record; `None` for a dropped user (a tombstone, so a peer that missed the
    /// drop cannot bring the user back).
    pub record: Option<UserRecord>,
}

/// Why a user name is refused.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME_LEN {
        return Err(format!(
            "user name must be 1..={MAX_USER_NAME_LEN} bytes, got {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
    {
        return Err(format!(
            "user name {name:?} may only hold ASCII letters, digits, '_', '-', '.' and '@'"
        ));
    }
    Ok(())
}

impl UserRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let v = &self.verifier;
        let mut b = Vec::with_capacity(2 + 4 + 1 + v.salt.len() + 2 * KEY_LEN + 3);
        let grants = !self.permissions.is_empty();
        b.push(if grants { VERSION_GRANTS } else { VERSION });
        b.push(if self.superuser { FLAG_SUPERUSER } else { 0 });
        b.extend_from_slice(&v.iterations.to_be_bytes());
        b.push(u8::try_from(v.salt.len()).unwrap_or(u8::MAX));
        b.extend_from_slice(v.salt.get(..usize::from(u8::MAX)).unwrap_or(&v.salt));
        b.extend_from_slice(&v.stored_key);
        b.extend_from_slice(&v.server_key);
        if grants {
            self.permissions.encode(&mut b);
        }
        b
    }

    /// Reads a record; the verifier must pass [`ScramVerifier::check`].
    pub fn decode(bytes: &[u8]) -> Result<UserRecord, &'static str> {
        const T: &str = "truncated user record";
        let mut r = ByteReader::new(bytes);
        let version = r.u8().ok_or(T)?;
        if version != VERSION && version != VERSION_GRANTS {
            return Err("unknown user record version");
        }
        let flags = r.u8().ok_or(T)?;
        if flags & !FLAG_SUPERUSER != 0 {
            return Err("unknown user record flags");
        }
        let iterations = r.u32_be().ok_or(T)?;
        let salt_len = usize::from(r.u8().ok_or(T)?);
        let salt = r.take(salt_len).ok_or(T)?.to_vec();
        let stored_key = <[u8; KEY_LEN]>::try_from(r.take(KEY_LEN).ok_or(T)?).map_err(|_| T)?;
        let server_key = <[u8; KEY_LEN]>::try_from(r.take(KEY_LEN).ok_or(T)?).map_err(|_| T)?;
        let permissions = if version == VERSION_GRANTS {
            Permissions::decode(&mut r)?
        } else {
            Permissions::default()
        };
        if !r.is_empty() {
            return Err("trailing bytes after a user record");
        }
        let verifier = ScramVerifier {
            iterations,
            salt,
            stored_key,
            server_key,
        };
        verifier.check()?;
        Ok(UserRecord {
            superuser: flags & FLAG_SUPERUSER != 0,
            verifier,
            permissions,
        })
    }
}

/// The contents of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersFile {
    /// The node's mock-salt secret.
    pub secret: [u8; SECRET_LEN],
    /// Every user name seen, live or dropped, by name.
    pub users: std::collections::BTreeMap<String, UserEntry>,
}

impl UsersFile {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.users.len() * 128);
        b.extend_from_slice(&FILE_MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&self.secret);
        let entries: Vec<(&String, &UserEntry)> = self
            .users
            .iter()
            .filter(|(name, _)| validate_name(name).is_ok())
            .collect();
        b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for (name, entry) in entries {
            b.push(name.len() as u8);
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&entry.stamp.micros.to_be_bytes());
            b.push(u8::from(entry.record.is_none()));
            if let Some(record) = &entry.record {
                let bytes = record.encode();
                b.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                b.extend_from_slice(&bytes);
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Reads the file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<UsersFile, &'static str> {
        const T: &str = "truncated users file";
        let body_len = bytes.len().checked_sub(4).ok_or(T)?;
        let (body, crc) = bytes.split_at(body_len);
        let crc = u32::from_be_bytes(<[u8; 4]>::try_from(crc).map_err(|_| T)?);
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch");
        }
        let mut r = ByteReader::new(body);
        if r.take(4).ok_or(T)? != FILE_MAGIC {
            return Err("bad magic");
        }
        if r.u8().ok_or(T)? != VERSION {
            return Err("unknown version");
        }
        let secret = <[u8; SECRET_LEN]>::try_from(r.take(SECRET_LEN).ok_or(T)?).map_err(|_| T)?;
        let count = usize::try_from(r.u32_be().ok_or(T)?).map_err(|_| T)?;
        if count > r.remaining() / MIN_ENTRY_LEN {
            return Err("entry count exceeds the bytes present");
        }
        let mut users = std::collections::BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..count {
            let len = usize::from(r.u8().ok_or(T)?);
            let name = std::str::from_utf8(r.take(len).ok_or(T)?)
                .map_err(|_| "user name is not UTF-8")?
                .to_owned();
            validate_name(&name).map_err(|_| "invalid user name")?;
            if last.as_ref().is_some_and(|prev| *prev >= name) {
                return Err("entries not sorted by name");
            }
            let micros = r.u64_be().ok_or(T)?;
            let dropped = match r.u8().ok_or(T)? {
                0 => false,
                1 => true,
                _ => return Err("dropped flag"),
            };
            let record = if dropped {
                None
            } else {
                let len = usize::from(r.u16_be().ok_or(T)?);
                Some(UserRecord::decode(r.take(len).ok_or(T)?)?)
            };
            last = Some(name.clone());
            users.insert(
                name,
                UserEntry {
                    stamp: Stamp { micros, dropped },
                    record,
                },
            );
        }
        if !r.is_empty() {
            return Err("trailing bytes");
        }
        Ok(UsersFile { secret, users })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(superuser: bool) -> UserRecord {
        UserRecord {
            superuser,
            verifier: ScramVerifier::derive("pw", b"saltsalt", 4096),
            permissions: Permissions::default(),
        }
    }

    fn grant(permission: Permission, table: Option<&str>) -> Grant {
        Grant {
            permission,
            table: table.map(str::to_owned),
        }
    }

    fn with_grants() -> UserRecord {
        let mut r = record(false);
        for g in [
            grant(Permission::Write, Some("kv")),
            grant(Permission::Operate, None),
            grant(Permission::Read, Some("kv")),
            grant(Permission::Alter, Some("a")),
            grant(Permission::Create, None),
        ] {
            assert!(r.permissions.add(&g));
        }
        r
    }

    /// A version-1 record as the build before permissions wrote it (fixture bytes).
    fn version_1_bytes() -> Vec<u8> {
        let v = ScramVerifier::derive("pw", b"saltsalt", 4096);
        let mut b = vec![0x01, 0x00];
        b.extend_from_slice(&4096u32.to_be_bytes());
        b.push(8);
        b.extend_from_slice(b"saltsalt");
        b.extend_from_slice(&v.stored_key);
        b.extend_from_slice(&v.server_key);
        b
    }

    #[test]
    fn user_record_version_1_still_decodes_without_grants() {
        let old = UserRecord::decode(&version_1_bytes()).unwrap();
        assert_eq!(old, record(false));
        assert!(old.permissions.is_empty());
        // A record without grants is still written as version 1, byte for byte.
        assert_eq!(record(false).encode(), version_1_bytes());
    }

    #[test]
    fn user_record_with_grants_round_trips_as_version_2() {
        let r = with_grants();
        let bytes = r.encode();
        assert_eq!(bytes[0], VERSION_GRANTS);
        assert_eq!(UserRecord::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(UserRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(UserRecord::decode(&trailing).is_err());
        // A table permission bit in the cluster mask is refused.
        let cluster_at = version_1_bytes().len();
        let mut bad = bytes.clone();
        bad[cluster_at] |= bit(Permission::Read);
        assert!(UserRecord::decode(&bad).is_err());
    }

    #[test]
    fn permissions_hold_add_remove_and_list_in_order() {
        let mut r = with_grants();
        let p = &r.permissions;
        assert!(p.holds(Permission::Read, Some("kv")));
        assert!(!p.holds(Permission::Read, Some("a")));
        assert!(!p.holds(Permission::Read, None));
        assert!(p.holds(Permission::Create, None));
        assert!(!p.holds(Permission::Create, Some("kv")));
        assert!(!p.holds(Permission::Users, None));
        assert_eq!(
            p.grants(),
            vec![
                grant(Permission::Create, None),
                grant(Permission::Operate, None),
                grant(Permission::Alter, Some("a")),
                grant(Permission::Read, Some("kv")),
                grant(Permission::Write, Some("kv")),
            ]
        );
        assert!(!r.permissions.add(&grant(Permission::Read, Some("kv"))));
        assert!(r.permissions.remove(&grant(Permission::Alter, Some("a"))));
        assert!(!r.permissions.remove(&grant(Permission::Alter, Some("a"))));
        assert!(!r
            .permissions
            .grants()
            .iter()
            .any(|g| g.table.as_deref() == Some("a")));
        for g in r.permissions.grants() {
            assert!(r.permissions.remove(&g));
        }
        assert!(r.permissions.is_empty());
        assert_eq!(r.encode()[0], VERSION);
    }

    #[test]
    fn grant_scope_is_checked() {
        assert!(check_scope(&grant(Permission::Read, Some("kv"))).is_ok());
        assert!(check_scope(&grant(Permission::Read, None)).is_err());
        assert!(check_scope(&grant(Permission::Operate, Some("kv"))).is_err());
        assert!(check_scope(&grant(Permission::Write, Some(""))).is_err());
        assert!(check_scope(&grant(Permission::Users, None)).is_ok());
    }

    #[test]
    fn user_record_round_trip_and_reject_damage() {
        for su in [false, true] {
            let r = record(su);
            let bytes = r.encode();
            assert_eq!(UserRecord::decode(&bytes).unwrap(), r);
            for cut in 0..bytes.len() {
                assert!(UserRecord::decode(&bytes[..cut]).is_err());
            }
        }
        let mut weak = record(false);
        weak.verifier.iterations = 1;
        assert!(UserRecord::decode(&weak.encode()).is_err());
        let mut bad_flags = record(false).encode();
        bad_flags[1] = 0x80;
        assert!(UserRecord::decode(&bad_flags).is_err());
    }

    #[test]
    fn users_file_round_trip_and_reject_damage() {
        let mut users = std::collections::BTreeMap::new();
        users.insert(
            "admin".to_owned(),
            UserEntry {
                stamp: Stamp {
                    micros: 7,
                    dropped: false,
                },
                record: Some(record(true)),
            },
        );
        users.insert(
            "gone".to_owned(),
            UserEntry {
                stamp: Stamp {
                    micros: 9,
                    dropped: true,
                },
                record: None,
            },
        );
        let file = UsersFile {
            secret: [3; SECRET_LEN],
            users,
        };
        let bytes = file.encode();
        assert_eq!(UsersFile::decode(&bytes).unwrap(), file);
        for cut in 0..bytes.len() {
            assert!(UsersFile::decode(&bytes[..cut]).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert!(UsersFile::decode(&flipped).is_err());
    }

    #[test]
    fn user_names_are_validated() {
        assert!(validate_name("alice.b-c_d@x").is_ok());
        for bad in ["", "a,b", "a=b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
