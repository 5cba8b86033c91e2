//! The hints family's peer messages (spec: `doc/peer-messages.md`, "Hints family"): a
//! coordinator asks a node outside a write's preference list to keep the cells a down
//! home replica missed, as a hint naming that owner. Delivery back to the owner is not a
//! hints message: it is the replica family's `Apply`.
//!
//! # Format (all integers big-endian; `cells` is the replica codec's raw cell list)
//! ```text
//! request    = store_hint
//! store_hint = 0x01 owner:u64 cells
//! response   = stored | dropped | error
//! stored     = 0x81                             kept durably (per the holder's sync mode)
//! dropped    = 0x82 reason:u8                   1 window, 2 size (3 corrupt, 4 rejected:
//!                                               never sent for a store)
//! error      = 0xFF code:u8 message:str
//! str        = len:u16 (<= 1024) utf8{len}
//! ```
//! Error codes ([`HintsErrorCode`]): 1 storage (the holder cannot store hints: try
//! another node), 2 too large (the hint's record passes the holder's record limit: split
//! it). Decoding never panics and allocates no more than the input holds.
// Bytes from the network: decoding never panics, so no unwrap and no unchecked indexing.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::indexing_slicing))]

use bytes::Bytes;
use sibyl_coding::ByteReader;

use super::DropReason;
use crate::replica::codec::{decode_raw_cells, encode_raw_cells, CodecError};
use crate::replica::RawCell;
use crate::ring::NodeId;

/// Longest error message carried.
const MAX_MESSAGE_LEN: usize = 1024;

const STORE_HINT: u8 = 0x01;
const STORED: u8 = 0x81;
const DROPPED: u8 = 0x82;
const ERROR: u8 = 0xFF;

/// A request to a hint holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintsRequest {
    /// Keep `cells` as a hint for `owner`.
    StoreHint {
        /// The home replica that missed them.
        owner: NodeId,
        /// The cells, as the coordinator minted them.
        cells: Vec<RawCell>,
    },
}

/// Why a holder could not take a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintsErrorCode {
    /// Its hint store failed (disk, poisoned engine).
    Storage,
    /// The hint is larger than one record may be.
    TooLarge,
}

impl HintsErrorCode {
    /// Its byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            HintsErrorCode::Storage => 1,
            HintsErrorCode::TooLarge => 2,
        }
    }

    /// The code of a wire byte.
    pub fn from_code(code: u8) -> Option<HintsErrorCode> {
        match code {
            1 => Some(HintsErrorCode::Storage),
            2 => Some(HintsErrorCode::TooLarge),
            _ => None,
        }
    }
}

/// A holder's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintsResponse {
    /// The hint is stored.
    Stored,
    /// The hint was dropped at a bound (counted at the holder for repair).
    Dropped {
        /// Which bound.
        reason: DropReason,
    },
    /// The holder failed.
    Error {
        /// Why, for the caller to react on.
        code: HintsErrorCode,
        /// For people.
        message: String,
    },
}

/// A hints message that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HintsMessageError {
    /// The first byte names no message.
    #[error("hints message: unknown kind {kind:#04x}")]
    UnknownKind {
        /// The byte found.
        kind: u8,
    },
    /// The bytes break the format.
    #[error("hints message: {reason} (at byte {offset})")]
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

fn malformed(reason: &'static str, r: &ByteReader<'_>) -> HintsMessageError {
    HintsMessageError::Malformed {
        reason,
        offset: r.position(),
    }
}

impl HintsRequest {
    /// The encoded request (the caller keeps within the cell list's limits).
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            HintsRequest::StoreHint { owner, cells } => {
                out.push(STORE_HINT);
                out.extend_from_slice(&owner.0.to_be_bytes());
                encode_raw_cells(cells, &mut out);
            }
        }
        Bytes::from(out)
    }

    /// Decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<HintsRequest, HintsMessageError> {
        let mut r = ByteReader::new(bytes);
        match r.u8().ok_or(malformed("empty message", &r))? {
            STORE_HINT => {
                let owner = NodeId(r.u64_be().ok_or(malformed("truncated owner", &r))?);
                Ok(HintsRequest::StoreHint {
                    owner,
                    cells: decode_raw_cells(r.rest())?,
                })
            }
            kind => Err(HintsMessageError::UnknownKind { kind }),
        }
    }
}

impl HintsResponse {
    /// The encoded response.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            HintsResponse::Stored => out.push(STORED),
            HintsResponse::Dropped { reason } => {
                out.push(DROPPED);
                out.push(reason.code());
            }
            HintsResponse::Error { code, message } => {
                out.push(ERROR);
                out.push(code.code());
                let mut end = message.len().min(MAX_MESSAGE_LEN);
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                let text = message.get(..end).unwrap_or_default();
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        Bytes::from(out)
    }

    /// Decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<HintsResponse, HintsMessageError> {
        let mut r = ByteReader::new(bytes);
        let response = match r.u8().ok_or(malformed("empty message", &r))? {
            STORED => HintsResponse::Stored,
            DROPPED => HintsResponse::Dropped {
                reason: r
                    .u8()
                    .and_then(DropReason::from_code)
                    .ok_or(malformed("unknown drop reason", &r))?,
            },
            ERROR => {
                let code = r
                    .u8()
                    .and_then(HintsErrorCode::from_code)
                    .ok_or(malformed("unknown error code", &r))?;
                let len = usize::from(r.u16_be().ok_or(malformed("truncated message", &r))?);
                if len > MAX_MESSAGE_LEN {
                    return Err(malformed("message too long", &r));
                }
                let text = r.take(len).ok_or(malformed("truncated message", &r))?;
                HintsResponse::Error {
                    code,
                    message: String::from_utf8_lossy(text).into_owned(),
                }
            }
            kind => return Err(HintsMessageError::UnknownKind { kind }),
        };
        if !r.is_empty() {
            return Err(malformed("trailing bytes", &r));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cell() -> RawCell {
        RawCell {
            table: "t".into(),
            key: vec![0xab, 0xcd],
            value: vec![0x01],
        }
    }

    #[test]
    fn hints_messages_round_trip() {
        let requests = [
            HintsRequest::StoreHint {
                owner: NodeId(9),
                cells: vec![cell(), cell()],
            },
            HintsRequest::StoreHint {
                owner: NodeId(u64::MAX),
                cells: vec![],
            },
        ];
        for r in requests {
            assert_eq!(HintsRequest::decode(&r.encode()).unwrap(), r);
        }
        let responses = [
            HintsResponse::Stored,
            HintsResponse::Dropped {
                reason: DropReason::Window,
            },
            HintsResponse::Dropped {
                reason: DropReason::Size,
            },
            HintsResponse::Error {
                code: HintsErrorCode::Storage,
                message: "disk full".into(),
            },
            HintsResponse::Error {
                code: HintsErrorCode::TooLarge,
                message: String::new(),
            },
        ];
        for r in responses {
            assert_eq!(HintsResponse::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn hints_decoders_refuse_truncations_kinds_and_trailing_bytes() {
        let req = HintsRequest::StoreHint {
            owner: NodeId(9),
            cells: vec![cell()],
        }
        .encode();
        for n in 0..req.len() {
            assert!(HintsRequest::decode(&req[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(
            HintsRequest::decode(&[0x02]),
            Err(HintsMessageError::UnknownKind { kind: 0x02 })
        );
        let mut trailing = HintsResponse::Stored.encode().to_vec();
        trailing.push(0);
        assert!(HintsResponse::decode(&trailing).is_err());
        assert!(HintsResponse::decode(&[DROPPED, 9]).is_err());
        assert!(HintsResponse::decode(&[ERROR, 7, 0, 0]).is_err());
        let long = HintsResponse::Error {
            code: HintsErrorCode::Storage,
            message: "é".repeat(600),
        };
        let HintsResponse::Error { message, .. } = HintsResponse::decode(&long.encode()).unwrap()
        else {
            panic!("not an error")
        };
        assert_eq!(message.len(), 1024, "cut at a char boundary");
    }

    proptest! {
        #[test]
        fn hints_message_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = HintsRequest::decode(&bytes);
            let _ = HintsResponse::decode(&bytes);
        }

        #[test]
        fn hints_store_hint_round_trips(owner in any::<u64>(), keys in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..8)) {
            let cells: Vec<RawCell> = keys.into_iter().map(|key| RawCell { table: "t".into(), key, value: vec![1, 2] }).collect();
            let r = HintsRequest::StoreHint { owner: NodeId(owner), cells };
            prop_assert_eq!(HintsRequest::decode(&r.encode()).unwrap(), r);
        }
    }
}
