//! The users system table of one node ([`UserStore`]): every user name with its stamp
//! (last writer wins, tombstones for drops, as table schemas), persisted in the `users`
//! file of the data directory, and spread through the schema export that gossip already
//! pulls and pushes (a user is the export entry `user:NAME`, its record the metadata; see
//! [`crate::service::cluster`]). So users reach every node as tables do and survive
//! restarts.
//!
//! Invariants: the published snapshot of live users ([`UserStore::lookup`]) changes only
//! after the file holding the change is written; changes are serialized by one mutex,
//! never held across anything but the file write.
//!
//! Threading: `Send + Sync`, shared behind an `Arc` by the service (changes, gossip) and
//! every client connection (lookups: a lock-free snapshot read). Changes block on a file
//! write: call them off the async workers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use rand::RngCore;
use sibyl_protocol::scram::ScramVerifier;
use sibyl_protocol::{Grant, UserInfo};
use sibyl_storage::atomic_file::{read_if_exists, write_atomically};

use super::record::{
    check_scope, validate_name, Permissions, UserEntry, UserRecord, UsersFile, SECRET_LEN,
};
use crate::service::schema_sync::{next_stamp, ExportEntry, Stamp};

/// File name in the data directory.
pub const USERS_FILE: &str = "users";
/// Prefix of a user's entry name in the schema export (`:` is never in a table name).
pub const EXPORT_PREFIX: &str = "user:";

/// Why the users table could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserStoreError {
    /// Reading or writing the users file failed.
    #[error("users file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The users file does not decode.
    #[error("users file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// A request the table refuses (bad name, weak verifier, user exists or missing).
    #[error("{0}")]
    Invalid(String),
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The table changed.
    Changed,
    /// `if_not_exists` / `if_exists` made it a no-op.
    Unchanged,
}

/// The users table (see the module documentation).
#[derive(Debug)]
pub struct UserStore {
    /// Where the file lives; `None` for a store in memory (tests).
    dir: Option<PathBuf>,
    state: Mutex<UsersFile>,
    live: ArcSwap<BTreeMap<String, UserRecord>>,
}

fn lock(m: &Mutex<UsersFile>) -> MutexGuard<'_, UsersFile> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn live_of(file: &UsersFile) -> BTreeMap<String, UserRecord> {
    file.users
        .iter()
        .filter_map(|(n, e)| Some((n.clone(), e.record.clone()?)))
        .collect()
}

fn new_secret() -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

impl UserStore {
    /// Opens the users table of `dir` (empty, with a new secret, when there is no file
    /// yet; the file is written at the first change).
    pub fn open(dir: &Path) -> Result<UserStore, UserStoreError> {
        let path = dir.join(USERS_FILE);
        let bytes = read_if_exists(dir, USERS_FILE).map_err(|source| UserStoreError::Io {
            path: path.clone(),
            source,
        })?;
        let file = match bytes {
            None => UsersFile {
                secret: new_secret(),
                users: BTreeMap::new(),
            },
            Some(b) => {
                UsersFile::decode(&b).map_err(|reason| UserStoreError::Corrupt { path, reason })?
            }
        };
        Ok(UserStore::with(Some(dir.to_path_buf()), file))
    }

    /// An empty table kept in memory only.
    pub fn in_memory() -> UserStore {
        UserStore::with(
            None,
            UsersFile {
                secret: new_secret(),
                users: BTreeMap::new(),
            },
        )
    }

    fn with(dir: Option<PathBuf>, file: UsersFile) -> UserStore {
        let live = ArcSwap::from_pointee(live_of(&file));
        UserStore {
            dir,
            state: Mutex::new(file),
            live,
        }
    }

    /// A live user's record.
    pub fn lookup(&self, name: &str) -> Option<UserRecord> {
        self.live.load().get(name).cloned()
    }

    /// Runs `check` on the current record of `name` (`None` for a user that is not
    /// live), without copying it: the per-request permission check.
    pub fn with_user<R>(&self, name: &str, check: impl FnOnce(Option<&UserRecord>) -> R) -> R {
        check(self.live.load().get(name))
    }

    /// The verifier to run a login of `name` against: the user's, or a mock one (stable
    /// per name on this node) that no proof matches. The flag says which.
    pub fn login_verifier(&self, name: &str) -> (ScramVerifier, Option<UserRecord>) {
        match self.lookup(name) {
            Some(r) => (r.verifier.clone(), Some(r)),
            None => {
                let secret = lock(&self.state).secret;
                (ScramVerifier::mock(name, &secret), None)
            }
        }
    }

    /// Every live user, by name.
    pub fn list(&self) -> Vec<UserInfo> {
        self.live
            .load()
            .iter()
            .map(|(name, r)| UserInfo {
                name: name.clone(),
                superuser: r.superuser,
                grants: r.permissions.grants(),
            })
            .collect()
    }

    /// True when the table has never held a user (no tombstone either).
    pub fn is_empty(&self) -> bool {
        lock(&self.state).users.is_empty()
    }

    /// Writes `file` and publishes its live users.
    fn commit(&self, file: &UsersFile) -> Result<(), UserStoreError> {
        if let Some(dir) = &self.dir {
            write_atomically(dir, USERS_FILE, &file.encode()).map_err(|source| {
                UserStoreError::Io {
                    path: dir.join(USERS_FILE),
                    source,
                }
            })?;
        }
        self.live.store(Arc::new(live_of(file)));
        Ok(())
    }

    /// Applies a local change to `name` at `now_micros` (stamped after its last change).
    fn set(
        &self,
        file: &mut MutexGuard<'_, UsersFile>,
        name: &str,
        record: Option<UserRecord>,
        now_micros: i64,
    ) -> Result<(), UserStoreError> {
        let previous = file.users.get(name).map(|e| e.stamp);
        let stamp = next_stamp(previous, now_micros, record.is_none());
        let mut next = UsersFile::clone(file);
        next.users
            .insert(name.to_owned(), UserEntry { stamp, record });
        self.commit(&next)?;
        **file = next;
        Ok(())
    }

    /// Creates a user.
    pub fn create(
        &self,
        name: &str,
        superuser: bool,
        verifier: ScramVerifier,
        if_not_exists: bool,
        now_micros: i64,
    ) -> Result<Applied, UserStoreError> {
        validate_name(name).map_err(UserStoreError::Invalid)?;
        verifier
            .check()
            .map_err(|e| UserStoreError::Invalid(format!("password verifier: {e}")))?;
        let mut file = lock(&self.state);
        if file.users.get(name).is_some_and(|e| e.record.is_some()) {
            if if_not_exists {
                return Ok(Applied::Unchanged);
            }
            return Err(UserStoreError::Invalid(format!("user {name:?} exists")));
        }
        let record = UserRecord {
            superuser,
            verifier,
            permissions: Permissions::default(),
        };
        self.set(&mut file, name, Some(record), now_micros)?;
        Ok(Applied::Changed)
    }

    /// Sets a user's password (its verifier); the superuser flag and grants stay.
    pub fn alter(
        &self,
        name: &str,
        verifier: ScramVerifier,
        now_micros: i64,
    ) -> Result<Applied, UserStoreError> {
        verifier
            .check()
            .map_err(|e| UserStoreError::Invalid(format!("password verifier: {e}")))?;
        let mut file = lock(&self.state);
        let Some(current) = file.users.get(name).and_then(|e| e.record.clone()) else {
            return Err(UserStoreError::Invalid(format!("no user {name:?}")));
        };
        let record = UserRecord {
            verifier,
            ..current
        };
        self.set(&mut file, name, Some(record), now_micros)?;
        Ok(Applied::Changed)
    }

    /// Grants (`add`) or revokes a permission of user `name`: `Unchanged` when it was
    /// held already (grant) or not held (revoke). Whether the table exists is the
    /// caller's business (a GRANT checks the schema, a REVOKE does not).
    pub fn change_grant(
        &self,
        name: &str,
        grant: &Grant,
        add: bool,
        now_micros: i64,
    ) -> Result<Applied, UserStoreError> {
        check_scope(grant).map_err(UserStoreError::Invalid)?;
        let mut file = lock(&self.state);
        let Some(mut record) = file.users.get(name).and_then(|e| e.record.clone()) else {
            return Err(UserStoreError::Invalid(format!("no user {name:?}")));
        };
        let changed = if add {
            record.permissions.add(grant)
        } else {
            record.permissions.remove(grant)
        };
        if !changed {
            return Ok(Applied::Unchanged);
        }
        self.set(&mut file, name, Some(record), now_micros)?;
        Ok(Applied::Changed)
    }

    /// Drops a user (a tombstone stays).
    pub fn drop_user(
        &self,
        name: &str,
        if_exists: bool,
        now_micros: i64,
    ) -> Result<Applied, UserStoreError> {
        let mut file = lock(&self.state);
        if file.users.get(name).is_none_or(|e| e.record.is_none()) {
            if if_exists {
                return Ok(Applied::Unchanged);
            }
            return Err(UserStoreError::Invalid(format!("no user {name:?}")));
        }
        self.set(&mut file, name, None, now_micros)?;
        Ok(Applied::Changed)
    }

    /// Revokes every permission on `table` from every user (a dropped table's grants go
    /// with it, as in Cassandra, so a table created again under the name starts with
    /// none); each user changed gets a new stamp. Returns the users changed.
    pub fn forget_table(
        &self,
        table: &str,
        now_micros: i64,
    ) -> Result<Vec<String>, UserStoreError> {
        let mut file = lock(&self.state);
        let mut next = UsersFile::clone(&file);
        let mut changed = Vec::new();
        for (name, entry) in next.users.iter_mut() {
            let Some(record) = entry.record.as_mut() else {
                continue;
            };
            if record.permissions.forget_table(table) {
                entry.stamp = next_stamp(Some(entry.stamp), now_micros, false);
                changed.push(name.clone());
            }
        }
        if !changed.is_empty() {
            self.commit(&next)?;
            *file = next;
        }
        Ok(changed)
    }

    /// The users as schema export entries (`user:NAME`, the record as metadata).
    pub fn export_entries(&self) -> Vec<ExportEntry> {
        lock(&self.state)
            .users
            .iter()
            .map(|(name, e)| ExportEntry {
                name: format!("{EXPORT_PREFIX}{name}"),
                stamp: e.stamp,
                metadata: e
                    .record
                    .as_ref()
                    .map(UserRecord::encode)
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Merges user entries from a peer's export (names with [`EXPORT_PREFIX`]); a remote
    /// entry replaces the local one when it wins by (stamp, record bytes), the order every
    /// node uses. Unreadable entries are skipped with a warning. Returns whether anything
    /// changed.
    pub fn merge(&self, entries: &[ExportEntry]) -> Result<bool, UserStoreError> {
        let mut file = lock(&self.state);
        let mut next = UsersFile::clone(&file);
        let mut changed = false;
        for remote in entries {
            let Some(name) = remote.name.strip_prefix(EXPORT_PREFIX) else {
                continue;
            };
            if validate_name(name).is_err() {
                tracing::warn!(user = %name, "peer sent an invalid user name");
                continue;
            }
            let local = next.users.get(name).map(|e| ExportEntry {
                name: remote.name.clone(),
                stamp: e.stamp,
                metadata: e
                    .record
                    .as_ref()
                    .map(UserRecord::encode)
                    .unwrap_or_default(),
            });
            if local.as_ref().is_some_and(|l| !remote.wins_over(l)) {
                continue;
            }
            let record = if remote.stamp.dropped {
                None
            } else {
                match UserRecord::decode(&remote.metadata) {
                    Ok(r) => Some(r),
                    Err(reason) => {
                        tracing::warn!(user = %name, reason, "peer sent an unreadable user");
                        continue;
                    }
                }
            };
            tracing::info!(user = %name, dropped = record.is_none(), "user changed (from a peer)");
            next.users.insert(
                name.to_owned(),
                UserEntry {
                    stamp: remote.stamp,
                    record,
                },
            );
            changed = true;
        }
        if changed {
            self.commit(&next)?;
            *file = next;
        }
        Ok(changed)
    }

    /// Creates superuser `name` with `password` unless a user of that name exists or
    /// was dropped (an operator's drop is not undone by a restart). Returns whether it
    /// was created.
    pub fn ensure_superuser(
        &self,
        name: &str,
        password: &str,
        now_micros: i64,
    ) -> Result<bool, UserStoreError> {
        validate_name(name).map_err(UserStoreError::Invalid)?;
        if lock(&self.state).users.contains_key(name) {
            return Ok(false);
        }
        // PBKDF2 outside the lock.
        let verifier = ScramVerifier::generate(password);
        let applied = self.create(name, true, verifier, true, now_micros)?;
        Ok(applied == Applied::Changed)
    }

    /// The stamp of `name`, if it was ever seen (tests).
    pub fn stamp(&self, name: &str) -> Option<Stamp> {
        lock(&self.state).users.get(name).map(|e| e.stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(pw: &str) -> ScramVerifier {
        ScramVerifier::derive(pw, b"0123456789abcdef", 4096)
    }

    #[test]
    fn user_store_create_alter_drop_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .create("alice", false, verifier("a"), false, 10)
                .unwrap(),
            Applied::Changed
        );
        assert!(store
            .create("alice", false, verifier("a"), false, 11)
            .is_err());
        assert_eq!(
            store
                .create("alice", false, verifier("a"), true, 11)
                .unwrap(),
            Applied::Unchanged
        );
        store.alter("alice", verifier("b"), 12).unwrap();
        assert_eq!(store.lookup("alice").unwrap().verifier, verifier("b"));
        assert!(store.ensure_superuser("root", "pw", 13).unwrap());
        assert!(!store.ensure_superuser("root", "other", 14).unwrap());
        store.drop_user("alice", false, 15).unwrap();
        assert!(store.drop_user("alice", false, 16).is_err());
        drop(store);
        let reopened = UserStore::open(dir.path()).unwrap();
        assert!(reopened.lookup("alice").is_none());
        assert!(reopened.lookup("root").unwrap().superuser);
        assert!(reopened.stamp("alice").unwrap().dropped);
    }

    #[test]
    fn user_store_merge_is_last_writer_wins_with_tombstones() {
        let a = UserStore::in_memory();
        let b = UserStore::in_memory();
        a.create("bob", false, verifier("1"), false, 100).unwrap();
        assert!(b.merge(&a.export_entries()).unwrap());
        assert_eq!(b.lookup("bob"), a.lookup("bob"));
        assert!(!b.merge(&a.export_entries()).unwrap(), "idempotent");
        // A drop on b beats the older create; merging the create back changes nothing.
        b.drop_user("bob", false, 200).unwrap();
        assert!(!b.merge(&a.export_entries()).unwrap());
        assert!(a.merge(&b.export_entries()).unwrap());
        assert!(a.lookup("bob").is_none());
        // Unknown users get a stable mock verifier.
        let (v1, r1) = a.login_verifier("nobody");
        let (v2, _) = a.login_verifier("nobody");
        assert!(r1.is_none());
        assert_eq!(v1, v2);
    }

    #[test]
    fn user_store_grants_persist_spread_and_keep_across_a_password_change() {
        use sibyl_protocol::Permission;
        let dir = tempfile::tempdir().unwrap();
        let a = UserStore::open(dir.path()).unwrap();
        a.create("alice", false, verifier("a"), false, 10).unwrap();
        let read_kv = Grant {
            permission: Permission::Read,
            table: Some("kv".into()),
        };
        assert_eq!(
            a.change_grant("alice", &read_kv, true, 11).unwrap(),
            Applied::Changed
        );
        assert_eq!(
            a.change_grant("alice", &read_kv, true, 12).unwrap(),
            Applied::Unchanged
        );
        let no_table = Grant {
            permission: Permission::Write,
            table: None,
        };
        assert!(a.change_grant("alice", &no_table, true, 12).is_err());
        assert!(a.change_grant("nobody", &read_kv, true, 12).is_err());
        a.alter("alice", verifier("b"), 13).unwrap();
        let b = UserStore::in_memory();
        b.merge(&a.export_entries()).unwrap();
        assert!(b.with_user("alice", |r| r
            .unwrap()
            .permissions
            .holds(Permission::Read, Some("kv"))));
        drop(a);
        let reopened = UserStore::open(dir.path()).unwrap();
        assert_eq!(reopened.list()[0].grants, vec![read_kv.clone()]);
        assert_eq!(
            reopened.change_grant("alice", &read_kv, false, 14).unwrap(),
            Applied::Changed
        );
        assert!(reopened.list()[0].grants.is_empty());
        reopened.change_grant("alice", &read_kv, true, 15).unwrap();
        let before = reopened.stamp("alice").unwrap();
        assert_eq!(reopened.forget_table("kv", 16).unwrap(), vec!["alice"]);
        assert!(reopened.list()[0].grants.is_empty());
        assert!(reopened.stamp("alice").unwrap().micros > before.micros);
        assert!(reopened.forget_table("kv", 17).unwrap().is_empty());
    }

    #[test]
    fn user_store_refuses_bad_names_and_weak_verifiers() {
        let s = UserStore::in_memory();
        assert!(s.create("a b", false, verifier("x"), false, 1).is_err());
        let mut weak = verifier("x");
        weak.iterations = 10;
        assert!(s.create("ok", false, weak, false, 1).is_err());
    }
}
