//! Where a node's bytes lie on the ring: a histogram of each table's stored bytes over
//! equal slices of the token space ([`TableSizes`]), read from the engine's size samples
//! (SSTable block indexes and memtable entries, no data read). A rebalance
//! ([`super::rebalance`]) asks every node for its histograms and plans token moves by
//! bytes, not by token share.
//!
//! Bucket `i` of `n` holds the bytes whose token's ring position `p` (0 = the minimum
//! token) has `p / width == i`, where `width = ceil(ring_size / n)`; the last bucket may
//! be shorter. An SSTable block counts at its separator key's token (a key `>=` each of
//! its keys), so a block straddling a bucket edge counts whole on one side: an estimate,
//! accurate to a block (a few KiB).

use crate::replica::Replica;
use crate::ring::Partitioner;

/// Most buckets a histogram may have (a peer message stays small: 512 KiB per table).
pub const MAX_BUCKETS: u32 = 1 << 16;

/// Buckets a rebalance asks for: 1/4096 of the ring each, finer than any vnode range of
/// clusters up to hundreds of nodes.
pub const REBALANCE_BUCKETS: u32 = 4096;

/// One table's bytes per bucket on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSizes {
    /// The table.
    pub table: String,
    /// Bytes per bucket (the histogram's length is its bucket count).
    pub buckets: Vec<u64>,
}

/// Positions per bucket when the ring of `partitioner` is cut in `buckets`.
pub fn bucket_width(partitioner: Partitioner, buckets: u32) -> u128 {
    partitioner.ring_size().div_ceil(u128::from(buckets.max(1)))
}

/// The ring position of the token an engine key starts with (the key's first token-size
/// bytes, big-endian; a shorter key, such as a shortened block separator, is padded with
/// zeros).
pub fn key_position(partitioner: Partitioner, key: &[u8]) -> u128 {
    let len = match partitioner {
        Partitioner::Murmur3 => 8,
        Partitioner::Md5 => 16,
    };
    let mut pos = 0u128;
    for i in 0..len {
        pos = (pos << 8) | u128::from(key.get(i).copied().unwrap_or(0));
    }
    // The murmur3 sortable form is already the ring position (sign bit flipped); md5
    // tokens stop at 2^127.
    pos.min(partitioner.ring_size() - 1)
}

/// The histograms of `tables` on `replica`, `buckets` buckets each (clamped to
/// `1..=`[`MAX_BUCKETS`]). A table the engine does not know (dropped meanwhile) is left
/// out. Blocking: walks the engine's indexes and memtables.
pub fn local_sizes(
    replica: &Replica,
    tables: &[String],
    buckets: u32,
) -> Result<Vec<TableSizes>, sibyl_storage::Error> {
    let n = buckets.clamp(1, MAX_BUCKETS);
    let partitioner = replica.partitioner();
    let width = bucket_width(partitioner, n);
    let mut out = Vec::with_capacity(tables.len());
    for table in tables {
        let mut hist = vec![0u64; n as usize];
        let result = replica.engine().size_samples(table, &mut |key, bytes| {
            let i = (key_position(partitioner, key) / width) as usize;
            if let Some(b) = hist.get_mut(i.min(n as usize - 1)) {
                *b += bytes;
            }
        });
        match result {
            Ok(()) => out.push(TableSizes {
                table: table.clone(),
                buckets: hist,
            }),
            Err(sibyl_storage::Error::UnknownTable { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The bytes of `range` of `table` on `replica`, estimated the same way (a block counts
/// when its separator key's token is in the range). 0 for a table the engine does not
/// know. Blocking.
pub fn range_bytes(
    replica: &Replica,
    table: &str,
    range: crate::replica::TokenRange,
) -> Result<u64, sibyl_storage::Error> {
    let partitioner = replica.partitioner();
    let (start, end) = (
        Partitioner::position(&range.start),
        Partitioner::position(&range.end),
    );
    let inside = |p: u128| {
        if start < end {
            p > start && p <= end
        } else {
            p > start || p <= end
        }
    };
    let mut total = 0u64;
    match replica.engine().size_samples(table, &mut |key, bytes| {
        if inside(key_position(partitioner, key)) {
            total += bytes;
        }
    }) {
        Ok(()) => Ok(total),
        Err(sibyl_storage::Error::UnknownTable { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Token;

    #[test]
    fn key_positions_follow_the_token_order_and_fill_the_buckets_evenly() {
        let p = Partitioner::Murmur3;
        let key = |t: i64| Token::Murmur3(t).to_sortable_bytes();
        assert_eq!(key_position(p, &key(i64::MIN)), 0);
        assert_eq!(key_position(p, &key(-1)), (1u128 << 63) - 1);
        assert_eq!(key_position(p, &key(i64::MAX)), (1u128 << 64) - 1);
        assert_eq!(key_position(p, &[0x80]), 1u128 << 63, "short keys padded");
        let w = bucket_width(p, 4);
        assert_eq!(w, 1u128 << 62);
        assert_eq!(key_position(p, &key(0)) / w, 2);
        assert_eq!(key_position(p, &key(i64::MAX)) / w, 3);
        let md5 = Partitioner::Md5;
        let top = Token::Md5(1u128 << 127).to_sortable_bytes();
        assert_eq!(key_position(md5, &top), 1u128 << 127);
        assert_eq!(key_position(md5, &top) / bucket_width(md5, 8), 7);
    }
}
