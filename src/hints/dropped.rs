//! Hints that were not kept (a bound was hit, a record was corrupt, the owner refused
//! them): per owner, how many, when, and which key spans of which tables they touched,
//! so anti-entropy knows what to repair. Kept in memory by the [`super::HintStore`] and
//! persisted in `<hints dir>/dropped` (replaced atomically, `sibyl_storage::atomic_file`).
//!
//! # File format (version 1; integers big-endian)
//! ```text
//! file    = magic:"SHDR" version:u8 (0x01) count:u32 owner{count} crc:u32
//! owner   = node:u64 window:u64 size:u64 corrupt:u64 rejected:u64 bytes:u64
//!           first:i64 last:i64 all_keys:u8 (0|1) spans:u16 span{spans}
//! span    = table_len:u8 (1..=255) table min_len:u8 (<=16) min max_len:u8 (<=16) max
//! crc     = CRC-32 (IEEE) of every byte before it
//! ```
//! Owners are sorted by node id, spans by table name; a reader refuses a bad magic, an
//! unknown version, a checksum mismatch, a truncation, trailing bytes, unsorted or
//! repeated entries, and never panics. `min` / `max` are the first [`SPAN_PREFIX_LEN`]
//! bytes of the smallest and largest engine key dropped for that table: the engine key
//! starts with the token (8 bytes murmur3, 16 md5), so the tokens to repair lie in
//! `[token(min), token(max)]`. `all_keys` = 1 means the keys are unknown (a corrupt
//! record, too many tables): repair every range the owner replicates.
// Bytes from disk: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use std::collections::BTreeMap;

use sibyl_coding::ByteReader;

use super::DropReason;
use crate::replica::RawCell;
use crate::ring::NodeId;

/// File name of the dropped-hints record in the hints directory.
pub const DROPPED_FILE: &str = "dropped";
/// Magic of the file.
pub const DROPPED_MAGIC: &[u8; 4] = b"SHDR";
/// Format version.
pub const DROPPED_V1: u8 = 0x01;
/// Bytes of an engine key kept as a span bound (the longest token, md5's).
pub const SPAN_PREFIX_LEN: usize = 16;
/// Most tables tracked per owner; past it the owner's keys are "all".
pub const MAX_SPANS: usize = 256;
/// Smallest encoding of one owner entry (fixed fields).
const MIN_OWNER_LEN: usize = 8 * 8 + 1 + 2;

/// The smallest and largest engine-key prefix dropped for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedSpan {
    /// The table.
    pub table: String,
    /// First [`SPAN_PREFIX_LEN`] bytes of the smallest engine key dropped.
    pub min_key: Vec<u8>,
    /// First [`SPAN_PREFIX_LEN`] bytes of the largest engine key dropped.
    pub max_key: Vec<u8>,
}

/// What was dropped for one owner since its record was last cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedHints {
    /// The node the hints were for.
    pub owner: NodeId,
    /// Hints dropped because the owner's oldest pending hint was older than the window.
    pub window: u64,
    /// Hints dropped because the owner's pending bytes would pass the size bound.
    pub size: u64,
    /// Stored hints found corrupt (checksum, format) and discarded.
    pub corrupt: u64,
    /// Hints the owner refused as invalid and that were discarded.
    pub rejected: u64,
    /// Bytes of the dropped hints' records.
    pub bytes: u64,
    /// Time of the first drop (µs since the epoch, the hint holder's clock).
    pub first_micros: i64,
    /// Time of the last drop.
    pub last_micros: i64,
    /// The keys are unknown: repair every range the owner replicates.
    pub all_keys: bool,
    /// Per table, the key span dropped (sorted by table; empty when `all_keys`).
    pub spans: Vec<DroppedSpan>,
}

impl DroppedHints {
    fn new(owner: NodeId, now: i64) -> DroppedHints {
        DroppedHints {
            owner,
            window: 0,
            size: 0,
            corrupt: 0,
            rejected: 0,
            bytes: 0,
            first_micros: now,
            last_micros: now,
            all_keys: false,
            spans: Vec::new(),
        }
    }

    /// Hints dropped, every reason.
    pub fn count(&self) -> u64 {
        self.window + self.size + self.corrupt + self.rejected
    }
}

/// The dropped-hints records of every owner (in memory).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DroppedLog {
    pub(crate) owners: BTreeMap<NodeId, DroppedHints>,
}

impl DroppedLog {
    /// Records one dropped hint of `bytes` for `owner`; `cells` gives its keys (`None`:
    /// unknown). True when the repair-relevant part changed (a new owner, table or a
    /// wider span, or keys now unknown): the caller persists at once then.
    pub(crate) fn record(
        &mut self,
        owner: NodeId,
        reason: DropReason,
        cells: Option<&[RawCell]>,
        bytes: u64,
        now: i64,
    ) -> bool {
        let mut widened = !self.owners.contains_key(&owner);
        let d = self
            .owners
            .entry(owner)
            .or_insert_with(|| DroppedHints::new(owner, now));
        match reason {
            DropReason::Window => d.window += 1,
            DropReason::Size => d.size += 1,
            DropReason::Corrupt => d.corrupt += 1,
            DropReason::Rejected => d.rejected += 1,
        }
        d.bytes = d.bytes.saturating_add(bytes);
        d.last_micros = d.last_micros.max(now);
        d.first_micros = d.first_micros.min(now);
        if d.all_keys {
            return widened;
        }
        let Some(cells) = cells else {
            d.all_keys = true;
            d.spans.clear();
            return true;
        };
        for c in cells {
            let prefix = c.key.get(..SPAN_PREFIX_LEN).unwrap_or(&c.key);
            match d.spans.binary_search_by(|s| s.table.as_str().cmp(&c.table)) {
                Ok(i) => {
                    if let Some(s) = d.spans.get_mut(i) {
                        if prefix < s.min_key.as_slice() {
                            s.min_key = prefix.to_vec();
                            widened = true;
                        }
                        if prefix > s.max_key.as_slice() {
                            s.max_key = prefix.to_vec();
                            widened = true;
                        }
                    }
                }
                Err(i) => {
                    if d.spans.len() >= MAX_SPANS {
                        d.all_keys = true;
                        d.spans.clear();
                        return true;
                    }
                    d.spans.insert(
                        i,
                        DroppedSpan {
                            table: c.table.clone(),
                            min_key: prefix.to_vec(),
                            max_key: prefix.to_vec(),
                        },
                    );
                    widened = true;
                }
            }
        }
        widened
    }

    /// Encodes the file (format above).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(DROPPED_MAGIC);
        out.push(DROPPED_V1);
        out.extend_from_slice(&(self.owners.len() as u32).to_be_bytes());
        for d in self.owners.values() {
            out.extend_from_slice(&d.owner.0.to_be_bytes());
            for n in [d.window, d.size, d.corrupt, d.rejected, d.bytes] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.extend_from_slice(&d.first_micros.to_be_bytes());
            out.extend_from_slice(&d.last_micros.to_be_bytes());
            out.push(u8::from(d.all_keys));
            out.extend_from_slice(&(d.spans.len() as u16).to_be_bytes());
            for s in &d.spans {
                for b in [s.table.as_bytes(), &s.min_key, &s.max_key] {
                    out.push(b.len() as u8);
                    out.extend_from_slice(b);
                }
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes what [`DroppedLog::encode`] wrote; `None` for anything else.
    pub(crate) fn decode(bytes: &[u8]) -> Option<DroppedLog> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if ByteReader::new(crc).u32_be()? != crc32fast::hash(body) {
            return None;
        }
        let mut r = ByteReader::new(body);
        if r.array::<4>()? != *DROPPED_MAGIC || r.u8()? != DROPPED_V1 {
            return None;
        }
        let count = r.u32_be()? as usize;
        if count.saturating_mul(MIN_OWNER_LEN) > r.remaining() {
            return None;
        }
        let mut log = DroppedLog::default();
        for _ in 0..count {
            let owner = NodeId(r.u64_be()?);
            let mut d = DroppedHints::new(owner, 0);
            d.window = r.u64_be()?;
            d.size = r.u64_be()?;
            d.corrupt = r.u64_be()?;
            d.rejected = r.u64_be()?;
            d.bytes = r.u64_be()?;
            d.first_micros = r.i64_be()?;
            d.last_micros = r.i64_be()?;
            d.all_keys = match r.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            };
            let spans = usize::from(r.u16_be()?);
            if spans > MAX_SPANS || spans.saturating_mul(4) > r.remaining() {
                return None;
            }
            for _ in 0..spans {
                let mut field = |max: usize| -> Option<Vec<u8>> {
                    let len = usize::from(r.u8()?);
                    (len <= max).then_some(())?;
                    Some(r.take(len)?.to_vec())
                };
                let table = String::from_utf8(field(255)?).ok()?;
                let min_key = field(SPAN_PREFIX_LEN)?;
                let max_key = field(SPAN_PREFIX_LEN)?;
                if table.is_empty() || d.spans.last().is_some_and(|s| s.table >= table) {
                    return None;
                }
                d.spans.push(DroppedSpan {
                    table,
                    min_key,
                    max_key,
                });
            }
            if log
                .owners
                .last_key_value()
                .is_some_and(|(o, _)| *o >= owner)
            {
                return None;
            }
            log.owners.insert(owner, d);
        }
        r.is_empty().then_some(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(table: &str, key: &[u8]) -> RawCell {
        RawCell {
            table: table.into(),
            key: key.to_vec(),
            value: vec![],
        }
    }

    fn sample() -> DroppedLog {
        let mut log = DroppedLog::default();
        assert!(log.record(
            NodeId(2),
            DropReason::Window,
            Some(&[cell("b", &[5; 20]), cell("a", &[1])]),
            10,
            100
        ));
        assert!(!log.record(
            NodeId(2),
            DropReason::Size,
            Some(&[cell("a", &[1])]),
            5,
            200
        ));
        assert!(log.record(
            NodeId(2),
            DropReason::Size,
            Some(&[cell("a", &[0])]),
            5,
            150
        ));
        assert!(log.record(NodeId(1), DropReason::Corrupt, None, 7, 300));
        log
    }

    #[test]
    fn dropped_log_tracks_counts_times_and_spans() {
        let log = sample();
        let d = &log.owners[&NodeId(2)];
        assert_eq!((d.window, d.size, d.count(), d.bytes), (1, 2, 3, 20));
        assert_eq!((d.first_micros, d.last_micros), (100, 200));
        assert_eq!(d.spans.len(), 2);
        assert_eq!(d.spans[0].table, "a");
        assert_eq!(
            (d.spans[0].min_key.clone(), d.spans[0].max_key.clone()),
            (vec![0], vec![1])
        );
        assert_eq!(
            d.spans[1].min_key,
            vec![5; 16],
            "bounds are 16-byte prefixes"
        );
        assert!(log.owners[&NodeId(1)].all_keys);
    }

    #[test]
    fn dropped_file_round_trips_and_refuses_damage() {
        let log = sample();
        let bytes = log.encode();
        assert_eq!(DroppedLog::decode(&bytes), Some(log));
        for n in 0..bytes.len() {
            assert_eq!(DroppedLog::decode(&bytes[..n]), None, "prefix {n}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(DroppedLog::decode(&bad), None, "flip at {i}");
        }
        assert_eq!(
            DroppedLog::decode(&DroppedLog::default().encode()),
            Some(DroppedLog::default())
        );
    }

    proptest::proptest! {
        #[test]
        fn dropped_file_decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = DroppedLog::decode(&bytes);
        }
    }
}
