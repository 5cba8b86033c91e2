//! Table schemas: the protocol's [`TableOptions`] of each table, stored in the storage
//! engine's per-table metadata bytes so they survive restarts through the engine manifest.
//!
//! # Metadata format (version 1)
//! ```text
//! metadata      = magic version body crc
//! magic         = "STBL"                   (4 bytes)
//! version       = 0x01
//! body          = rf u16be, read consistency, write consistency, conflict u8
//!                 (0 causal, 1 lww), ttl_flag u8 (0 none, 1 present) [ttl u32be],
//!                 compaction u8 (0 size-tiered, 1 leveled), placement
//! consistency   = level u8 (1 ONE .. 6 LOCAL_QUORUM, 7 EXPLICIT) n u16be (EXPLICIT's
//!                 count, else 0), mode u8 (0 sloppy, 1 strict)
//! placement     = 0 simple | 1 rack-aware | 2 dc-aware count u16be
//!                 (name_len u16be name replicas u16be)*
//! crc           = CRC-32 (IEEE) of magic..body, u32be
//! ```
//! Example: rf 1, ONE/ONE sloppy, causal, no TTL, size-tiered, simple =
//! `53 54 42 4c 01 | 00 01 | 01 00 00 00 | 01 00 00 00 | 00 | 00 | 00 | 00 | crc`.
//!
//! Why a format of our own rather than the wire encoding: the stored schema must stay
//! readable when the protocol grows a version 2. Decoding never panics and rejects
//! trailing bytes.
//!
//! Pure data; no threading concerns.

use sibyl_coding::ByteReader;
use sibyl_protocol::{
    Compaction, ConflictMode, Consistency, ConsistencyLevel, Placement, TableOptions,
};

/// Magic of the metadata bytes.
const MAGIC: [u8; 4] = *b"STBL";
/// Format version written.
const VERSION: u8 = 1;
/// Longest table name accepted (bytes).
pub const MAX_TABLE_NAME_LEN: usize = 128;
/// Largest replication factor accepted (a sanity bound, not a cluster limit).
pub const MAX_REPLICATION_FACTOR: u16 = 64;

/// A table: its name and options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Its options, as the client gave them at creation.
    pub options: TableOptions,
}

/// Why a table name or options were refused.
pub fn validate(name: &str, options: &TableOptions) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_TABLE_NAME_LEN {
        return Err(format!(
            "table name must be 1..={MAX_TABLE_NAME_LEN} bytes, got {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "table name {name:?} may only hold ASCII letters, digits, '_' and '-'"
        ));
    }
    let rf = options.replication_factor;
    if rf == 0 || rf > MAX_REPLICATION_FACTOR {
        return Err(format!(
            "replication factor must be 1..={MAX_REPLICATION_FACTOR}, got {rf}"
        ));
    }
    for c in [options.read_consistency, options.write_consistency] {
        if c.level == ConsistencyLevel::Explicit(0) {
            return Err("explicit consistency must name at least 1 replica".into());
        }
    }
    if let Placement::DcAware(dcs) = &options.placement {
        if dcs.is_empty() {
            return Err("dc-aware placement needs at least one datacenter".into());
        }
        if dcs.iter().any(|(dc, _)| dc.is_empty() || dc.len() > 255) {
            return Err("datacenter names must be 1..=255 bytes".into());
        }
    }
    Ok(())
}

impl TableSchema {
    /// Encodes the schema's options as engine metadata (the name is the engine's).
    pub fn encode_metadata(&self) -> Vec<u8> {
        let o = &self.options;
        let mut b = Vec::with_capacity(32);
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&o.replication_factor.to_be_bytes());
        put_consistency(&mut b, o.read_consistency);
        put_consistency(&mut b, o.write_consistency);
        b.push(match o.conflict_mode {
            ConflictMode::Causal => 0,
            ConflictMode::Lww => 1,
        });
        match o.default_ttl_secs {
            None => b.push(0),
            Some(t) => {
                b.push(1);
                b.extend_from_slice(&t.to_be_bytes());
            }
        }
        b.push(match o.compaction {
            Compaction::SizeTiered => 0,
            Compaction::Leveled => 1,
        });
        match &o.placement {
            Placement::Simple => b.push(0),
            Placement::RackAware => b.push(1),
            Placement::DcAware(dcs) => {
                b.push(2);
                let n = u16::try_from(dcs.len()).unwrap_or(u16::MAX);
                b.extend_from_slice(&n.to_be_bytes());
                for (dc, replicas) in dcs.iter().take(usize::from(n)) {
                    let name = &dc.as_bytes()[..dc.len().min(usize::from(u16::MAX))];
                    b.extend_from_slice(&(name.len() as u16).to_be_bytes());
                    b.extend_from_slice(name);
                    b.extend_from_slice(&replicas.to_be_bytes());
                }
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes metadata written by [`TableSchema::encode_metadata`].
    pub fn decode_metadata(name: &str, bytes: &[u8]) -> Result<TableSchema, SchemaDecodeError> {
        let body_len = bytes.len().checked_sub(4).ok_or(SchemaDecodeError {
            reason: "too short",
        })?;
        let (body, crc) = bytes.split_at(body_len);
        let mut crc_bytes = [0u8; 4];
        crc_bytes.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_be_bytes(crc_bytes) {
            return Err(SchemaDecodeError {
                reason: "checksum mismatch",
            });
        }
        let mut r = ByteReader::new(body);
        if r.take(4).ok_or(TRUNCATED)? != MAGIC {
            return Err(SchemaDecodeError {
                reason: "bad magic",
            });
        }
        if r.u8().ok_or(TRUNCATED)? != VERSION {
            return Err(SchemaDecodeError {
                reason: "unknown version",
            });
        }
        let replication_factor = r.u16_be().ok_or(TRUNCATED)?;
        let read_consistency = decode_consistency(&mut r)?;
        let write_consistency = decode_consistency(&mut r)?;
        let conflict_mode = match r.u8().ok_or(TRUNCATED)? {
            0 => ConflictMode::Causal,
            1 => ConflictMode::Lww,
            _ => return Err(bad("conflict mode")),
        };
        let default_ttl_secs = match r.u8().ok_or(TRUNCATED)? {
            0 => None,
            1 => Some(r.u32_be().ok_or(TRUNCATED)?),
            _ => return Err(bad("ttl flag")),
        };
        let compaction = match r.u8().ok_or(TRUNCATED)? {
            0 => Compaction::SizeTiered,
            1 => Compaction::Leveled,
            _ => return Err(bad("compaction")),
        };
        let placement = match r.u8().ok_or(TRUNCATED)? {
            0 => Placement::Simple,
            1 => Placement::RackAware,
            2 => {
                let n = r.u16_be().ok_or(TRUNCATED)?;
                let mut dcs = Vec::new();
                for _ in 0..n {
                    let len = usize::from(r.u16_be().ok_or(TRUNCATED)?);
                    let dc = std::str::from_utf8(r.take(len).ok_or(TRUNCATED)?)
                        .map_err(|_| bad("datacenter name"))?
                        .to_owned();
                    dcs.push((dc, r.u16_be().ok_or(TRUNCATED)?));
                }
                Placement::DcAware(dcs)
            }
            _ => return Err(bad("placement")),
        };
        if !r.is_empty() {
            return Err(SchemaDecodeError {
                reason: "trailing bytes",
            });
        }
        Ok(TableSchema {
            name: name.to_owned(),
            options: TableOptions {
                replication_factor,
                read_consistency,
                write_consistency,
                conflict_mode,
                default_ttl_secs,
                compaction,
                placement,
            },
        })
    }
}

/// Stored table metadata that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt table metadata: {reason}")]
pub struct SchemaDecodeError {
    /// What was wrong.
    pub reason: &'static str,
}

fn bad(reason: &'static str) -> SchemaDecodeError {
    SchemaDecodeError { reason }
}

fn put_consistency(b: &mut Vec<u8>, c: Consistency) {
    let (level, n) = match c.level {
        ConsistencyLevel::One => (1, 0),
        ConsistencyLevel::Two => (2, 0),
        ConsistencyLevel::Three => (3, 0),
        ConsistencyLevel::Quorum => (4, 0),
        ConsistencyLevel::All => (5, 0),
        ConsistencyLevel::LocalQuorum => (6, 0),
        ConsistencyLevel::Explicit(n) => (7, n),
    };
    b.push(level);
    b.extend_from_slice(&n.to_be_bytes());
    b.push(c.mode_byte());
}

/// A read past the end of the metadata.
const TRUNCATED: SchemaDecodeError = SchemaDecodeError {
    reason: "truncated",
};

fn decode_consistency(r: &mut ByteReader<'_>) -> Result<Consistency, SchemaDecodeError> {
    let level = r.u8().ok_or(TRUNCATED)?;
    let n = r.u16_be().ok_or(TRUNCATED)?;
    let level = match level {
        1 => ConsistencyLevel::One,
        2 => ConsistencyLevel::Two,
        3 => ConsistencyLevel::Three,
        4 => ConsistencyLevel::Quorum,
        5 => ConsistencyLevel::All,
        6 => ConsistencyLevel::LocalQuorum,
        7 => ConsistencyLevel::Explicit(n),
        _ => return Err(bad("consistency level")),
    };
    let (mode, read_repair) =
        Consistency::modes_of(r.u8().ok_or(TRUNCATED)?).ok_or(bad("quorum mode"))?;
    Ok(Consistency {
        level,
        mode,
        read_repair,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TableSchema {
        TableSchema {
            name: "t".into(),
            options: TableOptions {
                replication_factor: 3,
                read_consistency: Consistency::explicit(2).strict(),
                write_consistency: Consistency::ALL,
                conflict_mode: ConflictMode::Lww,
                default_ttl_secs: Some(60),
                compaction: Compaction::Leveled,
                placement: Placement::DcAware(vec![("east".into(), 2), ("west".into(), 1)]),
            },
        }
    }

    #[test]
    fn schema_metadata_round_trips() {
        for s in [
            sample(),
            TableSchema {
                name: "d".into(),
                options: TableOptions::default(),
            },
        ] {
            let bytes = s.encode_metadata();
            assert_eq!(TableSchema::decode_metadata(&s.name, &bytes).unwrap(), s);
        }
    }

    #[test]
    fn schema_metadata_matches_documented_example() {
        let s = TableSchema {
            name: "t".into(),
            options: TableOptions {
                replication_factor: 1,
                read_consistency: Consistency::ONE,
                write_consistency: Consistency::ONE,
                ..TableOptions::default()
            },
        };
        let bytes = s.encode_metadata();
        let body = [
            0x53, 0x54, 0x42, 0x4c, 0x01, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(&bytes[..body.len()], &body);
        assert_eq!(bytes.len(), body.len() + 4);
    }

    #[test]
    fn schema_metadata_every_truncation_and_bit_flip_is_refused() {
        let bytes = sample().encode_metadata();
        for n in 0..bytes.len() {
            assert!(TableSchema::decode_metadata("t", &bytes[..n]).is_err());
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(TableSchema::decode_metadata("t", &b).is_err(), "bit {i}");
        }
    }

    #[test]
    fn schema_validate_refuses_bad_names_and_rf() {
        let o = TableOptions::default();
        assert!(validate("users_1-x", &o).is_ok());
        assert!(validate("", &o).is_err());
        assert!(validate("a b", &o).is_err());
        assert!(validate(&"x".repeat(MAX_TABLE_NAME_LEN + 1), &o).is_err());
        let zero = TableOptions {
            replication_factor: 0,
            ..TableOptions::default()
        };
        assert!(validate("t", &zero).is_err());
    }
}
