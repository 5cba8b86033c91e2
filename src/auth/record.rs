//! The byte formats of users: one user's record (the metadata of a `user:` entry in the
//! schema export peers exchange) and the node's `users` file (spec: `doc/node-files.md`).
//!
//! # User record (version 1)
//! ```text
//! record     = version flags iterations salt_len salt stored_key server_key
//! version    = 0x01
//! flags      = u8: bit 0 superuser; other bits 0
//! iterations = u32be (4096..=1048576)      salt_len = u8 (8..=64)
//! stored_key = 32 bytes                    server_key = 32 bytes
//! ```
//! Permissions will come as a version 2 that appends them; a version-1 reader refuses a
//! record of another version rather than guess.
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

use sibyl_coding::ByteReader;
use sibyl_protocol::scram::{ScramVerifier, KEY_LEN};

use crate::service::schema_sync::Stamp;

/// Longest user name (bytes).
pub const MAX_USER_NAME_LEN: usize = 64;
/// Magic of the users file.
const FILE_MAGIC: [u8; 4] = *b"SUSR";
/// Version of the users file and of a record.
const VERSION: u8 = 1;
/// Bytes of the node's mock-salt secret.
pub const SECRET_LEN: usize = 32;
/// Smallest encoded file entry: name_len, 1-byte name, micros, dropped.
const MIN_ENTRY_LEN: usize = 1 + 1 + 8 + 1;
const FLAG_SUPERUSER: u8 = 0x01;

/// A live user: what a login and an authorization check need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// May manage users.
    pub superuser: bool,
    /// The password's SCRAM verifier.
    pub verifier: ScramVerifier,
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
        let mut b = Vec::with_capacity(2 + 4 + 1 + v.salt.len() + 2 * KEY_LEN);
        b.push(VERSION);
        b.push(if self.superuser { FLAG_SUPERUSER } else { 0 });
        b.extend_from_slice(&v.iterations.to_be_bytes());
        b.push(u8::try_from(v.salt.len()).unwrap_or(u8::MAX));
        b.extend_from_slice(v.salt.get(..usize::from(u8::MAX)).unwrap_or(&v.salt));
        b.extend_from_slice(&v.stored_key);
        b.extend_from_slice(&v.server_key);
        b
    }

    /// Reads a record; the verifier must pass [`ScramVerifier::check`].
    pub fn decode(bytes: &[u8]) -> Result<UserRecord, &'static str> {
        const T: &str = "truncated user record";
        let mut r = ByteReader::new(bytes);
        if r.u8().ok_or(T)? != VERSION {
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
        }
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
