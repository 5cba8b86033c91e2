//! The repair family's peer messages (spec: `doc/peer-messages.md`, "Repair family"):
//! what one replica of a range asks another while they compare their hash trees and
//! exchange the cells that differ. All ride the bulk lane.
//!
//! # Format (all integers big-endian; `cells` is `crate::replica::codec`'s raw cell list)
//! ```text
//! request   = root | children | keys | pull | push | done
//! root      = 0x01 table:str range                       the hash of the range
//! children  = 0x02 table:str range bits:u8 count:u32 prefix:u64{count}
//!                                 the non-zero hashes of the children (depth bits+8)
//!                                 of each bucket `prefix` at depth `bits`, in the range
//! keys      = 0x03 table:str range bits:u8 count:u32 prefix:u64{count}
//!                                 every key of those buckets in the range, with its hash
//! pull      = 0x04 table:str count:u32 key:bytes{count}  the stored cells of these keys
//! push      = 0x05 cells                                 merge these cells
//! done      = 0x06 table:str range                       the exchange that began with
//!                                                        this range's root completed
//! range     = start:token end:token                      the ring range (start, end]
//! token     = len:u8 sortable:byte{len}                  8 bytes murmur3, 16 md5
//! response  = root_hash | child_hashes | key_hashes | found | applied | ack | error
//! root_hash = 0x81 hash:u64
//! child_hashes = 0x82 count:u32 (parent:u32 present:byte[32] hash:u64{ones(present)}){count}
//!                                 one entry per parent with a non-zero child, parents in
//!                                 increasing order; parent = index into the request's
//!                                 prefixes; bit c of `present` (byte c/8, bit c%8 from
//!                                 the lowest) set when child c's hash is non-zero; the
//!                                 hashes of the set bits follow in child order
//! key_hashes = 0x83 count:u32 (key:bytes hash:u64){count}   in key order
//! found     = 0x84 cells                                 the keys present
//! applied   = 0x85 count:u32
//! ack       = 0x86
//! error     = 0xFF code:u8 message:str
//! str       = len:u16 utf8{len}
//! bytes     = len:u32 byte{len}
//! ```
//! Depths: `bits + 8 <= 64` for `children`, `bits <= 64` for `keys`. At most
//! [`MAX_PREFIXES`] prefixes and [`MAX_KEYS`] keys per request. Error codes
//! ([`RepairErrorCode`]): 1 unknown table, 2 the tree is still building (retry later),
//! 3 storage failure, 4 invalid request (a bug or a forged message).
//!
//! Decoding never panics and allocates no more than the input holds.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use bytes::Bytes;
use sibyl_coding::ByteReader;

use crate::replica::codec::{decode_raw_cells, encode_raw_cells, CodecError, MAX_RAW_KEY_LEN};
use crate::replica::{RawCell, TokenRange};
use crate::ring::Token;

/// Most prefixes one `children` or `keys` request names.
pub const MAX_PREFIXES: usize = 1 << 16;
/// Most keys one `pull` names.
pub const MAX_KEYS: usize = 10_000;
/// How many bits deeper the children of a bucket are (a fan-out of 256).
pub const CHILD_BITS: u32 = 8;
pub(crate) const MAX_TABLE_LEN: usize = 255;
pub(crate) const MAX_MESSAGE_LEN: usize = 1024;

const ROOT: u8 = 0x01;
const CHILDREN: u8 = 0x02;
const KEYS: u8 = 0x03;
const PULL: u8 = 0x04;
const PUSH: u8 = 0x05;
const DONE: u8 = 0x06;
const ROOT_HASH: u8 = 0x81;
const CHILD_HASHES: u8 = 0x82;
const KEY_HASHES: u8 = 0x83;
const FOUND: u8 = 0x84;
const APPLIED: u8 = 0x85;
const ACK: u8 = 0x86;
const ERROR: u8 = 0xFF;

/// A request to a peer's repair handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairRequest {
    /// The hash of `range` in `table`.
    Root {
        /// The table.
        table: String,
        /// The ring range.
        range: TokenRange,
    },
    /// The non-zero child hashes of buckets.
    Children {
        /// The table.
        table: String,
        /// The ring range.
        range: TokenRange,
        /// The depth of the buckets named.
        bits: u8,
        /// The buckets' prefixes.
        prefixes: Vec<u64>,
    },
    /// The keys of buckets, with their hashes.
    Keys {
        /// The table.
        table: String,
        /// The ring range.
        range: TokenRange,
        /// The depth of the buckets named.
        bits: u8,
        /// The buckets' prefixes.
        prefixes: Vec<u64>,
    },
    /// The stored cells of keys.
    Pull {
        /// The table.
        table: String,
        /// Engine keys.
        keys: Vec<Vec<u8>>,
    },
    /// Merge these cells.
    Push {
        /// The cells.
        cells: Vec<RawCell>,
    },
    /// The exchange of `range` that began with its `root` completed (the peer records
    /// it as synced, from the second it answered the root).
    Done {
        /// The table.
        table: String,
        /// The ring range.
        range: TokenRange,
    },
}

/// Why a repair request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairErrorCode {
    /// The table is not in the peer's schema (or has no tree there).
    UnknownTable,
    /// The peer's tree of the table is still building.
    NotReady,
    /// The peer's storage failed.
    Storage,
    /// The request is malformed or out of bounds.
    Invalid,
}

impl RepairErrorCode {
    fn code(self) -> u8 {
        match self {
            RepairErrorCode::UnknownTable => 1,
            RepairErrorCode::NotReady => 2,
            RepairErrorCode::Storage => 3,
            RepairErrorCode::Invalid => 4,
        }
    }

    fn from_code(c: u8) -> Option<RepairErrorCode> {
        Some(match c {
            1 => RepairErrorCode::UnknownTable,
            2 => RepairErrorCode::NotReady,
            3 => RepairErrorCode::Storage,
            4 => RepairErrorCode::Invalid,
            _ => return None,
        })
    }
}

/// One child hash of a `children` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildHash {
    /// Index of the parent in the request's prefixes.
    pub parent: u32,
    /// The child's index under its parent (its next 8 bits).
    pub child: u8,
    /// Its hash (never 0).
    pub hash: u64,
}

/// A repair handler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairResponse {
    /// `Root`.
    RootHash {
        /// The range's hash.
        hash: u64,
    },
    /// `Children`.
    ChildHashes {
        /// The non-zero child hashes.
        hashes: Vec<ChildHash>,
    },
    /// `Keys`: keys and their hashes, in key order.
    KeyHashes {
        /// The entries.
        keys: Vec<(Vec<u8>, u64)>,
    },
    /// `Pull`: the cells of the keys present.
    Found {
        /// The cells.
        cells: Vec<RawCell>,
    },
    /// `Push`: cells merged.
    Applied {
        /// How many.
        count: u32,
    },
    /// `Done`: recorded.
    Ack,
    /// Refused.
    Error {
        /// Why.
        code: RepairErrorCode,
        /// For people.
        message: String,
    },
}

/// A repair message that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The first byte names no message.
    #[error("peer message: unknown kind {kind:#04x}")]
    UnknownKind {
        /// The byte found.
        kind: u8,
    },
    /// The bytes break the format.
    #[error("peer message: {reason} (at byte {offset})")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
        /// Where the decoder stopped.
        offset: usize,
    },
    /// The embedded cell list is malformed.
    #[error(transparent)]
    Cells(#[from] CodecError),
}

pub(crate) fn malformed(reason: &'static str, r: &ByteReader<'_>) -> MessageError {
    MessageError::Malformed {
        reason,
        offset: r.position(),
    }
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str, max: usize) {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = s.get(..end).unwrap_or("");
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn put_range(out: &mut Vec<u8>, range: &TokenRange) {
    for t in [range.start, range.end] {
        let b = t.to_sortable_bytes();
        out.push(b.len() as u8);
        out.extend_from_slice(&b);
    }
}

fn put_prefixes(out: &mut Vec<u8>, bits: u8, prefixes: &[u64]) {
    out.push(bits);
    out.extend_from_slice(&(prefixes.len() as u32).to_be_bytes());
    for p in prefixes {
        out.extend_from_slice(&p.to_be_bytes());
    }
}

pub(crate) fn string(r: &mut ByteReader<'_>, max: usize) -> Result<String, MessageError> {
    let n = usize::from(r.u16_be().ok_or(malformed("truncated string length", r))?);
    if n > max {
        return Err(malformed("string too long", r));
    }
    let b = r.take(n).ok_or(malformed("truncated string", r))?;
    String::from_utf8(b.to_vec()).map_err(|_| malformed("string is not utf-8", r))
}

pub(crate) fn table(r: &mut ByteReader<'_>) -> Result<String, MessageError> {
    let t = string(r, MAX_TABLE_LEN)?;
    if t.is_empty() {
        return Err(malformed("empty table name", r));
    }
    Ok(t)
}

pub(crate) fn token(r: &mut ByteReader<'_>) -> Result<Token, MessageError> {
    let n = usize::from(r.u8().ok_or(malformed("truncated token length", r))?);
    let b = r.take(n).ok_or(malformed("truncated token", r))?;
    Token::from_sortable_bytes(b).ok_or(malformed("not a token", r))
}

pub(crate) fn range(r: &mut ByteReader<'_>) -> Result<TokenRange, MessageError> {
    let start = token(r)?;
    let end = token(r)?;
    if !start.same_space(&end) {
        return Err(malformed("range ends of two partitioners", r));
    }
    Ok(TokenRange { start, end })
}

pub(crate) fn count(
    r: &mut ByteReader<'_>,
    max: usize,
    min_each: usize,
) -> Result<usize, MessageError> {
    let n = r.u32_be().ok_or(malformed("truncated count", r))? as usize;
    if n > max || n.saturating_mul(min_each) > r.remaining() {
        return Err(malformed("count out of bounds", r));
    }
    Ok(n)
}

fn prefixes(r: &mut ByteReader<'_>, max_bits: u32) -> Result<(u8, Vec<u64>), MessageError> {
    let bits = r.u8().ok_or(malformed("truncated depth", r))?;
    if u32::from(bits) > max_bits {
        return Err(malformed("depth out of bounds", r));
    }
    let n = count(r, MAX_PREFIXES, 8)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let p = r.u64_be().ok_or(malformed("truncated prefix", r))?;
        if bits < 64 && p >> bits != 0 {
            return Err(malformed("prefix deeper than its depth", r));
        }
        v.push(p);
    }
    Ok((bits, v))
}

pub(crate) fn key(r: &mut ByteReader<'_>) -> Result<Vec<u8>, MessageError> {
    let n = r.u32_be().ok_or(malformed("truncated key length", r))? as usize;
    if n == 0 || n > MAX_RAW_KEY_LEN {
        return Err(malformed("key length out of bounds", r));
    }
    Ok(r.take(n).ok_or(malformed("truncated key", r))?.to_vec())
}

pub(crate) fn finish(r: &ByteReader<'_>) -> Result<(), MessageError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(malformed("trailing bytes", r))
    }
}

impl RepairRequest {
    /// The encoded request (the caller keeps within the limits).
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            RepairRequest::Root { table, range } | RepairRequest::Done { table, range } => {
                out.push(if matches!(self, RepairRequest::Root { .. }) {
                    ROOT
                } else {
                    DONE
                });
                put_str(&mut out, table, MAX_TABLE_LEN);
                put_range(&mut out, range);
            }
            RepairRequest::Children {
                table,
                range,
                bits,
                prefixes,
            }
            | RepairRequest::Keys {
                table,
                range,
                bits,
                prefixes,
            } => {
                out.push(if matches!(self, RepairRequest::Children { .. }) {
                    CHILDREN
                } else {
                    KEYS
                });
                put_str(&mut out, table, MAX_TABLE_LEN);
                put_range(&mut out, range);
                put_prefixes(&mut out, *bits, prefixes);
            }
            RepairRequest::Pull { table, keys } => {
                out.push(PULL);
                put_str(&mut out, table, MAX_TABLE_LEN);
                out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                for k in keys {
                    put_bytes(&mut out, k);
                }
            }
            RepairRequest::Push { cells } => {
                out.push(PUSH);
                encode_raw_cells(cells, &mut out);
            }
        }
        Bytes::from(out)
    }

    /// Decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<RepairRequest, MessageError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(malformed("empty message", &r))?;
        let request = match kind {
            ROOT => RepairRequest::Root {
                table: table(&mut r)?,
                range: range(&mut r)?,
            },
            DONE => RepairRequest::Done {
                table: table(&mut r)?,
                range: range(&mut r)?,
            },
            CHILDREN | KEYS => {
                let table = table(&mut r)?;
                let range = range(&mut r)?;
                let max_bits = if kind == CHILDREN {
                    64 - CHILD_BITS
                } else {
                    64
                };
                let (bits, prefixes) = prefixes(&mut r, max_bits)?;
                if kind == CHILDREN {
                    RepairRequest::Children {
                        table,
                        range,
                        bits,
                        prefixes,
                    }
                } else {
                    RepairRequest::Keys {
                        table,
                        range,
                        bits,
                        prefixes,
                    }
                }
            }
            PULL => {
                let table = table(&mut r)?;
                let n = count(&mut r, MAX_KEYS, 5)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(key(&mut r)?);
                }
                RepairRequest::Pull { table, keys }
            }
            PUSH => {
                return Ok(RepairRequest::Push {
                    cells: decode_raw_cells(r.rest())?,
                })
            }
            kind => return Err(MessageError::UnknownKind { kind }),
        };
        finish(&r)?;
        Ok(request)
    }
}

impl RepairResponse {
    /// The encoded response.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            RepairResponse::RootHash { hash } => {
                out.push(ROOT_HASH);
                out.extend_from_slice(&hash.to_be_bytes());
            }
            RepairResponse::ChildHashes { hashes } => {
                out.push(CHILD_HASHES);
                // By parent, then child; a zero hash is no child; the last of a repeat wins.
                let mut by_parent: std::collections::BTreeMap<u32, [u64; 256]> =
                    std::collections::BTreeMap::new();
                for h in hashes {
                    let children = by_parent.entry(h.parent).or_insert([0; 256]);
                    if let Some(slot) = children.get_mut(usize::from(h.child)) {
                        *slot = h.hash;
                    }
                }
                by_parent.retain(|_, c| c.iter().any(|&h| h != 0));
                out.extend_from_slice(&(by_parent.len() as u32).to_be_bytes());
                for (parent, children) in &by_parent {
                    out.extend_from_slice(&parent.to_be_bytes());
                    let mut present = [0u8; 32];
                    for (c, &h) in children.iter().enumerate() {
                        if h != 0 {
                            if let Some(b) = present.get_mut(c / 8) {
                                *b |= 1 << (c % 8);
                            }
                        }
                    }
                    out.extend_from_slice(&present);
                    for &h in children.iter().filter(|&&h| h != 0) {
                        out.extend_from_slice(&h.to_be_bytes());
                    }
                }
            }
            RepairResponse::KeyHashes { keys } => {
                out.push(KEY_HASHES);
                out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                for (k, h) in keys {
                    put_bytes(&mut out, k);
                    out.extend_from_slice(&h.to_be_bytes());
                }
            }
            RepairResponse::Found { cells } => {
                out.push(FOUND);
                encode_raw_cells(cells, &mut out);
            }
            RepairResponse::Applied { count } => {
                out.push(APPLIED);
                out.extend_from_slice(&count.to_be_bytes());
            }
            RepairResponse::Ack => out.push(ACK),
            RepairResponse::Error { code, message } => {
                out.push(ERROR);
                out.push(code.code());
                put_str(&mut out, message, MAX_MESSAGE_LEN);
            }
        }
        Bytes::from(out)
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<RepairResponse, MessageError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(malformed("empty message", &r))?;
        let response = match kind {
            ROOT_HASH => RepairResponse::RootHash {
                hash: r.u64_be().ok_or(malformed("truncated hash", &r))?,
            },
            CHILD_HASHES => {
                let n = count(&mut r, usize::MAX, 4 + 32 + 8)?;
                let mut hashes = Vec::new();
                let mut last: Option<u32> = None;
                for _ in 0..n {
                    let parent = r.u32_be().ok_or(malformed("truncated parent", &r))?;
                    if last.is_some_and(|l| l >= parent) {
                        return Err(malformed("parents out of order", &r));
                    }
                    last = Some(parent);
                    let present: [u8; 32] = r.array().ok_or(malformed("truncated bitmap", &r))?;
                    if present.iter().all(|&b| b == 0) {
                        return Err(malformed("a parent with no child", &r));
                    }
                    for c in 0..=u8::MAX {
                        let set = present
                            .get(usize::from(c / 8))
                            .is_some_and(|b| b & (1 << (c % 8)) != 0);
                        if !set {
                            continue;
                        }
                        let hash = r.u64_be().ok_or(malformed("truncated hash", &r))?;
                        if hash == 0 {
                            return Err(malformed("a present child with hash 0", &r));
                        }
                        hashes.push(ChildHash {
                            parent,
                            child: c,
                            hash,
                        });
                    }
                }
                RepairResponse::ChildHashes { hashes }
            }
            KEY_HASHES => {
                let n = count(&mut r, usize::MAX, 13)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = key(&mut r)?;
                    let h = r.u64_be().ok_or(malformed("truncated hash", &r))?;
                    keys.push((k, h));
                }
                RepairResponse::KeyHashes { keys }
            }
            FOUND => {
                return Ok(RepairResponse::Found {
                    cells: decode_raw_cells(r.rest())?,
                })
            }
            APPLIED => RepairResponse::Applied {
                count: r.u32_be().ok_or(malformed("truncated count", &r))?,
            },
            ACK => RepairResponse::Ack,
            ERROR => {
                let code = r
                    .u8()
                    .and_then(RepairErrorCode::from_code)
                    .ok_or(malformed("unknown error code", &r))?;
                RepairResponse::Error {
                    code,
                    message: string(&mut r, MAX_MESSAGE_LEN)?,
                }
            }
            kind => return Err(MessageError::UnknownKind { kind }),
        };
        finish(&r)?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> TokenRange {
        TokenRange {
            start: Token::Murmur3(-5),
            end: Token::Murmur3(99),
        }
    }

    fn cell() -> RawCell {
        RawCell {
            table: "t".into(),
            key: vec![1; 12],
            value: vec![2, 3],
        }
    }

    fn requests() -> Vec<RepairRequest> {
        vec![
            RepairRequest::Root {
                table: "t".into(),
                range: range(),
            },
            RepairRequest::Children {
                table: "t".into(),
                range: range(),
                bits: 8,
                prefixes: vec![0, 255],
            },
            RepairRequest::Keys {
                table: "users".into(),
                range: TokenRange {
                    start: Token::Md5(7),
                    end: Token::Md5(7),
                },
                bits: 24,
                prefixes: vec![1 << 23],
            },
            RepairRequest::Pull {
                table: "t".into(),
                keys: vec![vec![9; 11], vec![8; 12]],
            },
            RepairRequest::Push {
                cells: vec![cell()],
            },
            RepairRequest::Done {
                table: "t".into(),
                range: range(),
            },
        ]
    }

    fn responses() -> Vec<RepairResponse> {
        vec![
            RepairResponse::RootHash { hash: 42 },
            RepairResponse::ChildHashes {
                hashes: vec![ChildHash {
                    parent: 1,
                    child: 200,
                    hash: 7,
                }],
            },
            RepairResponse::ChildHashes {
                hashes: vec![
                    ChildHash {
                        parent: 0,
                        child: 1,
                        hash: 7,
                    },
                    ChildHash {
                        parent: 0,
                        child: 255,
                        hash: 9,
                    },
                    ChildHash {
                        parent: 3,
                        child: 0,
                        hash: u64::MAX,
                    },
                ],
            },
            RepairResponse::KeyHashes {
                keys: vec![(vec![1; 12], 5)],
            },
            RepairResponse::Found {
                cells: vec![cell()],
            },
            RepairResponse::Applied { count: 3 },
            RepairResponse::Ack,
            RepairResponse::Error {
                code: RepairErrorCode::NotReady,
                message: "building".into(),
            },
        ]
    }

    #[test]
    fn repair_messages_round_trip() {
        for q in requests() {
            assert_eq!(RepairRequest::decode(&q.encode()).unwrap(), q);
        }
        for a in responses() {
            assert_eq!(RepairResponse::decode(&a.encode()).unwrap(), a);
        }
    }

    #[test]
    fn repair_messages_refuse_every_truncation_and_trailing_byte() {
        for q in requests() {
            let b = q.encode();
            for cut in 0..b.len() {
                assert!(RepairRequest::decode(&b[..cut]).is_err(), "{q:?} cut {cut}");
            }
            let mut long = b.to_vec();
            long.push(0);
            assert!(RepairRequest::decode(&long).is_err());
        }
        for a in responses() {
            let b = a.encode();
            for cut in 0..b.len() {
                assert!(
                    RepairResponse::decode(&b[..cut]).is_err(),
                    "{a:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn repair_messages_refuse_out_of_bounds_depths_and_prefixes() {
        let mut b = RepairRequest::Children {
            table: "t".into(),
            range: range(),
            bits: 8,
            prefixes: vec![3],
        }
        .encode()
        .to_vec();
        // bits sits after kind, table (2+1) and the range (2 x 9).
        let at = 1 + 3 + 18;
        b[at] = 60;
        assert!(
            RepairRequest::decode(&b).is_err(),
            "children deeper than 56"
        );
        b[at] = 1;
        assert!(RepairRequest::decode(&b).is_err(), "prefix 3 at depth 1");
    }
}
