//! Table options: replication factor, default consistencies, conflict mode, default TTL,
//! compaction and placement. Pure data with its wire encoding.

use crate::error::ProtocolError;
use crate::message::consistency::Consistency;
use crate::wire::{WireReader, WireWriter};

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
