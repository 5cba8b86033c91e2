//! Value types shared by requests and responses: consistency, table options, selectors,
//! column writes, cells with their siblings and contexts, response metadata.
//!
//! Each type has `encode` / `decode` against [`WireWriter`] / [`WireReader`]; the byte
//! grammar of every type is written next to it and in `doc/wire_format.md`. Pure data.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

/// How many replicas must answer. Wire: `u8` tag (1 ONE, 2 TWO, 3 THREE, 4 QUORUM, 5 ALL,
/// 6 LOCAL_QUORUM, 7 EXPLICIT followed by `u16` n).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of the N replicas.
    Quorum,
    /// All N replicas.
    All,
    /// A majority of the replicas in the coordinator's datacenter.
    LocalQuorum,
    /// Exactly this many replicas (Dynamo's explicit R / W).
    Explicit(u16),
}

/// Which replicas count toward the level. Wire: `u8`, 0 sloppy, 1 strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QuorumMode {
    /// Fallback nodes holding hints count (Dynamo's sloppy quorum, the default).
    #[default]
    Sloppy,
    /// Only home replicas of the key count.
    Strict,
}

/// A consistency requirement: a level and a quorum mode. Wire: level, then mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Consistency {
    /// How many replicas.
    pub level: ConsistencyLevel,
    /// Which replicas count.
    pub mode: QuorumMode,
}

impl Consistency {
    /// ONE, sloppy.
    pub const ONE: Consistency = Consistency::sloppy(ConsistencyLevel::One);
    /// TWO, sloppy.
    pub const TWO: Consistency = Consistency::sloppy(ConsistencyLevel::Two);
    /// THREE, sloppy.
    pub const THREE: Consistency = Consistency::sloppy(ConsistencyLevel::Three);
    /// QUORUM, sloppy.
    pub const QUORUM: Consistency = Consistency::sloppy(ConsistencyLevel::Quorum);
    /// ALL, sloppy.
    pub const ALL: Consistency = Consistency::sloppy(ConsistencyLevel::All);
    /// LOCAL_QUORUM, sloppy.
    pub const LOCAL_QUORUM: Consistency = Consistency::sloppy(ConsistencyLevel::LocalQuorum);

    /// A level with the sloppy mode.
    pub const fn sloppy(level: ConsistencyLevel) -> Self {
        Consistency {
            level,
            mode: QuorumMode::Sloppy,
        }
    }

    /// Exactly `n` replicas, sloppy.
    pub const fn explicit(n: u16) -> Self {
        Consistency::sloppy(ConsistencyLevel::Explicit(n))
    }

    /// The same level, counting home replicas only.
    pub const fn strict(self) -> Self {
        Consistency {
            level: self.level,
            mode: QuorumMode::Strict,
        }
    }

    pub(crate) fn encode(&self, w: &mut WireWriter) {
        match self.level {
            ConsistencyLevel::One => w.u8(1),
            ConsistencyLevel::Two => w.u8(2),
            ConsistencyLevel::Three => w.u8(3),
            ConsistencyLevel::Quorum => w.u8(4),
            ConsistencyLevel::All => w.u8(5),
            ConsistencyLevel::LocalQuorum => w.u8(6),
            ConsistencyLevel::Explicit(n) => {
                w.u8(7);
                w.u16(n);
            }
        }
        w.u8(match self.mode {
            QuorumMode::Sloppy => 0,
            QuorumMode::Strict => 1,
        });
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        let level = match r.u8("consistency level")? {
            1 => ConsistencyLevel::One,
            2 => ConsistencyLevel::Two,
            3 => ConsistencyLevel::Three,
            4 => ConsistencyLevel::Quorum,
            5 => ConsistencyLevel::All,
            6 => ConsistencyLevel::LocalQuorum,
            7 => ConsistencyLevel::Explicit(r.u16("explicit replica count")?),
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "consistency level",
                    tag: u64::from(tag),
                })
            }
        };
        let mode = match r.u8("quorum mode")? {
            0 => QuorumMode::Sloppy,
            1 => QuorumMode::Strict,
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "quorum mode",
                    tag: u64::from(tag),
                })
            }
        };
        Ok(Consistency { level, mode })
    }
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency::QUORUM
    }
}

/// How concurrent writes to a cell are resolved. Wire: `u8`, 0 causal, 1 lww.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConflictMode {
    /// Dotted version vectors; concurrent writes become siblings.
    #[default]
    Causal,
    /// Last write (highest timestamp) wins; concurrent updates are lost.
    Lww,
}

/// Compaction strategy of a table. Wire: `u8`, 0 size-tiered, 1 leveled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compaction {
    /// Merge SSTables of similar size.
    #[default]
    SizeTiered,
    /// Non-overlapping levels of growing size.
    Leveled,
}

/// Replica placement strategy. Wire: `u8` tag, 0 simple, 1 rack-aware, 2 dc-aware followed
/// by `list<(string datacenter, u16 replicas)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// First N distinct nodes clockwise.
    #[default]
    Simple,
    /// First N nodes clockwise, spread over racks.
    RackAware,
    /// A replication factor per datacenter.
    DcAware(Vec<(String, u16)>),
}

/// Options of a table. Wire (in order): `u16` replication_factor, read_consistency,
/// write_consistency, `u8` conflict_mode, `option<u32>` default_ttl_secs, `u8` compaction,
/// placement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableOptions {
    /// Replicas per key (N).
    pub replication_factor: u16,
    /// Consistency of reads that do not name one (R).
    pub read_consistency: Consistency,
    /// Consistency of writes that do not name one (W).
    pub write_consistency: Consistency,
    /// Conflict resolution.
    pub conflict_mode: ConflictMode,
    /// TTL applied to writes that do not carry one; `None` = no expiry.
    pub default_ttl_secs: Option<u32>,
    /// Compaction strategy.
    pub compaction: Compaction,
    /// Replica placement.
    pub placement: Placement,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            replication_factor: 3,
            read_consistency: Consistency::QUORUM,
            write_consistency: Consistency::QUORUM,
            conflict_mode: ConflictMode::Causal,
            default_ttl_secs: None,
            compaction: Compaction::SizeTiered,
            placement: Placement::Simple,
        }
    }
}

impl TableOptions {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.u16(self.replication_factor);
        self.read_consistency.encode(w);
        self.write_consistency.encode(w);
        w.u8(match self.conflict_mode {
            ConflictMode::Causal => 0,
            ConflictMode::Lww => 1,
        });
        w.option(self.default_ttl_secs.as_ref(), |w, v| {
            w.u32(*v);
            Ok(())
        })?;
        w.u8(match self.compaction {
            Compaction::SizeTiered => 0,
            Compaction::Leveled => 1,
        });
        match &self.placement {
            Placement::Simple => w.u8(0),
            Placement::RackAware => w.u8(1),
            Placement::DcAware(factors) => {
                w.u8(2);
                w.list("dc replication", factors, |w, (dc, n)| {
                    w.string("datacenter", dc)?;
                    w.u16(*n);
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        let replication_factor = r.u16("replication factor")?;
        let read_consistency = Consistency::decode(r)?;
        let write_consistency = Consistency::decode(r)?;
        let conflict_mode = match r.u8("conflict mode")? {
            0 => ConflictMode::Causal,
            1 => ConflictMode::Lww,
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "conflict mode",
                    tag: u64::from(tag),
                })
            }
        };
        let default_ttl_secs = r.option("default ttl", |r| r.u32("default ttl"))?;
        let compaction = match r.u8("compaction")? {
            0 => Compaction::SizeTiered,
            1 => Compaction::Leveled,
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "compaction",
                    tag: u64::from(tag),
                })
            }
        };
        let placement = match r.u8("placement")? {
            0 => Placement::Simple,
            1 => Placement::RackAware,
            2 => Placement::DcAware(r.list("dc replication", 4, |r| {
                Ok((r.string("datacenter")?, r.u16("dc replicas")?))
            })?),
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "placement",
                    tag: u64::from(tag),
                })
            }
        };
        Ok(TableOptions {
            replication_factor,
            read_consistency,
            write_consistency,
            conflict_mode,
            default_ttl_secs,
            compaction,
            placement,
        })
    }
}

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

/// One column written by an insert. Wire: `bytes` name, `bytes` value, `bytes` context
/// (empty = the writer saw nothing: a blind write).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnWrite {
    /// Column name.
    pub name: Bytes,
    /// New value.
    pub value: Bytes,
    /// Context of the versions this write supersedes, as returned by a read.
    pub context: Bytes,
}

impl ColumnWrite {
    pub(crate) const MIN_LEN: usize = 12;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.bytes("column name", &self.name)?;
        w.bytes("column value", &self.value)?;
        w.bytes("column context", &self.context)
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(ColumnWrite {
            name: r.bytes("column name")?,
            value: r.bytes("column value")?,
            context: r.bytes("column context")?,
        })
    }
}

/// A column named together with the context of what the caller read of it (deletes).
/// Wire: `bytes` name, `bytes` context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CellContext {
    /// Column name.
    pub name: Bytes,
    /// Context returned by a read (empty = none).
    pub context: Bytes,
}

impl CellContext {
    pub(crate) const MIN_LEN: usize = 8;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.bytes("column name", &self.name)?;
        w.bytes("column context", &self.context)
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(CellContext {
            name: r.bytes("column name")?,
            context: r.bytes("column context")?,
        })
    }
}

/// One concurrent version of a cell. Wire: `option<bytes>` value (absent = tombstone),
/// `i64` timestamp_micros, `option<u32>` ttl_secs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sibling {
    /// The value, or `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Write time, microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// Time to live left when read, if the value expires.
    pub ttl_secs: Option<u32>,
}

impl Sibling {
    pub(crate) const MIN_LEN: usize = 10;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.option(self.value.as_ref(), |w, v| w.bytes("sibling value", v))?;
        w.i64(self.timestamp_micros);
        w.option(self.ttl_secs.as_ref(), |w, v| {
            w.u32(*v);
            Ok(())
        })
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(Sibling {
            value: r.option("sibling value", |r| r.bytes("sibling value"))?,
            timestamp_micros: r.i64("sibling timestamp")?,
            ttl_secs: r.option("sibling ttl", |r| r.u32("sibling ttl"))?,
        })
    }
}

/// A cell as read: its name, its sibling versions and the opaque context to pass back
/// with a write that supersedes them. Wire: `bytes` name, `bytes` context,
/// `list<sibling>` siblings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cell {
    /// Column name.
    pub name: Bytes,
    /// Concurrent versions (one unless writes conflicted; tombstones included).
    pub siblings: Vec<Sibling>,
    /// Opaque causal context of this cell.
    pub context: Bytes,
}

impl Cell {
    pub(crate) const MIN_LEN: usize = 12;

    /// The value when the cell has exactly one live (non-tombstone) sibling.
    pub fn value(&self) -> Option<&Bytes> {
        let mut live = self.values();
        match (live.next(), live.next()) {
            (Some(v), None) => Some(v),
            _ => None,
        }
    }

    /// Every live (non-tombstone) value.
    pub fn values(&self) -> impl Iterator<Item = &Bytes> {
        self.siblings.iter().filter_map(|s| s.value.as_ref())
    }

    /// True when concurrent writes left more than one sibling.
    pub fn has_conflict(&self) -> bool {
        self.siblings.len() > 1
    }

    /// True when every sibling is a tombstone (the cell is deleted).
    pub fn is_deleted(&self) -> bool {
        self.siblings.iter().all(|s| s.value.is_none())
    }

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.bytes("cell name", &self.name)?;
        w.bytes("cell context", &self.context)?;
        w.list("siblings", &self.siblings, |w, s| s.encode(w))
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        let name = r.bytes("cell name")?;
        let context = r.bytes("cell context")?;
        let siblings = r.list("siblings", Sibling::MIN_LEN, Sibling::decode)?;
        Ok(Cell {
            name,
            siblings,
            context,
        })
    }
}

/// Metadata on every data response. Wire: `list<string>` replicas, `bool` read_repair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ResponseMeta {
    /// Replicas (node addresses or ids) that answered the coordinator.
    pub replicas: Vec<String>,
    /// Whether the coordinator repaired stale replicas during this read.
    pub read_repair: bool,
}

impl ResponseMeta {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.list("replicas", &self.replicas, |w, s| w.string("replica", s))?;
        w.bool(self.read_repair);
        Ok(())
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(ResponseMeta {
            replicas: r.list("replicas", 2, |r| r.string("replica"))?,
            read_repair: r.bool("read repair")?,
        })
    }
}

/// Life-cycle state of a node in the ring. Wire: `u8`, 0 joining, 1 normal, 2 leaving,
/// 3 left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Bootstrapping: receiving its ranges.
    Joining,
    /// Owns its tokens.
    Normal,
    /// Decommissioning: streaming its ranges away.
    Leaving,
    /// Gone from the ring.
    Left,
}

/// One node of the cluster as the topology response describes it. Wire: `string` id,
/// `string` address, `string` datacenter, `string` rack, `u8` state, `bool` up,
/// `list<i128>` tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// Stable node id.
    pub id: String,
    /// Client address, `host:port`.
    pub address: String,
    /// Datacenter name.
    pub datacenter: String,
    /// Rack name.
    pub rack: String,
    /// Ring state.
    pub state: NodeState,
    /// Whether the failure detector believes the node is up.
    pub up: bool,
    /// Tokens the node owns (murmur3 tokens are i64 values sign-extended; md5 tokens are
    /// non-negative 127-bit values).
    pub tokens: Vec<i128>,
}

impl NodeInfo {
    pub(crate) const MIN_LEN: usize = 14;

    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("node id", &self.id)?;
        w.string("node address", &self.address)?;
        w.string("datacenter", &self.datacenter)?;
        w.string("rack", &self.rack)?;
        w.u8(match self.state {
            NodeState::Joining => 0,
            NodeState::Normal => 1,
            NodeState::Leaving => 2,
            NodeState::Left => 3,
        });
        w.bool(self.up);
        w.list("tokens", &self.tokens, |w, t| {
            w.i128(*t);
            Ok(())
        })
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(NodeInfo {
            id: r.string("node id")?,
            address: r.string("node address")?,
            datacenter: r.string("datacenter")?,
            rack: r.string("rack")?,
            state: match r.u8("node state")? {
                0 => NodeState::Joining,
                1 => NodeState::Normal,
                2 => NodeState::Leaving,
                3 => NodeState::Left,
                tag => {
                    return Err(ProtocolError::InvalidTag {
                        what: "node state",
                        tag: u64::from(tag),
                    })
                }
            },
            up: r.bool("node up")?,
            tokens: r.list("tokens", 16, |r| r.i128("token"))?,
        })
    }
}

/// The cluster as a client needs it for token-aware routing. Wire: `string` partitioner
/// (`"murmur3"` or `"md5"`), `list<node>` nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Topology {
    /// Partitioner name.
    pub partitioner: String,
    /// Every node known to the answering node.
    pub nodes: Vec<NodeInfo>,
}

impl Topology {
    pub(crate) fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("partitioner", &self.partitioner)?;
        w.list("nodes", &self.nodes, |w, n| n.encode(w))
    }

    pub(crate) fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(Topology {
            partitioner: r.string("partitioner")?,
            nodes: r.list("nodes", NodeInfo::MIN_LEN, NodeInfo::decode)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(values: &[Option<&'static [u8]>]) -> Cell {
        Cell {
            name: Bytes::from_static(b"c"),
            siblings: values
                .iter()
                .map(|v| Sibling {
                    value: v.map(Bytes::from_static),
                    timestamp_micros: 1,
                    ttl_secs: None,
                })
                .collect(),
            context: Bytes::new(),
        }
    }

    #[test]
    fn cell_value_is_single_live_sibling() {
        assert_eq!(cell(&[Some(b"a")]).value().map(|b| &b[..]), Some(&b"a"[..]));
        assert_eq!(cell(&[Some(b"a"), Some(b"b")]).value(), None);
        assert_eq!(
            cell(&[Some(b"a"), None]).value().map(|b| &b[..]),
            Some(&b"a"[..])
        );
    }

    #[test]
    fn cell_all_tombstones_is_deleted() {
        assert!(cell(&[None, None]).is_deleted());
        assert!(!cell(&[None, Some(b"x")]).is_deleted());
    }

    #[test]
    fn consistency_strict_keeps_level() {
        let c = Consistency::explicit(2).strict();
        assert_eq!(c.level, ConsistencyLevel::Explicit(2));
        assert_eq!(c.mode, QuorumMode::Strict);
    }
}
