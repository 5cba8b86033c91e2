//! Contexts: the opaque token a client receives with a read and sends back with a write or
//! delete, naming the versions it saw. It is a [`VersionVector`] encoded with a magic, a
//! version and a crc32 (format in [`super::format`]).
//!
//! Everything coming back from a client is validated by [`Context::decode`]: wrong magic or
//! version, a bad checksum, truncation, unsorted or duplicate actors, zero or out-of-range
//! counters, too many actors, trailing bytes — all are
//! [`VersioningError::InvalidContext`], never a panic. The crc does not authenticate: a
//! client could forge a well-formed context claiming to have seen more than it did, which
//! lets it supersede (delete) versions it never read — no more than a delete already
//! allows, except that it can claim counters not yet minted, which would make those future
//! writes look already seen. The counter cap keeps such a claim from breaking the cell
//! format; binding contexts to a cluster secret (a MAC) is future work.

use sibyl_coding::{put_varint, ByteReader};

use super::actor::Actor;
use super::dvv::Dvv;
use super::format::{
    ACTOR_LEN, CONTEXT_MAGIC, CONTEXT_VERSION, CONTEXT_VERSION_IDS, MAX_ACTORS,
    MAX_CONTEXT_COUNTER, MAX_CONTEXT_WRITE_IDS,
};
use super::vv::VersionVector;
use super::VersioningError;

/// What a client saw of a cell: opaque bytes to the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Context {
    vv: VersionVector,
    /// Write ids of the versions seen, ascending, unique.
    ids: Vec<u128>,
}

fn invalid(reason: &'static str) -> VersioningError {
    VersioningError::InvalidContext { reason }
}

impl Context {
    /// The context of a read that saw `dvv`: its join, and the write ids of its versions
    /// (every copy of a retried write counts as seen through any one of them).
    pub fn of(dvv: &Dvv) -> Self {
        let mut ids: Vec<u128> = dvv.siblings().filter_map(|(_, s)| s.write_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_CONTEXT_WRITE_IDS);
        Context {
            vv: dvv.join(),
            ids,
        }
    }

    /// A context from a version vector (tests, merging contexts of several cells).
    pub fn from_vv(vv: VersionVector) -> Self {
        Context {
            vv,
            ids: Vec::new(),
        }
    }

    /// The same context having also seen `vv` (a row tombstone's history, say).
    pub fn with_seen(self, vv: &VersionVector) -> Self {
        Context {
            vv: self.vv.merge(vv),
            ids: self.ids,
        }
    }

    /// The version vector.
    pub fn vv(&self) -> &VersionVector {
        &self.vv
    }

    /// Write ids of the versions seen, ascending.
    pub fn write_ids(&self) -> &[u128] {
        &self.ids
    }

    /// True when the context has seen nothing.
    pub fn is_empty(&self) -> bool {
        self.vv.is_empty() && self.ids.is_empty()
    }

    /// The bytes handed to clients. Counters above the context cap are clamped to it (only
    /// a cell that took 2^62 writes could hold one).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 + self.vv.len() * (ACTOR_LEN + 4));
        buf.extend_from_slice(&CONTEXT_MAGIC);
        buf.push(if self.ids.is_empty() {
            CONTEXT_VERSION
        } else {
            CONTEXT_VERSION_IDS
        });
        put_varint(&mut buf, self.vv.len() as u64);
        for (actor, n) in self.vv.entries() {
            actor.encode_to(&mut buf);
            put_varint(&mut buf, (*n).min(MAX_CONTEXT_COUNTER));
        }
        if !self.ids.is_empty() {
            put_varint(&mut buf, self.ids.len() as u64);
            for id in &self.ids {
                buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        buf
    }

    /// Validates and decodes bytes a client sent back.
    pub fn decode(bytes: &[u8]) -> Result<Context, VersioningError> {
        let body_len = bytes.len().checked_sub(4).ok_or(invalid("too short"))?;
        let (body, crc) = bytes.split_at(body_len);
        let stored = ByteReader::new(crc).u32_le().ok_or(invalid("too short"))?;
        let mut r = ByteReader::new(body);
        if r.take(CONTEXT_MAGIC.len()) != Some(&CONTEXT_MAGIC[..]) {
            return Err(invalid("not a context"));
        }
        let with_ids = match r.u8() {
            Some(CONTEXT_VERSION) => false,
            Some(CONTEXT_VERSION_IDS) => true,
            _ => return Err(invalid("unknown context version")),
        };
        if crc32fast::hash(body) != stored {
            return Err(invalid("checksum mismatch"));
        }
        let n = r.varint().ok_or(invalid("truncated"))?;
        let n = usize::try_from(n).map_err(|_| invalid("too many actors"))?;
        if n > MAX_ACTORS {
            return Err(invalid("too many actors"));
        }
        if n.saturating_mul(ACTOR_LEN + 1) > r.remaining() {
            return Err(invalid("truncated"));
        }
        let mut entries: Vec<(Actor, u64)> = Vec::with_capacity(n);
        for _ in 0..n {
            let actor = Actor::decode_from(&mut r).ok_or(invalid("truncated"))?;
            if entries.last().is_some_and(|(prev, _)| *prev >= actor) {
                return Err(invalid("actors not strictly ascending"));
            }
            let counter = r.varint().ok_or(invalid("truncated"))?;
            if counter == 0 || counter > MAX_CONTEXT_COUNTER {
                return Err(invalid("counter out of range"));
            }
            entries.push((actor, counter));
        }
        let mut ids: Vec<u128> = Vec::new();
        if with_ids {
            let n = r.varint().ok_or(invalid("truncated"))?;
            let n = usize::try_from(n).map_err(|_| invalid("too many write ids"))?;
            if n == 0 || n > MAX_CONTEXT_WRITE_IDS {
                return Err(invalid("write id count out of range"));
            }
            if n.saturating_mul(16) > r.remaining() {
                return Err(invalid("truncated"));
            }
            ids.reserve(n);
            for _ in 0..n {
                let low = r.u64_le().ok_or(invalid("truncated"))?;
                let high = r.u64_le().ok_or(invalid("truncated"))?;
                let id = (u128::from(high) << 64) | u128::from(low);
                if ids.last().is_some_and(|prev| *prev >= id) {
                    return Err(invalid("write ids not strictly ascending"));
                }
                ids.push(id);
            }
        }
        if !r.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        Ok(Context {
            vv: VersionVector::from_sorted_unchecked(entries),
            ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Context {
        Context::from_vv(VersionVector::from_pairs([
            (Actor::new(1, 1), 3),
            (Actor::new(1, 2), 1),
            (Actor::new(u64::MAX, u32::MAX), MAX_CONTEXT_COUNTER),
        ]))
    }

    fn sample_with_ids() -> Context {
        Context {
            ids: vec![1, 7, u128::MAX],
            ..sample()
        }
    }

    #[test]
    fn context_round_trips() {
        for c in [Context::default(), sample(), sample_with_ids()] {
            assert_eq!(Context::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn context_empty_matches_spec_example() {
        let mut expected = vec![0x53, 0x43, 0x01, 0x00];
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(Context::default().encode(), expected);
    }

    #[test]
    fn context_every_bit_flip_is_invalid() {
        let bytes = sample_with_ids().encode();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(
                matches!(
                    Context::decode(&b),
                    Err(VersioningError::InvalidContext { .. })
                ),
                "bit {i}"
            );
        }
    }

    #[test]
    fn context_every_truncation_is_invalid() {
        let bytes = sample_with_ids().encode();
        for n in 0..bytes.len() {
            assert!(Context::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn context_well_checksummed_but_unsorted_is_invalid() {
        let mut body = vec![0x53, 0x43, 0x01, 0x02];
        Actor::new(9, 1).encode_to(&mut body);
        body.push(1);
        Actor::new(3, 1).encode_to(&mut body);
        body.push(1);
        assert!(matches!(
            Context::decode(&with_crc(body)),
            Err(VersioningError::InvalidContext {
                reason: "actors not strictly ascending"
            })
        ));
    }

    #[test]
    fn context_counter_above_cap_is_invalid() {
        let mut body = vec![0x53, 0x43, 0x01, 0x01];
        Actor::new(9, 1).encode_to(&mut body);
        put_varint(&mut body, MAX_CONTEXT_COUNTER + 1);
        assert!(matches!(
            Context::decode(&with_crc(body)),
            Err(VersioningError::InvalidContext {
                reason: "counter out of range"
            })
        ));
    }

    #[test]
    fn context_huge_actor_count_is_invalid() {
        let mut body = vec![0x53, 0x43, 0x01];
        put_varint(&mut body, u64::MAX);
        assert!(Context::decode(&with_crc(body)).is_err());
    }
}
