//! The replica family's peer messages: what one node asks of another node's local replica
//! (spec: `doc/peer-messages.md`, "Replica family"). A coordinator ships minted cells with
//! [`ReplicaRequest::Apply`] and reads stored cells or their digests back with
//! [`ReplicaRequest::Read`] and [`ReplicaRequest::Digest`]; hints, read repair and repair
//! reuse `Apply`, which merges and so may be sent twice or out of order.
//!
//! # Format (all integers big-endian; `cells` is [`super::codec`]'s raw cell list)
//! ```text
//! request   = apply | read | digest | read_row | digest_row | coordinate
//! apply     = 0x01 cells
//! read      = 0x02 table:str count:u32 key:bytes{count}
//! digest    = 0x03 table:str count:u32 key:bytes{count}
//! read_row  = 0x04 slice
//! digest_row = 0x05 slice
//! coordinate = 0x06 opcode:u8 body:byte*          a client request (opcode and body as
//!                                                 in the client protocol), forwarded
//! slice     = table:str key:bytes lower to limit:u32
//! lower     = 0x00 (row start) | 0x01 column:bytes (from, inclusive)
//!           | 0x02 column:bytes (after, exclusive)
//! to        = 0x00 (row end) | 0x01 column:bytes (exclusive)
//! response  = applied | found | digests | row | row_digest | answer | error
//! applied   = 0x81 count:u32                      cells applied
//! found     = 0x82 cells                          the keys present, in request order
//! digests   = 0x83 count:u32 entry{count}         one per key, in request order
//! entry     = 0x00 (nothing stored) | 0x01 md5:16
//! row       = 0x84 tombstone:(0x00 | 0x01 value:bytes) count:u32
//!             (column:bytes value:bytes){count} more:u8
//! row_digest = 0x85 md5:16
//! answer    = 0x86 error:u8 opcode:u8 body:byte*  the client response (error 1: an
//!                                                 error body)
//! error     = 0xFF code:u8 message:str
//! str       = len:u16 utf8{len}                   (a table name: 1..=255 bytes)
//! bytes     = len:u32 byte{len}                   (an engine key: 1..=65536 bytes; a
//!                                                 stored value: at most 8 MiB)
//! ```
//! `read_row` answers a slice of one row ([`super::row_read`]); `digest_row` its digest.
//! `coordinate` asks a replica of the key to coordinate a write the sender received but
//! cannot coordinate (it is not a replica of the key); the receiver never forwards it
//! again.
//! At most [`MAX_KEYS`] keys per read or digest. Error codes ([`ReplicaErrorCode`]):
//! 1 unknown table (the schema may not have reached this node yet: retry later), 2 invalid
//! cell (a bug or a forged message: do not retry), 3 storage failure at the replica (it
//! cannot take writes: try another replica).
//!
//! Decoding never panics and allocates no more than the input holds.
// Bytes from the network: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use bytes::Bytes;
use sibyl_coding::ByteReader;

use super::codec::{decode_raw_cells, encode_raw_cells, CodecError, RawCell, MAX_RAW_KEY_LEN};
use super::read::CellDigest;
use super::row_read::{RowCells, RowSlice, MAX_ROW_CELLS};
use std::ops::Bound;

/// Most keys one read or digest request names.
pub const MAX_KEYS: usize = 10_000;
/// Longest table name (the engine's limit).
const MAX_TABLE_LEN: usize = 255;
/// Longest error message carried.
const MAX_MESSAGE_LEN: usize = 1024;

const APPLY: u8 = 0x01;
const READ: u8 = 0x02;
const DIGEST: u8 = 0x03;
const READ_ROW: u8 = 0x04;
const DIGEST_ROW: u8 = 0x05;
const COORDINATE: u8 = 0x06;
const APPLIED: u8 = 0x81;
const FOUND: u8 = 0x82;
const DIGESTS: u8 = 0x83;
const ROW: u8 = 0x84;
const ROW_DIGEST: u8 = 0x85;
const ANSWER: u8 = 0x86;
const ERROR: u8 = 0xFF;

/// A request to a peer's local replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRequest {
    /// Merge these cells (minted elsewhere) into the replica.
    Apply {
        /// The cells.
        cells: Vec<RawCell>,
    },
    /// The merged stored bytes of these engine keys.
    Read {
        /// The table.
        table: String,
        /// Engine keys ([`super::keys`]).
        keys: Vec<Vec<u8>>,
    },
    /// The digests of these engine keys' cells ([`super::read::cell_digest`]).
    Digest {
        /// The table.
        table: String,
        /// Engine keys.
        keys: Vec<Vec<u8>>,
    },
    /// The stored cells of a slice of one row ([`super::row_read`]).
    ReadRow(RowSlice),
    /// The digest of a slice of one row ([`super::row_read::row_digest`]).
    DigestRow(RowSlice),
    /// Coordinate this client request (forwarded by a node that is not a replica of its
    /// key).
    Coordinate {
        /// The client protocol opcode.
        opcode: u8,
        /// The client request body.
        body: Bytes,
    },
}

/// Why a replica refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaErrorCode {
    /// The table is not in this node's schema.
    UnknownTable,
    /// A cell is malformed for its table (key, token or value).
    InvalidCell,
    /// The replica's storage failed (poisoned engine, disk error).
    Storage,
}

impl ReplicaErrorCode {
    fn code(self) -> u8 {
        match self {
            ReplicaErrorCode::UnknownTable => 1,
            ReplicaErrorCode::InvalidCell => 2,
            ReplicaErrorCode::Storage => 3,
        }
    }

    fn from_code(code: u8) -> Option<ReplicaErrorCode> {
        match code {
            1 => Some(ReplicaErrorCode::UnknownTable),
            2 => Some(ReplicaErrorCode::InvalidCell),
            3 => Some(ReplicaErrorCode::Storage),
            _ => None,
        }
    }
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaResponse {
    /// `Apply` merged this many cells.
    Applied {
        /// Cells applied.
        count: u32,
    },
    /// `Read`: the cells of the keys present, in request order.
    Found {
        /// The cells.
        cells: Vec<RawCell>,
    },
    /// `Digest`: one entry per requested key (`None` = nothing stored).
    Digests {
        /// The digests.
        digests: Vec<Option<CellDigest>>,
    },
    /// `ReadRow`: the slice's stored cells.
    Row(RowCells),
    /// `DigestRow`: the slice's digest.
    RowDigest {
        /// The digest.
        digest: CellDigest,
    },
    /// `Coordinate`: the client response.
    Answer {
        /// The body is an error body.
        error: bool,
        /// The client protocol opcode.
        opcode: u8,
        /// The client response body.
        body: Bytes,
    },
    /// The request was refused.
    Error {
        /// Why, for the caller to react on.
        code: ReplicaErrorCode,
        /// For people.
        message: String,
    },
}

/// A replica message that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The first byte names no message.
    #[error("replica message: unknown kind {kind:#04x}")]
    UnknownKind {
        /// The byte found.
        kind: u8,
    },
    /// The bytes break the format.
    #[error("replica message: {reason} (at byte {offset})")]
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

fn put_str(out: &mut Vec<u8>, s: &str) {
    let s = s.get(..s.len().min(MAX_MESSAGE_LEN)).unwrap_or(s);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_keys(out: &mut Vec<u8>, table: &str, keys: &[Vec<u8>]) {
    put_str(out, table);
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for k in keys {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
    }
}

impl ReplicaRequest {
    /// The encoded request (the caller keeps within [`MAX_KEYS`] and the cell limits).
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            ReplicaRequest::Apply { cells } => {
                out.push(APPLY);
                encode_raw_cells(cells, &mut out);
            }
            ReplicaRequest::Read { table, keys } => {
                out.push(READ);
                put_keys(&mut out, table, keys);
            }
            ReplicaRequest::Digest { table, keys } => {
                out.push(DIGEST);
                put_keys(&mut out, table, keys);
            }
            ReplicaRequest::ReadRow(slice) => {
                out.push(READ_ROW);
                put_slice(&mut out, slice);
            }
            ReplicaRequest::DigestRow(slice) => {
                out.push(DIGEST_ROW);
                put_slice(&mut out, slice);
            }
            ReplicaRequest::Coordinate { opcode, body } => {
                out.push(COORDINATE);
                out.push(*opcode);
                out.extend_from_slice(body);
            }
        }
        Bytes::from(out)
    }

    /// Decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<ReplicaRequest, MessageError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(malformed("empty message", &r))?;
        let request = match kind {
            APPLY => ReplicaRequest::Apply {
                cells: decode_raw_cells(r.rest())?,
            },
            READ | DIGEST => {
                let table = table_name(&mut r)?;
                let keys = keys(&mut r)?;
                finish(&r)?;
                if kind == READ {
                    ReplicaRequest::Read { table, keys }
                } else {
                    ReplicaRequest::Digest { table, keys }
                }
            }
            READ_ROW | DIGEST_ROW => {
                let slice = slice(&mut r)?;
                finish(&r)?;
                if kind == READ_ROW {
                    ReplicaRequest::ReadRow(slice)
                } else {
                    ReplicaRequest::DigestRow(slice)
                }
            }
            COORDINATE => ReplicaRequest::Coordinate {
                opcode: r.u8().ok_or(malformed("truncated opcode", &r))?,
                body: Bytes::copy_from_slice(r.rest()),
            },
            kind => return Err(MessageError::UnknownKind { kind }),
        };
        Ok(request)
    }
}

impl ReplicaResponse {
    /// The encoded response.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            ReplicaResponse::Applied { count } => {
                out.push(APPLIED);
                out.extend_from_slice(&count.to_be_bytes());
            }
            ReplicaResponse::Found { cells } => {
                out.push(FOUND);
                encode_raw_cells(cells, &mut out);
            }
            ReplicaResponse::Digests { digests } => {
                out.push(DIGESTS);
                out.extend_from_slice(&(digests.len() as u32).to_be_bytes());
                for d in digests {
                    match d {
                        None => out.push(0),
                        Some(d) => {
                            out.push(1);
                            out.extend_from_slice(d);
                        }
                    }
                }
            }
            ReplicaResponse::Row(row) => {
                out.push(ROW);
                match &row.tombstone {
                    None => out.push(0),
                    Some(t) => {
                        out.push(1);
                        put_bytes(&mut out, t);
                    }
                }
                out.extend_from_slice(&(row.cells.len() as u32).to_be_bytes());
                for (column, value) in &row.cells {
                    put_bytes(&mut out, column);
                    put_bytes(&mut out, value);
                }
                out.push(u8::from(row.more));
            }
            ReplicaResponse::RowDigest { digest } => {
                out.push(ROW_DIGEST);
                out.extend_from_slice(digest);
            }
            ReplicaResponse::Answer {
                error,
                opcode,
                body,
            } => {
                out.push(ANSWER);
                out.push(u8::from(*error));
                out.push(*opcode);
                out.extend_from_slice(body);
            }
            ReplicaResponse::Error { code, message } => {
                out.push(ERROR);
                out.push(code.code());
                put_str(&mut out, message);
            }
        }
        Bytes::from(out)
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<ReplicaResponse, MessageError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(malformed("empty message", &r))?;
        let response = match kind {
            APPLIED => ReplicaResponse::Applied {
                count: r.u32_be().ok_or(malformed("truncated count", &r))?,
            },
            FOUND => {
                return Ok(ReplicaResponse::Found {
                    cells: decode_raw_cells(r.rest())?,
                })
            }
            DIGESTS => {
                let count = count(&mut r, 1)?;
                let mut digests = Vec::with_capacity(count);
                for _ in 0..count {
                    digests.push(match r.u8() {
                        Some(0) => None,
                        Some(1) => Some(r.array().ok_or(malformed("truncated digest", &r))?),
                        _ => return Err(malformed("bad digest flag", &r)),
                    });
                }
                ReplicaResponse::Digests { digests }
            }
            ROW => {
                let tombstone = match r.u8() {
                    Some(0) => None,
                    Some(1) => Some(value(&mut r)?),
                    _ => return Err(malformed("bad tombstone flag", &r)),
                };
                let n = r.u32_be().ok_or(malformed("truncated count", &r))? as usize;
                if n > MAX_ROW_CELLS as usize || n.saturating_mul(8) > r.remaining() {
                    return Err(malformed("count exceeds the limit or the input", &r));
                }
                let mut cells = Vec::with_capacity(n);
                for _ in 0..n {
                    let column = value(&mut r)?;
                    cells.push((column, value(&mut r)?));
                }
                let more = match r.u8() {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(malformed("bad more flag", &r)),
                };
                ReplicaResponse::Row(RowCells {
                    tombstone,
                    cells,
                    more,
                })
            }
            ROW_DIGEST => ReplicaResponse::RowDigest {
                digest: r.array().ok_or(malformed("truncated digest", &r))?,
            },
            ANSWER => {
                let error = match r.u8() {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(malformed("bad error flag", &r)),
                };
                let opcode = r.u8().ok_or(malformed("truncated opcode", &r))?;
                return Ok(ReplicaResponse::Answer {
                    error,
                    opcode,
                    body: Bytes::copy_from_slice(r.rest()),
                });
            }
            ERROR => {
                let code = r
                    .u8()
                    .and_then(ReplicaErrorCode::from_code)
                    .ok_or(malformed("unknown error code", &r))?;
                let len = usize::from(r.u16_be().ok_or(malformed("truncated message", &r))?);
                let text = r.take(len).ok_or(malformed("truncated message", &r))?;
                ReplicaResponse::Error {
                    code,
                    message: String::from_utf8_lossy(text).into_owned(),
                }
            }
            kind => return Err(MessageError::UnknownKind { kind }),
        };
        finish(&r)?;
        Ok(response)
    }
}

fn malformed(reason: &'static str, r: &ByteReader<'_>) -> MessageError {
    MessageError::Malformed {
        reason,
        offset: r.position(),
    }
}

fn finish(r: &ByteReader<'_>) -> Result<(), MessageError> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(malformed("trailing bytes", r))
    }
}

fn table_name(r: &mut ByteReader<'_>) -> Result<String, MessageError> {
    let len = usize::from(r.u16_be().ok_or(malformed("truncated table", r))?);
    if len == 0 || len > MAX_TABLE_LEN {
        return Err(malformed("table name length out of range", r));
    }
    let name = r.take(len).ok_or(malformed("truncated table", r))?;
    std::str::from_utf8(name)
        .map(str::to_owned)
        .map_err(|_| malformed("table name not UTF-8", r))
}

/// A u32 count of items of at least `min_len` bytes each, checked against [`MAX_KEYS`]
/// and against the bytes left before anything is allocated.
fn count(r: &mut ByteReader<'_>, min_len: usize) -> Result<usize, MessageError> {
    let n = r.u32_be().ok_or(malformed("truncated count", r))? as usize;
    if n > MAX_KEYS || n.saturating_mul(min_len) > r.remaining() {
        return Err(malformed("count exceeds the limit or the input", r));
    }
    Ok(n)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_slice(out: &mut Vec<u8>, s: &RowSlice) {
    put_str(out, &s.table);
    put_bytes(out, &s.partition_key);
    match &s.lower {
        Bound::Unbounded => out.push(0),
        Bound::Included(c) => {
            out.push(1);
            put_bytes(out, c);
        }
        Bound::Excluded(c) => {
            out.push(2);
            put_bytes(out, c);
        }
    }
    match &s.to {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            put_bytes(out, c);
        }
    }
    out.extend_from_slice(&s.limit.to_be_bytes());
}

/// A length-prefixed byte string of at most a stored value's size.
fn value(r: &mut ByteReader<'_>) -> Result<Vec<u8>, MessageError> {
    let len = r.u32_be().ok_or(malformed("truncated bytes", r))? as usize;
    if len > super::codec::MAX_RAW_VALUE_LEN {
        return Err(malformed("bytes longer than a stored value", r));
    }
    Ok(r.take(len).ok_or(malformed("truncated bytes", r))?.to_vec())
}

/// A non-empty key or column of at most [`MAX_RAW_KEY_LEN`] bytes.
fn key_bytes(r: &mut ByteReader<'_>) -> Result<Vec<u8>, MessageError> {
    let len = r.u32_be().ok_or(malformed("truncated key", r))? as usize;
    if len == 0 || len > MAX_RAW_KEY_LEN {
        return Err(malformed("key length out of range", r));
    }
    Ok(r.take(len).ok_or(malformed("truncated key", r))?.to_vec())
}

fn slice(r: &mut ByteReader<'_>) -> Result<RowSlice, MessageError> {
    let table = table_name(r)?;
    let partition_key = key_bytes(r)?;
    let lower = match r.u8() {
        Some(0) => Bound::Unbounded,
        Some(1) => Bound::Included(key_bytes(r)?),
        Some(2) => Bound::Excluded(key_bytes(r)?),
        _ => return Err(malformed("bad lower bound", r)),
    };
    let to = match r.u8() {
        Some(0) => None,
        Some(1) => Some(key_bytes(r)?),
        _ => return Err(malformed("bad upper bound", r)),
    };
    let limit = r.u32_be().ok_or(malformed("truncated limit", r))?;
    Ok(RowSlice {
        table,
        partition_key,
        lower,
        to,
        limit,
    })
}

fn keys(r: &mut ByteReader<'_>) -> Result<Vec<Vec<u8>>, MessageError> {
    let n = count(r, 5)?;
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        keys.push(key_bytes(r)?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cell() -> RawCell {
        RawCell {
            table: "t".into(),
            key: vec![1, 2],
            value: vec![9],
        }
    }

    #[test]
    fn replica_messages_round_trip() {
        let requests = [
            ReplicaRequest::Apply {
                cells: vec![cell(), cell()],
            },
            ReplicaRequest::Read {
                table: "users".into(),
                keys: vec![vec![1], vec![2, 3]],
            },
            ReplicaRequest::Digest {
                table: "users".into(),
                keys: vec![],
            },
            ReplicaRequest::ReadRow(RowSlice {
                table: "t".into(),
                partition_key: b"k".to_vec(),
                lower: Bound::Excluded(b"c".to_vec()),
                to: Some(b"z".to_vec()),
                limit: 10,
            }),
            ReplicaRequest::DigestRow(RowSlice {
                table: "t".into(),
                partition_key: b"k".to_vec(),
                lower: Bound::Unbounded,
                to: None,
                limit: 1,
            }),
            ReplicaRequest::Coordinate {
                opcode: 0x20,
                body: Bytes::from_static(b"body"),
            },
        ];
        for r in requests {
            assert_eq!(ReplicaRequest::decode(&r.encode()).unwrap(), r);
        }
        let responses = [
            ReplicaResponse::Applied { count: 7 },
            ReplicaResponse::Found {
                cells: vec![cell()],
            },
            ReplicaResponse::Digests {
                digests: vec![None, Some([7; 16])],
            },
            ReplicaResponse::Error {
                code: ReplicaErrorCode::UnknownTable,
                message: "unknown table \"x\"".into(),
            },
            ReplicaResponse::Row(RowCells {
                tombstone: Some(vec![1]),
                cells: vec![(b"a".to_vec(), vec![2]), (b"b".to_vec(), vec![])],
                more: true,
            }),
            ReplicaResponse::RowDigest { digest: [3; 16] },
            ReplicaResponse::Answer {
                error: true,
                opcode: 0x21,
                body: Bytes::from_static(b"x"),
            },
        ];
        for r in responses {
            assert_eq!(ReplicaResponse::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn replica_read_encoding_matches_the_spec_example() {
        let r = ReplicaRequest::Read {
            table: "t".into(),
            keys: vec![vec![0xAB]],
        };
        // kind, table "t", one key of one byte.
        assert_eq!(
            &r.encode()[..],
            &[0x02, 0x00, 0x01, b't', 0, 0, 0, 1, 0, 0, 0, 1, 0xAB]
        );
    }

    #[test]
    fn replica_message_refuses_impossible_counts_and_bad_kinds() {
        let mut huge = vec![READ, 0, 1, b't'];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            ReplicaRequest::decode(&huge),
            Err(MessageError::Malformed { .. })
        ));
        assert_eq!(
            ReplicaRequest::decode(&[0x7E]),
            Err(MessageError::UnknownKind { kind: 0x7E })
        );
        let mut trailing = ReplicaResponse::Applied { count: 1 }.encode().to_vec();
        trailing.push(0);
        assert!(ReplicaResponse::decode(&trailing).is_err());
        assert!(
            ReplicaRequest::decode(&[READ, 0, 0]).is_err(),
            "empty table"
        );
    }

    proptest! {
        #[test]
        fn replica_message_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ReplicaRequest::decode(&bytes);
            let _ = ReplicaResponse::decode(&bytes);
        }
    }
}
