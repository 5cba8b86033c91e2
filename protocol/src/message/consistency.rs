//! Consistency requirements: how many replicas must answer ([`ConsistencyLevel`]), which
//! of them count ([`QuorumMode`]) and whether a read waits for its repairs
//! ([`ReadRepair`]). Pure data with its wire encoding.

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

/// When a read that found stale replicas repairs them. Wire: bit 1 of the mode byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReadRepair {
    /// The answer goes out at once; the stale replicas are repaired after it (the
    /// default, as in Riak).
    #[default]
    Background,
    /// The coordinator writes the reconciled cells to the stale replicas it read and
    /// waits for them before answering, so a read at R followed by a read at R sees the
    /// same cells (Cassandra's blocking read repair). Writes ignore it.
    Blocking,
}

/// A consistency requirement: a level, a quorum mode and the read-repair mode. Wire:
/// level, then the mode byte (bit 0: strict; bit 1: blocking read repair; other bits 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Consistency {
    /// How many replicas.
    pub level: ConsistencyLevel,
    /// Which replicas count.
    pub mode: QuorumMode,
    /// When a read repairs the stale replicas it found.
    pub read_repair: ReadRepair,
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
            read_repair: ReadRepair::Background,
        }
    }

    /// Exactly `n` replicas, sloppy.
    pub const fn explicit(n: u16) -> Self {
        Consistency::sloppy(ConsistencyLevel::Explicit(n))
    }

    /// The same level, counting home replicas only.
    pub const fn strict(self) -> Self {
        Consistency {
            mode: QuorumMode::Strict,
            ..self
        }
    }

    /// The same level and mode, waiting for read repair before answering.
    pub const fn blocking_read_repair(self) -> Self {
        Consistency {
            read_repair: ReadRepair::Blocking,
            ..self
        }
    }

    /// The mode byte: bit 0 strict, bit 1 blocking read repair.
    pub const fn mode_byte(&self) -> u8 {
        let strict = match self.mode {
            QuorumMode::Sloppy => 0,
            QuorumMode::Strict => 1,
        };
        let repair = match self.read_repair {
            ReadRepair::Background => 0,
            ReadRepair::Blocking => 2,
        };
        strict | repair
    }

    /// The quorum and read-repair modes of a mode byte; `None` if a reserved bit is set.
    pub const fn modes_of(byte: u8) -> Option<(QuorumMode, ReadRepair)> {
        if byte & !3 != 0 {
            return None;
        }
        let mode = if byte & 1 == 1 {
            QuorumMode::Strict
        } else {
            QuorumMode::Sloppy
        };
        let repair = if byte & 2 == 2 {
            ReadRepair::Blocking
        } else {
            ReadRepair::Background
        };
        Some((mode, repair))
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
        w.u8(self.mode_byte());
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
        let tag = r.u8("quorum mode")?;
        let Some((mode, read_repair)) = Consistency::modes_of(tag) else {
            return Err(ProtocolError::InvalidTag {
                what: "quorum mode",
                tag: u64::from(tag),
            });
        };
        Ok(Consistency {
            level,
            mode,
            read_repair,
        })
    }
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency::QUORUM
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_strict_keeps_level() {
        let c = Consistency::explicit(2).strict();
        assert_eq!(c.level, ConsistencyLevel::Explicit(2));
        assert_eq!(c.mode, QuorumMode::Strict);
        assert_eq!(c.read_repair, ReadRepair::Background);
    }

    #[test]
    fn consistency_mode_byte_round_trips_and_refuses_reserved_bits() {
        for c in [
            Consistency::QUORUM,
            Consistency::QUORUM.strict(),
            Consistency::ONE.blocking_read_repair(),
            Consistency::ALL.strict().blocking_read_repair(),
        ] {
            assert_eq!(
                Consistency::modes_of(c.mode_byte()),
                Some((c.mode, c.read_repair))
            );
        }
        assert_eq!(
            Consistency::QUORUM
                .strict()
                .blocking_read_repair()
                .mode_byte(),
            3
        );
        assert_eq!(Consistency::modes_of(4), None);
    }
}
