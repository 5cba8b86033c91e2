//! Encoding of causal cells: a [`Dvv`] as the engine value of a `causal` table. The format
//! is specified in [`super::format`]. The decoder never panics and never allocates more
//! than the input can describe; every violation is a [`VersioningError::CorruptCell`].

use sibyl_coding::{put_varint, ByteReader};

use super::actor::Actor;
use super::dvv::{Dvv, DvvEntry, Sibling};
use super::format::{
    ACTOR_LEN, CAUSAL_CELL_V1, CAUSAL_CELL_V2, MAX_ACTORS, MAX_CELL_COUNTER, MAX_CELL_SIBLINGS,
    MAX_SUPERSEDED, SIBLING_FLAGS_KNOWN, SIBLING_HAS_EXPIRY, SIBLING_HAS_VALUE,
    SIBLING_HAS_WRITE_ID,
};
use super::VersioningError;

/// Smallest encoding of one sibling: age, flags, timestamp.
const MIN_DOT_LEN: usize = 1 + 1 + 8;
/// Smallest encoding of one entry: actor, counter, dot count.
const MIN_ENTRY_LEN: usize = ACTOR_LEN + 1 + 1;

fn corrupt(reason: &'static str) -> VersioningError {
    VersioningError::CorruptCell {
        kind: "causal",
        reason,
    }
}

/// Encodes `dvv` as a causal cell.
pub fn encode_causal_cell(dvv: &Dvv) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 + dvv.sibling_count() * 24);
    buf.push(if dvv.superseded.is_empty() {
        CAUSAL_CELL_V1
    } else {
        CAUSAL_CELL_V2
    });
    put_varint(&mut buf, dvv.entries.len() as u64);
    for e in &dvv.entries {
        e.actor.encode_to(&mut buf);
        put_varint(&mut buf, e.counter);
        put_varint(&mut buf, e.dots.len() as u64);
        for (c, s) in &e.dots {
            put_varint(&mut buf, e.counter.saturating_sub(*c));
            encode_sibling(&mut buf, s);
        }
    }
    if !dvv.superseded.is_empty() {
        put_varint(&mut buf, dvv.superseded.len() as u64);
        for (id, expires) in &dvv.superseded {
            buf.extend_from_slice(&id.to_le_bytes());
            put_varint(&mut buf, *expires);
        }
    }
    buf
}

fn encode_sibling(buf: &mut Vec<u8>, s: &Sibling) {
    let mut flags = 0u8;
    if s.value.is_some() {
        flags |= SIBLING_HAS_VALUE;
    }
    if s.expires_at_secs.is_some() {
        flags |= SIBLING_HAS_EXPIRY;
    }
    if s.write_id.is_some() {
        flags |= SIBLING_HAS_WRITE_ID;
    }
    buf.push(flags);
    buf.extend_from_slice(&s.timestamp_micros.to_le_bytes());
    if let Some(t) = s.expires_at_secs {
        put_varint(buf, t);
    }
    if let Some(id) = s.write_id {
        buf.extend_from_slice(&id.to_le_bytes());
    }
    if let Some(v) = &s.value {
        put_varint(buf, v.len() as u64);
        buf.extend_from_slice(v);
    }
}

/// Decodes a causal cell, checking every invariant of the format.
pub fn decode_causal_cell(bytes: &[u8]) -> Result<Dvv, VersioningError> {
    parse_causal_cell::<true>(bytes).map(Option::unwrap_or_default)
}

/// Checks every invariant of the format as [`decode_causal_cell`] does, without building
/// the cell (no allocation, no value copied): for cells that are only passed on.
pub fn check_causal_cell(bytes: &[u8]) -> Result<(), VersioningError> {
    parse_causal_cell::<false>(bytes).map(drop)
}

/// The one parser of the format: builds the cell when `BUILD`, else only checks it
/// (and returns `None`).
fn parse_causal_cell<const BUILD: bool>(bytes: &[u8]) -> Result<Option<Dvv>, VersioningError> {
    let mut r = ByteReader::new(bytes);
    let v2 = match r.u8().ok_or(corrupt("empty"))? {
        CAUSAL_CELL_V1 => false,
        CAUSAL_CELL_V2 => true,
        _ => return Err(corrupt("unknown format byte")),
    };
    let n_entries = count(&mut r, MAX_ACTORS, MIN_ENTRY_LEN, "too many actors")?;
    let mut entries: Vec<DvvEntry> = Vec::with_capacity(if BUILD { n_entries } else { 0 });
    let mut last_actor: Option<Actor> = None;
    let mut total_dots = 0usize;
    for _ in 0..n_entries {
        let actor = Actor::decode_from(&mut r).ok_or(corrupt("truncated actor"))?;
        if last_actor.is_some_and(|last| last >= actor) {
            return Err(corrupt("actors not strictly ascending"));
        }
        last_actor = Some(actor);
        let counter = r.varint().ok_or(corrupt("truncated counter"))?;
        if counter == 0 || counter > MAX_CELL_COUNTER {
            return Err(corrupt("counter out of range"));
        }
        let n_dots = count(&mut r, MAX_CELL_SIBLINGS, MIN_DOT_LEN, "too many siblings")?;
        total_dots = total_dots.saturating_add(n_dots);
        if total_dots > MAX_CELL_SIBLINGS {
            return Err(corrupt("too many siblings"));
        }
        let mut dots: Vec<(u64, Sibling)> = Vec::with_capacity(if BUILD { n_dots } else { 0 });
        let mut last_dot: Option<u64> = None;
        for _ in 0..n_dots {
            let age = r.varint().ok_or(corrupt("truncated dot"))?;
            if age >= counter {
                return Err(corrupt("dot out of range"));
            }
            let c = counter - age;
            if last_dot.is_some_and(|prev| prev >= c) {
                return Err(corrupt("dots not strictly ascending"));
            }
            last_dot = Some(c);
            if let Some(sibling) = parse_sibling::<BUILD>(&mut r)? {
                dots.push((c, sibling));
            }
        }
        if BUILD {
            entries.push(DvvEntry {
                actor,
                counter,
                dots,
            });
        }
    }
    let mut superseded: Vec<(u128, u64)> = Vec::new();
    if v2 {
        let n = count(&mut r, MAX_SUPERSEDED, 17, "too many superseded ids")?;
        if n == 0 {
            return Err(corrupt("empty superseded list"));
        }
        let mut last_id: Option<u128> = None;
        for _ in 0..n {
            let id = read_u128(&mut r).ok_or(corrupt("truncated superseded id"))?;
            if last_id.is_some_and(|prev| prev >= id) {
                return Err(corrupt("superseded ids not strictly ascending"));
            }
            last_id = Some(id);
            let expires = r.varint().ok_or(corrupt("truncated superseded expiry"))?;
            if BUILD {
                superseded.push((id, expires));
            }
        }
    }
    if !r.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(BUILD.then_some(Dvv {
        entries,
        superseded,
    }))
}

/// Reads a count, capped by `max` and by what the remaining bytes could hold.
fn count(
    r: &mut ByteReader<'_>,
    max: usize,
    min_item_len: usize,
    too_many: &'static str,
) -> Result<usize, VersioningError> {
    let n = r.varint().ok_or(corrupt("truncated count"))?;
    let n = usize::try_from(n).map_err(|_| corrupt(too_many))?;
    if n > max {
        return Err(corrupt(too_many));
    }
    if n.saturating_mul(min_item_len) > r.remaining() {
        return Err(corrupt("count exceeds cell length"));
    }
    Ok(n)
}

/// A little-endian u128.
fn read_u128(r: &mut ByteReader<'_>) -> Option<u128> {
    let low = r.u64_le()?;
    let high = r.u64_le()?;
    Some((u128::from(high) << 64) | u128::from(low))
}

/// One sibling: built when `BUILD` (the value copied), else only checked (`None`).
fn parse_sibling<const BUILD: bool>(
    r: &mut ByteReader<'_>,
) -> Result<Option<Sibling>, VersioningError> {
    let flags = r.u8().ok_or(corrupt("truncated sibling"))?;
    if flags & !SIBLING_FLAGS_KNOWN != 0 {
        return Err(corrupt("unknown sibling flags"));
    }
    let ts = r.u64_le().ok_or(corrupt("truncated timestamp"))?;
    let expires_at_secs = if flags & SIBLING_HAS_EXPIRY != 0 {
        Some(r.varint().ok_or(corrupt("truncated expiry"))?)
    } else {
        None
    };
    let write_id = if flags & SIBLING_HAS_WRITE_ID != 0 {
        Some(read_u128(r).ok_or(corrupt("truncated write id"))?)
    } else {
        None
    };
    let value = if flags & SIBLING_HAS_VALUE != 0 {
        Some(r.varint_prefixed().ok_or(corrupt("truncated value"))?)
    } else {
        None
    };
    Ok(BUILD.then(|| Sibling {
        value: value.map(<[u8]>::to_vec),
        timestamp_micros: ts as i64,
        expires_at_secs,
        write_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versioning::vv::VersionVector;

    fn sample() -> Dvv {
        let a = Actor::new(0x2a, 1);
        let b = Actor::new(7, 3);
        let d = Dvv::new().update(&VersionVector::new(), Sibling::value(b"a".to_vec(), 100), a);
        let d = d.update(&VersionVector::new(), Sibling::value(b"b".to_vec(), 200), a);
        let d = d.update(
            &VersionVector::new(),
            Sibling::tombstone(-3).with_expiry(u64::MAX),
            b,
        );
        d.update(
            &VersionVector::new(),
            Sibling::value(Vec::new(), i64::MIN).with_expiry(5),
            b,
        )
    }

    #[test]
    fn causal_cell_with_superseded_ids_round_trips_as_v2() {
        let mut d = sample();
        d.supersede(&[3, u128::MAX], 77);
        let bytes = encode_causal_cell(&d);
        assert_eq!(bytes[0], CAUSAL_CELL_V2);
        assert_eq!(decode_causal_cell(&bytes).unwrap(), d);
        assert_eq!(encode_causal_cell(&sample())[0], CAUSAL_CELL_V1);
        // The list's ids must ascend: swap the two and the decoder refuses.
        let tail = 2 * (16 + 1);
        let mut swapped = bytes[..bytes.len() - tail].to_vec();
        swapped.extend_from_slice(&bytes[bytes.len() - 17..]);
        swapped.extend_from_slice(&bytes[bytes.len() - tail..bytes.len() - 17]);
        assert!(matches!(
            decode_causal_cell(&swapped),
            Err(VersioningError::CorruptCell {
                reason: "superseded ids not strictly ascending",
                ..
            })
        ));
    }

    #[test]
    fn causal_cell_round_trips() {
        let d = sample();
        assert_eq!(decode_causal_cell(&encode_causal_cell(&d)).unwrap(), d);
        let empty = Dvv::new();
        assert_eq!(
            decode_causal_cell(&encode_causal_cell(&empty)).unwrap(),
            empty
        );
    }

    #[test]
    fn causal_cell_matches_spec_example() {
        let a = Actor::new(0x2a, 1);
        let d = Dvv::new().update(&VersionVector::new(), Sibling::value(b"a".to_vec(), 100), a);
        let d = d.update(&VersionVector::new(), Sibling::value(b"b".to_vec(), 200), a);
        let expected: Vec<u8> = vec![
            0xC1, 0x01, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0x02, 0x02, 0x01, 0x01, 0x64, 0,
            0, 0, 0, 0, 0, 0, 0x01, 0x61, 0x00, 0x01, 0xc8, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x62,
        ];
        assert_eq!(encode_causal_cell(&d), expected);
    }

    #[test]
    fn causal_cell_decoder_rejects_every_truncation() {
        let bytes = encode_causal_cell(&sample());
        for n in 0..bytes.len() {
            assert!(decode_causal_cell(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn causal_cell_check_agrees_with_the_decoder_on_every_byte_changed_or_cut() {
        let mut d = sample();
        d.supersede(&[3, 9], 77);
        for bytes in [encode_causal_cell(&sample()), encode_causal_cell(&d)] {
            assert!(check_causal_cell(&bytes).is_ok());
            let mut variants: Vec<Vec<u8>> =
                (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for i in 0..bytes.len() {
                for x in [0x00, 0x01, 0x80, 0xff] {
                    let mut v = bytes.clone();
                    v[i] ^= x;
                    variants.push(v);
                }
            }
            let mut refused = 0;
            for v in &variants {
                let decoded = decode_causal_cell(v).map(drop);
                assert_eq!(
                    check_causal_cell(v).map_err(|e| e.to_string()),
                    decoded.as_ref().map_err(|e| e.to_string()).cloned(),
                    "{v:02x?}"
                );
                refused += usize::from(decoded.is_err());
            }
            assert!(
                refused > bytes.len(),
                "{refused} of {} refused",
                variants.len()
            );
        }
    }

    #[test]
    fn causal_cell_decoder_rejects_trailing_bytes() {
        let mut bytes = encode_causal_cell(&sample());
        bytes.push(0);
        assert!(matches!(
            decode_causal_cell(&bytes),
            Err(VersioningError::CorruptCell {
                reason: "trailing bytes",
                ..
            })
        ));
    }

    #[test]
    fn causal_cell_decoder_rejects_unsorted_actors() {
        let mut buf = vec![CAUSAL_CELL_V1, 2];
        for node in [5u64, 4] {
            Actor::new(node, 1).encode_to(&mut buf);
            buf.extend_from_slice(&[1, 0]);
        }
        assert!(matches!(
            decode_causal_cell(&buf),
            Err(VersioningError::CorruptCell {
                reason: "actors not strictly ascending",
                ..
            })
        ));
    }

    #[test]
    fn causal_cell_decoder_rejects_huge_counts_without_allocating() {
        let mut buf = vec![CAUSAL_CELL_V1];
        put_varint(&mut buf, u64::MAX);
        assert!(decode_causal_cell(&buf).is_err());
        let mut buf = vec![CAUSAL_CELL_V1, 1];
        Actor::new(1, 1).encode_to(&mut buf);
        put_varint(&mut buf, 3);
        put_varint(&mut buf, 60_000);
        assert!(matches!(
            decode_causal_cell(&buf),
            Err(VersioningError::CorruptCell {
                reason: "count exceeds cell length",
                ..
            })
        ));
    }
}
