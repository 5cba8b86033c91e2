//! Value types shared by requests and responses. Selectors and response metadata live
//! here; the other value types live in their own modules and are re-exported here, so
//! `message::types::X` names every one of them.
//!
//! Each type has `encode` / `decode` against [`WireWriter`] / [`WireReader`]; the byte
//! grammar of every type is written next to it and in `doc/wire_format.md`. Pure data.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

pub use crate::message::admin::{
    ClusterDescription, DiskShortage, HintOwner, NodeHealth, NodeSchema, RebalanceNode,
    RebalanceReport, RepairState, RepairStatus, StreamEntry, StreamsReport, TableCleanup,
    TableStatistics, TableSync,
};
pub use crate::message::cell::{Cell, CellContext, ColumnWrite, Sibling};
pub use crate::message::consistency::{Consistency, ConsistencyLevel, QuorumMode, ReadRepair};
pub use crate::message::table_options::{Compaction, ConflictMode, Placement, TableOptions};
pub use crate::message::topology::{NodeInfo, NodeState, Topology};
pub use crate::message::user::{Grant, Permission, UserInfo};

/// Which columns of a row a get returns. Wire: `u8` tag; 0 all; 1 `list<bytes>` names;
/// 2 slice: `option<bytes>` from, `option<bytes>` to, `u32` limit, `option<bytes>` paging.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Every column of the row.
    All,
    /// These columns (a missing column is simply absent from the answer).
    Columns(Vec<Bytes>),
    /// Columns with `from <= name < to` in byte order, at most `limit` of them (0 = the
    /// server's default page size), resuming after `paging` if given (a token a previous
    /// page returned as `next_page`).
    Slice {
        /// Inclusive lower bound; `None` = from the first column.
        from: Option<Bytes>,
        /// Exclusive upper bound; `None` = to the last column.
        to: Option<Bytes>,
        /// Most columns to return; 0 = the server's default.
        limit: u32,
        /// Opaque paging token from a previous page.
        paging: Option<Bytes>,
    },
}

impl Selector {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        match self {
            Selector::All => w.u8(0),
            Selector::Columns(names) => {
                w.u8(1);
                w.list("column names", names, |w, n| w.bytes("column name", n))?;
            }
            Selector::Slice {
                from,
                to,
                limit,
                paging,
            } => {
                w.u8(2);
                w.option(from.as_ref(), |w, b| w.bytes("slice from", b))?;
                w.option(to.as_ref(), |w, b| w.bytes("slice to", b))?;
                w.u32(*limit);
                w.option(paging.as_ref(), |w, b| w.bytes("paging token", b))?;
            }
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        match r.u8("selector")? {
            0 => Ok(Selector::All),
            1 => Ok(Selector::Columns(
                r.list("column names", 4, |r| r.bytes("column name"))?,
            )),
            2 => Ok(Selector::Slice {
                from: r.option("slice from", |r| r.bytes("slice from"))?,
                to: r.option("slice to", |r| r.bytes("slice to"))?,
                limit: r.u32("slice limit")?,
                paging: r.option("paging token", |r| r.bytes("paging token"))?,
            }),
            tag => Err(ProtocolError::InvalidTag {
                what: "selector",
                tag: u64::from(tag),
            }),
        }
    }
}

/// Metadata on every data response. Wire: `list<string>` replicas, `bool` read_repair,
/// `list<string>` stand_ins.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ResponseMeta {
    /// Node ids of the replicas that answered the coordinator (home replicas and
    /// stand-ins).
    pub replicas: Vec<String>,
    /// Whether the coordinator repaired stale replicas during this read.
    pub read_repair: bool,
    /// Node ids of the `replicas` that answered as stand-ins (they hold a hint for a home
    /// replica that was down); empty when every answer came from a home replica.
    pub stand_ins: Vec<String>,
}

impl ResponseMeta {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.list("replicas", &self.replicas, |w, s| w.string("replica", s))?;
        w.bool(self.read_repair);
        w.list("stand-ins", &self.stand_ins, |w, s| w.string("stand-in", s))?;
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(ResponseMeta {
            replicas: r.list("replicas", 2, |r| r.string("replica"))?,
            read_repair: r.bool("read repair")?,
            stand_ins: r.list("stand-ins", 2, |r| r.string("stand-in"))?,
        })
    }
}
