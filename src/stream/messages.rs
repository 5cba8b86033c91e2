//! The stream family's peer messages (spec: `doc/peer-messages.md`, "Stream family"): a
//! node that gains a token range pulls it from a current replica a page at a time, in
//! ring order, each page starting after the last key of the one before. The receiver
//! drives (and checkpoints), so a stream cut by a crash of either side resumes from the
//! last key applied. Rides the bulk lane.
//!
//! # Format (all integers big-endian; `cells` is `crate::replica::codec`'s raw cell list)
//! ```text
//! request  = page | sees | sizes
//! sees     = 0x02 node:u64         does the receiver's view show `node` in a ring change
//!                                  (joining with its tokens announced, leaving, moving)?
//! sizes    = 0x03 buckets:u32 count:u32 table:str{count}
//!                                  the receiver's bytes of each table per slice of the
//!                                  token space (super::sizes), `buckets` slices
//! range_size = 0x04 table:str range
//!                                  the receiver's bytes of the range (estimated)
//! page     = 0x01 table:str range after max_bytes:u32
//!                                  the stored entries of the range in ring order,
//!                                  starting after `after`, about `max_bytes` of them
//! after    = 0x00 (from the range's start) | 0x01 key:bytes (after this engine key)
//! range    = start:token end:token the ring range (start, end]
//! token    = len:u8 sortable:byte{len}
//! response = entries | seen | sized | range_sized | error
//! entries  = 0x81 more:u8 cells    more = 1 when the range goes on after the last cell
//! seen     = 0x82 changing:u8      1 when it does
//! sized    = 0x83 count:u32 (table:str n:u32 bytes:u64{n}){count}
//!                                  one histogram per table the receiver holds (a table
//!                                  it does not know is left out)
//! range_sized = 0x84 bytes:u64
//! error    = 0xFF code:u8 message:str
//! str      = len:u16 utf8{len}
//! bytes    = len:u32 byte{len}
//! ```
//! A page holds at least one entry when the range has one after `after` (an entry larger
//! than `max_bytes` travels alone), and at most [`MAX_PAGE_BYTES`] of keys and values
//! otherwise; `more = 0` ends the range. A `sizes` request asks for 1 to
//! [`super::sizes::MAX_BUCKETS`] buckets of at most 1,024 tables. Error codes ([`StreamErrorCode`]): 1 unknown
//! table (the schema has not reached the source yet: retry later), 3 storage failure at
//! the source (try another replica), 4 invalid request.
//!
//! Decoding never panics and allocates no more than the input holds.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use bytes::Bytes;
use sibyl_coding::ByteReader;

use crate::repair::messages::{
    count, finish, key, malformed, put_bytes, put_range, put_str, range, string, table,
    MessageError, MAX_MESSAGE_LEN, MAX_TABLE_LEN,
};
use crate::replica::codec::{decode_raw_cells, encode_raw_cells};
use crate::replica::{RawCell, TokenRange};

/// Largest page a source answers, whatever the request asks (the bulk lane's frames
/// stay well under the peer network's frame cap).
pub const MAX_PAGE_BYTES: u32 = 4 << 20;

const PAGE: u8 = 0x01;
const SEES: u8 = 0x02;
const SIZES: u8 = 0x03;
const RANGE_SIZE: u8 = 0x04;
const RANGE_SIZED: u8 = 0x84;
const ENTRIES: u8 = 0x81;
const SEEN: u8 = 0x82;
const SIZED: u8 = 0x83;
/// Most tables one `sizes` request names.
const MAX_SIZE_TABLES: usize = 1024;
const ERROR: u8 = 0xFF;

/// A request to a peer's stream handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    /// The next page of a range.
    Page {
        /// The table.
        table: String,
        /// The ring range.
        range: TokenRange,
        /// Start after this engine key (`None`: from the range's start).
        after: Option<Vec<u8>>,
        /// About how many bytes of entries to answer (capped at [`MAX_PAGE_BYTES`]).
        max_bytes: u32,
    },
    /// Whether the receiver sees `node` in a ring change (joining with its tokens
    /// announced, or leaving): a node streams only once every owner does, so that every
    /// write of a range that moves is coordinated with the range's new replicas too.
    Sees {
        /// The joining node.
        node: crate::ring::NodeId,
    },
    /// The receiver's bytes of one range of one table, estimated (a stream's total,
    /// for `sibyl-admin streams`).
    RangeSize {
        /// The table.
        table: String,
        /// The ring range.
        range: TokenRange,
    },
    /// The receiver's bytes of each table per slice of the token space
    /// ([`super::sizes`]).
    Sizes {
        /// Slices of the token space.
        buckets: u32,
        /// The tables.
        tables: Vec<String>,
    },
}

/// Why a stream request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorCode {
    /// The table is not in the source's schema.
    UnknownTable,
    /// The source's storage failed.
    Storage,
    /// The request is malformed.
    Invalid,
}

impl StreamErrorCode {
    fn code(self) -> u8 {
        match self {
            StreamErrorCode::UnknownTable => 1,
            StreamErrorCode::Storage => 3,
            StreamErrorCode::Invalid => 4,
        }
    }

    fn from_code(c: u8) -> Option<StreamErrorCode> {
        Some(match c {
            1 => StreamErrorCode::UnknownTable,
            3 => StreamErrorCode::Storage,
            4 => StreamErrorCode::Invalid,
            _ => return None,
        })
    }
}

/// A stream handler's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamResponse {
    /// A page of entries, in ring order.
    Entries {
        /// The range goes on after the last one.
        more: bool,
        /// The stored entries.
        cells: Vec<RawCell>,
    },
    /// `Sees`.
    Seen {
        /// The node is joining (tokens announced) or leaving in the receiver's view.
        changing: bool,
    },
    /// `RangeSize`: the bytes, estimated (0 for a table the receiver does not know).
    RangeSized {
        /// The bytes.
        bytes: u64,
    },
    /// `Sizes`: one histogram per table the receiver holds.
    Sized {
        /// The histograms.
        tables: Vec<super::sizes::TableSizes>,
    },
    /// Refused.
    Error {
        /// Why.
        code: StreamErrorCode,
        /// For people.
        message: String,
    },
}

/// Why a stream call got no answer it could read.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    /// The peer network failed (down, timeout, refused).
    #[error("peer call: {0}")]
    Net(#[from] crate::net::NetError),
    /// The answer did not decode.
    #[error("undecodable answer: {0}")]
    Decode(#[from] MessageError),
}

impl StreamRequest {
    /// Sends the request to `node` at `addr` on the bulk lane and decodes its answer.
    pub async fn call(
        &self,
        net: &dyn crate::net::PeerNetwork,
        addr: std::net::SocketAddr,
        node: crate::ring::NodeId,
        deadline: tokio::time::Instant,
    ) -> Result<StreamResponse, CallFailure> {
        let answer = net
            .call_node(
                addr,
                node,
                crate::net::Family::Stream,
                self.encode(),
                deadline,
            )
            .await?;
        Ok(StreamResponse::decode(&answer)?)
    }

    /// The encoded request.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            StreamRequest::Page {
                table,
                range,
                after,
                max_bytes,
            } => {
                out.push(PAGE);
                put_str(&mut out, table, MAX_TABLE_LEN);
                put_range(&mut out, range);
                match after {
                    None => out.push(0),
                    Some(k) => {
                        out.push(1);
                        put_bytes(&mut out, k);
                    }
                }
                out.extend_from_slice(&max_bytes.to_be_bytes());
            }
            StreamRequest::Sees { node } => {
                out.push(SEES);
                out.extend_from_slice(&node.0.to_be_bytes());
            }
            StreamRequest::RangeSize { table, range } => {
                out.push(RANGE_SIZE);
                put_str(&mut out, table, MAX_TABLE_LEN);
                put_range(&mut out, range);
            }
            StreamRequest::Sizes { buckets, tables } => {
                out.push(SIZES);
                out.extend_from_slice(&buckets.to_be_bytes());
                out.extend_from_slice(&(tables.len() as u32).to_be_bytes());
                for t in tables {
                    put_str(&mut out, t, MAX_TABLE_LEN);
                }
            }
        }
        Bytes::from(out)
    }

    /// Decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<StreamRequest, MessageError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(malformed("empty message", &r))?;
        let request = match kind {
            PAGE => {
                let table = table(&mut r)?;
                let range = range(&mut r)?;
                let after = match r.u8().ok_or(malformed("truncated start", &r))? {
                    0 => None,
                    1 => Some(key(&mut r)?),
                    _ => return Err(malformed("unknown start kind", &r)),
                };
                let max_bytes = r.u32_be().ok_or(malformed("truncated page size", &r))?;
                StreamRequest::Page {
                    table,
                    range,
                    after,
                    max_bytes,
                }
            }
            SEES => StreamRequest::Sees {
                node: crate::ring::NodeId(r.u64_be().ok_or(malformed("truncated node", &r))?),
            },
            RANGE_SIZE => StreamRequest::RangeSize {
                table: table(&mut r)?,
                range: range(&mut r)?,
            },
            SIZES => {
                let buckets = r.u32_be().ok_or(malformed("truncated bucket count", &r))?;
                if buckets == 0 || buckets > super::sizes::MAX_BUCKETS {
                    return Err(malformed("bucket count out of bounds", &r));
                }
                let n = count(&mut r, MAX_SIZE_TABLES, 3)?;
                let mut tables = Vec::with_capacity(n);
                for _ in 0..n {
                    tables.push(table(&mut r)?);
                }
                StreamRequest::Sizes { buckets, tables }
            }
            kind => return Err(MessageError::UnknownKind { kind }),
        };
        finish(&r)?;
        Ok(request)
    }
}

impl StreamResponse {
    /// The encoded response.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            StreamResponse::Entries { more, cells } => {
                out.push(ENTRIES);
                out.push(u8::from(*more));
                encode_raw_cells(cells, &mut out);
            }
            StreamResponse::Seen { changing } => {
                out.push(SEEN);
                out.push(u8::from(*changing));
            }
            StreamResponse::RangeSized { bytes } => {
                out.push(RANGE_SIZED);
                out.extend_from_slice(&bytes.to_be_bytes());
            }
            StreamResponse::Sized { tables } => {
                out.push(SIZED);
                out.extend_from_slice(&(tables.len() as u32).to_be_bytes());
                for t in tables {
                    put_str(&mut out, &t.table, MAX_TABLE_LEN);
                    out.extend_from_slice(&(t.buckets.len() as u32).to_be_bytes());
                    for b in &t.buckets {
                        out.extend_from_slice(&b.to_be_bytes());
                    }
                }
            }
            StreamResponse::Error { code, message } => {
                out.push(ERROR);
                out.push(code.code());
                put_str(&mut out, message, MAX_MESSAGE_LEN);
            }
        }
        Bytes::from(out)
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<StreamResponse, MessageError> {
        let mut r = ByteReader::new(bytes);
        let kind = r.u8().ok_or(malformed("empty message", &r))?;
        match kind {
            ENTRIES => {
                let more = match r.u8().ok_or(malformed("truncated more flag", &r))? {
                    0 => false,
                    1 => true,
                    _ => return Err(malformed("more flag is neither 0 nor 1", &r)),
                };
                let cells = decode_raw_cells(r.rest())?;
                Ok(StreamResponse::Entries { more, cells })
            }
            SEEN => {
                let changing = match r.u8().ok_or(malformed("truncated flag", &r))? {
                    0 => false,
                    1 => true,
                    _ => return Err(malformed("changing flag is neither 0 nor 1", &r)),
                };
                finish(&r)?;
                Ok(StreamResponse::Seen { changing })
            }
            RANGE_SIZED => {
                let bytes = r.u64_be().ok_or(malformed("truncated size", &r))?;
                finish(&r)?;
                Ok(StreamResponse::RangeSized { bytes })
            }
            SIZED => {
                let n = count(&mut r, MAX_SIZE_TABLES, 7)?;
                let mut tables = Vec::with_capacity(n);
                for _ in 0..n {
                    let table = table(&mut r)?;
                    let b = count(&mut r, super::sizes::MAX_BUCKETS as usize, 8)?;
                    let mut buckets = Vec::with_capacity(b);
                    for _ in 0..b {
                        buckets.push(r.u64_be().ok_or(malformed("truncated size", &r))?);
                    }
                    tables.push(super::sizes::TableSizes { table, buckets });
                }
                finish(&r)?;
                Ok(StreamResponse::Sized { tables })
            }
            ERROR => {
                let code = r.u8().ok_or(malformed("truncated error code", &r))?;
                let code =
                    StreamErrorCode::from_code(code).ok_or(malformed("unknown error code", &r))?;
                let message = string(&mut r, MAX_MESSAGE_LEN)?;
                finish(&r)?;
                Ok(StreamResponse::Error { code, message })
            }
            kind => Err(MessageError::UnknownKind { kind }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Token;

    fn range() -> TokenRange {
        TokenRange {
            start: Token::Murmur3(-5),
            end: Token::Murmur3(9),
        }
    }

    #[test]
    fn stream_messages_round_trip() {
        for after in [None, Some(vec![1, 2, 3])] {
            let r = StreamRequest::Page {
                table: "kv".into(),
                range: range(),
                after,
                max_bytes: 1 << 20,
            };
            assert_eq!(StreamRequest::decode(&r.encode()).unwrap(), r);
        }
        let cells = vec![RawCell {
            table: "kv".into(),
            key: vec![9; 12],
            value: vec![7; 30],
        }];
        for more in [false, true] {
            let a = StreamResponse::Entries {
                more,
                cells: cells.clone(),
            };
            assert_eq!(StreamResponse::decode(&a.encode()).unwrap(), a);
        }
        let q = StreamRequest::Sees {
            node: crate::ring::NodeId(0xab),
        };
        assert_eq!(StreamRequest::decode(&q.encode()).unwrap(), q);
        for changing in [false, true] {
            let a = StreamResponse::Seen { changing };
            assert_eq!(StreamResponse::decode(&a.encode()).unwrap(), a);
        }
        let q = StreamRequest::RangeSize {
            table: "kv".into(),
            range: range(),
        };
        assert_eq!(StreamRequest::decode(&q.encode()).unwrap(), q);
        let a = StreamResponse::RangeSized { bytes: 1 << 33 };
        assert_eq!(StreamResponse::decode(&a.encode()).unwrap(), a);
        let q = StreamRequest::Sizes {
            buckets: 4096,
            tables: vec!["kv".into(), "users".into()],
        };
        assert_eq!(StreamRequest::decode(&q.encode()).unwrap(), q);
        let a = StreamResponse::Sized {
            tables: vec![super::super::sizes::TableSizes {
                table: "kv".into(),
                buckets: vec![0, 7, u64::MAX],
            }],
        };
        assert_eq!(StreamResponse::decode(&a.encode()).unwrap(), a);
        for bad in [0, super::super::sizes::MAX_BUCKETS + 1] {
            let q = StreamRequest::Sizes {
                buckets: bad,
                tables: vec![],
            };
            assert!(StreamRequest::decode(&q.encode()).is_err(), "{bad} buckets");
        }
        let e = StreamResponse::Error {
            code: StreamErrorCode::UnknownTable,
            message: "no table".into(),
        };
        assert_eq!(StreamResponse::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn stream_messages_refuse_every_truncation_and_trailing_bytes() {
        let r = StreamRequest::Page {
            table: "kv".into(),
            range: range(),
            after: Some(vec![4; 8]),
            max_bytes: 99,
        }
        .encode();
        for n in 0..r.len() {
            assert!(
                StreamRequest::decode(&r[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut long = r.to_vec();
        long.push(0);
        assert!(StreamRequest::decode(&long).is_err());
        let a = StreamResponse::Entries {
            more: true,
            cells: vec![],
        }
        .encode();
        for n in 0..a.len() {
            assert!(
                StreamResponse::decode(&a[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        assert!(StreamRequest::decode(&[0x7f]).is_err());
        assert!(
            StreamResponse::decode(&[0x81, 2, 1, 0]).is_err(),
            "bad more flag"
        );
    }
}
