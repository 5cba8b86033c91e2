//! The node's actor id: who minted a dot.
//!
//! An [`Actor`] is a random 64-bit node id plus an epoch. The node id is independent of the
//! node's membership identity: a node whose data directory was wiped gets a brand-new actor
//! (the old file is gone), and a node that kept its directory but may have lost writes (a
//! corrupt commit log) calls [`ActorEpoch::bump_epoch`] before coordinating writes again.
//! Either way its new dots can never equal dots it minted before and lost, which is Riak's
//! KV679 failure (a replica re-minting an old dot makes its peers drop the new write as
//! "already seen").
//!
//! [`ActorEpoch`] owns the `actor` file in the data directory; the format is in
//! [`super::format`]. It is used by one thread at start-up and on data-loss detection; it is
//! not shared.

use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sibyl_coding::ByteReader;

use super::format::{ACTOR_FILE_LEN, ACTOR_FILE_MAGIC, ACTOR_FILE_VERSION, ACTOR_LEN};
use super::VersioningError;

/// The identity that mints dots: a node id and an epoch. Ordered by (node, epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Actor {
    /// Random node id, chosen when the data directory is created.
    pub node: u64,
    /// Bumped whenever the node may have lost data; starts at 1.
    pub epoch: u32,
}

impl Actor {
    /// An actor from its parts.
    pub const fn new(node: u64, epoch: u32) -> Self {
        Actor { node, epoch }
    }

    /// Appends the 12-byte encoding (node u64le, epoch u32le).
    pub fn encode_to(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.node.to_le_bytes());
        buf.extend_from_slice(&self.epoch.to_le_bytes());
    }

    /// The 12-byte encoding.
    pub fn to_bytes(&self) -> [u8; ACTOR_LEN] {
        let mut out = [0u8; ACTOR_LEN];
        out[..8].copy_from_slice(&self.node.to_le_bytes());
        out[8..].copy_from_slice(&self.epoch.to_le_bytes());
        out
    }

    /// Reads an actor from `r`; `None` when fewer than 12 bytes are left.
    pub fn decode_from(r: &mut ByteReader<'_>) -> Option<Actor> {
        let node = r.u64_le()?;
        let epoch = r.u32_le()?;
        Some(Actor { node, epoch })
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}.{}", self.node, self.epoch)
    }
}

/// Whether [`ActorEpoch::open`] found an actor file or made a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorOpen {
    /// The file existed and was valid.
    Loaded,
    /// There was no file: a new random actor at epoch 1 was written.
    Created,
}

/// The persisted actor of a node: the `actor` file in its data directory.
#[derive(Debug)]
pub struct ActorEpoch {
    dir: PathBuf,
    actor: Actor,
}

impl ActorEpoch {
    /// Name of the file in the data directory.
    pub const FILE_NAME: &'static str = "actor";

    /// Reads `<dir>/actor`, or creates it with a random node id and epoch 1 when absent.
    /// A present but invalid file is an error ([`VersioningError::CorruptActorFile`]): the
    /// node must not guess; it may call [`ActorEpoch::create_fresh`] (a new actor is always
    /// safe) after reporting it.
    pub fn open(dir: &Path) -> Result<(ActorEpoch, ActorOpen), VersioningError> {
        let path = dir.join(Self::FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => {
                let actor = decode_actor_file(&bytes).map_err(|reason| {
                    VersioningError::CorruptActorFile {
                        path: path.clone(),
                        reason,
                    }
                })?;
                Ok((
                    ActorEpoch {
                        dir: dir.to_path_buf(),
                        actor,
                    },
                    ActorOpen::Loaded,
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Ok((Self::create_fresh(dir)?, ActorOpen::Created))
            }
            Err(source) => Err(VersioningError::Io { path, source }),
        }
    }

    /// Writes a new random actor at epoch 1, replacing any existing file.
    pub fn create_fresh(dir: &Path) -> Result<ActorEpoch, VersioningError> {
        Self::create(dir, Actor::new(rand::random::<u64>(), 1))
    }

    /// Writes `actor`, replacing any existing file. For a deterministic simulation, which
    /// derives its nodes' ids from its seed; a real node always takes a random id.
    pub fn create(dir: &Path, actor: Actor) -> Result<ActorEpoch, VersioningError> {
        let me = ActorEpoch {
            dir: dir.to_path_buf(),
            actor,
        };
        me.persist()?;
        Ok(me)
    }

    /// The current actor.
    pub fn actor(&self) -> Actor {
        self.actor
    }

    /// Moves to the next epoch and persists it before returning, so no dot is minted under
    /// the new epoch unless it is durable. Called when the node detects possible data loss
    /// (a corrupt commit log, missing SSTables). If the epoch would overflow, a new random
    /// node id at epoch 1 is taken instead (equally unique).
    pub fn bump_epoch(&mut self) -> Result<Actor, VersioningError> {
        let next = match self.actor.epoch.checked_add(1) {
            Some(epoch) => Actor::new(self.actor.node, epoch),
            None => Actor::new(rand::random::<u64>(), 1),
        };
        let old = self.actor;
        self.actor = next;
        if let Err(e) = self.persist() {
            self.actor = old;
            return Err(e);
        }
        tracing::warn!(old = %old, new = %next, "actor epoch bumped after possible data loss");
        Ok(next)
    }

    /// Write to a temporary file, fsync it, rename over the real one, fsync the directory.
    fn persist(&self) -> Result<(), VersioningError> {
        let bytes = encode_actor_file(self.actor);
        sibyl_storage::atomic_file::replace(
            &self.dir,
            Self::FILE_NAME,
            &bytes,
            &sibyl_storage::fault::Faults::default(),
        )
        .map_err(|e| VersioningError::Io {
            path: e.path,
            source: e.source,
        })
    }
}

fn encode_actor_file(actor: Actor) -> Vec<u8> {
    let mut buf = Vec::with_capacity(ACTOR_FILE_LEN);
    buf.extend_from_slice(&ACTOR_FILE_MAGIC);
    buf.push(ACTOR_FILE_VERSION);
    actor.encode_to(&mut buf);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

fn decode_actor_file(bytes: &[u8]) -> Result<Actor, &'static str> {
    if bytes.len() != ACTOR_FILE_LEN {
        return Err("wrong length");
    }
    let (body, crc) = bytes.split_at(ACTOR_FILE_LEN - 4);
    let mut r = ByteReader::new(crc);
    let stored = r.u32_le().ok_or("wrong length")?;
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch");
    }
    let mut r = ByteReader::new(body);
    if r.take(ACTOR_FILE_MAGIC.len()) != Some(&ACTOR_FILE_MAGIC[..]) {
        return Err("bad magic");
    }
    if r.u8() != Some(ACTOR_FILE_VERSION) {
        return Err("unknown version");
    }
    let actor = Actor::decode_from(&mut r).ok_or("wrong length")?;
    if actor.epoch == 0 {
        return Err("epoch 0");
    }
    Ok(actor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_encoding_round_trips() {
        let a = Actor::new(0x0102_0304_0506_0708, 9);
        let bytes = a.to_bytes();
        let mut v = Vec::new();
        a.encode_to(&mut v);
        assert_eq!(&v[..], &bytes[..]);
        let mut r = ByteReader::new(&bytes);
        assert_eq!(Actor::decode_from(&mut r), Some(a));
        assert!(r.is_empty());
    }

    #[test]
    fn actor_epoch_open_creates_then_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (first, how) = ActorEpoch::open(dir.path()).unwrap();
        assert_eq!(how, ActorOpen::Created);
        assert_eq!(first.actor().epoch, 1);
        let (again, how) = ActorEpoch::open(dir.path()).unwrap();
        assert_eq!(how, ActorOpen::Loaded);
        assert_eq!(again.actor(), first.actor());
        assert!(!dir
            .path()
            .join(sibyl_storage::atomic_file::tmp_name(ActorEpoch::FILE_NAME))
            .exists());
    }

    #[test]
    fn actor_epoch_bump_persists() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ae, _) = ActorEpoch::open(dir.path()).unwrap();
        let before = ae.actor();
        let after = ae.bump_epoch().unwrap();
        assert_eq!(after, Actor::new(before.node, 2));
        let (reloaded, how) = ActorEpoch::open(dir.path()).unwrap();
        assert_eq!(how, ActorOpen::Loaded);
        assert_eq!(reloaded.actor(), after);
    }

    #[test]
    fn actor_epoch_wiped_dir_gets_new_actor() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = ActorEpoch::open(dir.path()).unwrap();
        fs::remove_file(dir.path().join(ActorEpoch::FILE_NAME)).unwrap();
        let (new, how) = ActorEpoch::open(dir.path()).unwrap();
        assert_eq!(how, ActorOpen::Created);
        assert_ne!(new.actor(), old.actor());
    }

    #[test]
    fn actor_epoch_corrupt_file_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_ae, _) = ActorEpoch::open(dir.path()).unwrap();
        let path = dir.path().join(ActorEpoch::FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        match ActorEpoch::open(dir.path()) {
            Err(VersioningError::CorruptActorFile { reason, .. }) => {
                assert_eq!(reason, "checksum mismatch")
            }
            other => panic!("expected corrupt actor file, got {other:?}"),
        }
        fs::write(&path, &bytes[..5]).unwrap();
        assert!(matches!(
            ActorEpoch::open(dir.path()),
            Err(VersioningError::CorruptActorFile {
                reason: "wrong length",
                ..
            })
        ));
    }

    #[test]
    fn actor_file_decoder_rejects_random_bytes() {
        for seed in 0u8..=255 {
            let bytes: Vec<u8> = (0..ACTOR_FILE_LEN as u8)
                .map(|i| i.wrapping_mul(31).wrapping_add(seed))
                .collect();
            assert!(decode_actor_file(&bytes).is_err());
        }
    }
}
