//! Cells as written ([`ColumnWrite`], [`CellContext`]) and as read ([`Cell`] with its
//! [`Sibling`] versions and opaque context). Pure data with its wire encoding.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::wire::{WireReader, WireWriter};

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
}
