//! The write-batch encoding: the payload of every commit log record
//! (`storage/doc/write_batch_format.md`).
//!
//! ```text
//! batch := count:varint op{count}
//! op    := table_id:varint kind:u8 key:bytes [value:bytes if kind = 1]
//! bytes := len:varint byte{len}
//! kind  := 0 (tombstone) | 1 (value)
//! ```

use crate::types::{Entry, WriteBatch};
use sibyl_coding::{put_varint, put_varint_prefixed, ByteReader};

/// Kind byte of a tombstone.
pub(crate) const KIND_TOMBSTONE: u8 = 0;
/// Kind byte of a value.
pub(crate) const KIND_VALUE: u8 = 1;
/// Longest key the engine accepts (64 KiB, like Cassandra's partition-key limit).
pub(crate) const MAX_KEY_LEN: usize = 64 << 10;

/// A rough size of the encoding, to allocate once.
pub(crate) fn encoded_len_hint(batch: &WriteBatch) -> usize {
    batch
        .ops
        .iter()
        .map(|op| op.key.len() + op.entry.charge() + 12)
        .sum::<usize>()
        + 5
}

/// Encodes `batch` into `out`, naming tables by the ids `table_id` gives.
pub(crate) fn encode(batch: &WriteBatch, table_id: impl Fn(&str) -> u32, out: &mut Vec<u8>) {
    put_varint(out, batch.ops.len() as u64);
    for op in &batch.ops {
        let key = &op.key;
        put_varint(out, u64::from(table_id(&op.table)));
        match &op.entry {
            Entry::Tombstone => {
                out.push(KIND_TOMBSTONE);
                put_varint_prefixed(out, key);
            }
            Entry::Value(v) => {
                out.push(KIND_VALUE);
                put_varint_prefixed(out, key);
                put_varint_prefixed(out, v);
            }
        }
    }
}

/// Encodes a batch of one operation (`value: None` is a tombstone) without building a
/// [`WriteBatch`]; the bytes equal those [`encode`] gives for the same single op.
pub(crate) fn encode_one(table_id: u32, key: &[u8], value: Option<&[u8]>, out: &mut Vec<u8>) {
    put_varint(out, 1);
    put_varint(out, u64::from(table_id));
    match value {
        None => {
            out.push(KIND_TOMBSTONE);
            put_varint_prefixed(out, key);
        }
        Some(v) => {
            out.push(KIND_VALUE);
            put_varint_prefixed(out, key);
            put_varint_prefixed(out, v);
        }
    }
}

/// One decoded operation, borrowing from the payload.
pub(crate) struct DecodedOp<'a> {
    pub table_id: u32,
    pub key: &'a [u8],
    pub entry: Option<&'a [u8]>,
}

/// Decodes a payload; `None` when it is malformed.
pub(crate) fn decode(payload: &[u8]) -> Option<Vec<DecodedOp<'_>>> {
    let mut r = ByteReader::new(payload);
    let count = usize::try_from(r.varint()?).ok()?;
    // Each op takes at least 3 bytes: cap the allocation by what the payload can hold.
    let mut ops = Vec::with_capacity(count.min(payload.len() / 3 + 1));
    for _ in 0..count {
        let table_id = u32::try_from(r.varint()?).ok()?;
        let kind = r.u8()?;
        let key = r.varint_prefixed()?;
        let entry = match kind {
            KIND_TOMBSTONE => None,
            KIND_VALUE => Some(r.varint_prefixed()?),
            _ => return None,
        };
        ops.push(DecodedOp {
            table_id,
            key,
            entry,
        });
    }
    r.is_empty().then_some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let mut b = WriteBatch::new();
        b.put("t", b"k1", b"v1").delete("u", b"k2");
        let mut out = Vec::new();
        encode(&b, |n| if n == "t" { 7 } else { 9 }, &mut out);
        let ops = decode(&out).expect("decodes");
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].table_id, ops[0].key, ops[0].entry),
            (7, &b"k1"[..], Some(&b"v1"[..]))
        );
        assert_eq!(
            (ops[1].table_id, ops[1].key, ops[1].entry),
            (9, &b"k2"[..], None)
        );
    }

    #[test]
    fn encode_one_equals_encode_of_a_single_op() {
        for value in [Some(&b"v"[..]), None] {
            let mut b = WriteBatch::new();
            match value {
                Some(v) => b.put("t", b"key", v),
                None => b.delete("t", b"key"),
            };
            let (mut a, mut c) = (Vec::new(), Vec::new());
            encode(&b, |_| 3, &mut a);
            encode_one(3, b"key", value, &mut c);
            assert_eq!(a, c);
        }
    }

    #[test]
    fn batch_encoding_matches_the_spec_example() {
        let mut b = WriteBatch::new();
        b.put("t", b"k1", b"v1").delete("u", b"k2");
        let mut out = Vec::new();
        encode(&b, |n| if n == "t" { 7 } else { 9 }, &mut out);
        // storage/doc/write_batch_format.md, "Worked example".
        assert_eq!(
            out,
            [0x02, 0x07, 0x01, 0x02, 0x6b, 0x31, 0x02, 0x76, 0x31, 0x09, 0x00, 0x02, 0x6b, 0x32]
        );
    }

    #[test]
    fn batch_decode_rejects_garbage_and_trailing_bytes() {
        assert!(decode(&[5, 0, 9]).is_none());
        let mut b = WriteBatch::new();
        b.put("t", b"k", b"v");
        let mut out = Vec::new();
        encode(&b, |_| 1, &mut out);
        out.push(0);
        assert!(decode(&out).is_none());
        for len in 0..out.len() - 1 {
            assert!(decode(&out[..len]).is_none());
        }
    }
}
