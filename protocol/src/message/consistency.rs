//! Consistency requirements: how many replicas must answer ([`ConsistencyLevel`]) and
//! which of them count ([`QuorumMode`]). Pure data with its wire encoding.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_strict_keeps_level() {
        let c = Consistency::explicit(2).strict();
        assert_eq!(c.level, ConsistencyLevel::Explicit(2));
        assert_eq!(c.mode, QuorumMode::Strict);
    }
}
