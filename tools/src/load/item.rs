//! What the input parsers produce: numbered [`Item`]s, each a [`LoadRow`] to write or a
//! [`Reject`] with its reason; the [`RowLimits`] every row is checked against before it
//! is sent; and the [`ItemDigest`] that lets `--resume` prove it is reading the same input.
//!
//! Numbering: items are numbered 1, 2, 3, ... in the order the parser emits them, which
//! depends only on the input bytes and the parse options. The checkpoint's watermark and
//! the write ids (`load_id << 64 | number`) are both in these numbers, so a resumed load
//! must number its input exactly as the first run did; the digest checks that it does.

use bytes::Bytes;

/// The largest partition key the protocol accepts (spec section 7).
pub const MAX_KEY_BYTES: usize = 16_384;
/// The largest column name the protocol accepts (spec section 7).
pub const MAX_COLUMN_NAME_BYTES: usize = 16_384;
/// A node's default cell value limit (`--max-value-kb` 1024; spec section 7).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1_048_576;
/// The largest row (its encoded mutation) the loader sends: the 16 MiB frame cap less
/// 64 KiB for the frame header, the BATCH envelope and the per-field length prefixes
/// that [`row_payload_bytes`] only estimates.
pub const MAX_ROW_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;
/// Bytes a mutation costs on the wire besides its key, names and values: the mutation
/// tag, table name prefix, key prefix, ttl, timestamp, 16-byte write id and column count
/// (spec section 6, `row-insert`); the table name itself is added by the caller.
const MUTATION_OVERHEAD_BYTES: usize = 48;
/// Wire bytes of one column-write besides its name and value: three `u32` length
/// prefixes (name, value, empty context).
const COLUMN_OVERHEAD_BYTES: usize = 12;

/// Column names and values of a row.
pub type Columns = Vec<(Bytes, Bytes)>;

/// Why a row cannot be sent: the reject kind and a sentence.
pub type Refusal = (RejectKind, String);

/// One row to write: a key and its columns (each named once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRow {
    /// The item number (1-based, input order).
    pub number: u64,
    /// The input line the row starts on (1-based).
    pub line: u64,
    /// Partition key.
    pub key: Bytes,
    /// Column names and values.
    pub columns: Columns,
}

impl LoadRow {
    /// Bytes of keys, names and values: what the report counts as loaded bytes.
    pub fn data_bytes(&self) -> u64 {
        let cols: usize = self.columns.iter().map(|(n, v)| n.len() + v.len()).sum();
        (self.key.len() + cols) as u64
    }
}

/// The wire size of `row` as one mutation of a BATCH to a table named `table_len` bytes
/// long (an upper bound used for batch sizing and the oversize check).
pub fn row_payload_bytes(key: &[u8], columns: &[(Bytes, Bytes)], table_len: usize) -> usize {
    let cols: usize = columns
        .iter()
        .map(|(n, v)| n.len() + v.len() + COLUMN_OVERHEAD_BYTES)
        .sum();
    MUTATION_OVERHEAD_BYTES + table_len + key.len() + cols
}

/// Why a row was not loaded. The names are those of the rejects file and the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectKind {
    /// The record does not parse, or is not a row (wrong field count, no key, no
    /// column, a column named twice, invalid JSON).
    Malformed,
    /// A key, column name, value or the whole row is over the protocol's limits.
    Oversize,
    /// The node refused the write (`INVALID`, `TOO_MANY_SIBLINGS`, `SERVER`, ...).
    Refused,
    /// The write still failed after every retry (timeouts, unavailable, connection
    /// lost): it may or may not have been applied.
    Failed,
}

impl RejectKind {
    /// Every kind, in report order.
    pub const ALL: [RejectKind; 4] = [
        RejectKind::Malformed,
        RejectKind::Oversize,
        RejectKind::Refused,
        RejectKind::Failed,
    ];

    /// `malformed`, `oversize`, `refused` or `failed`.
    pub fn name(self) -> &'static str {
        match self {
            RejectKind::Malformed => "malformed",
            RejectKind::Oversize => "oversize",
            RejectKind::Refused => "refused",
            RejectKind::Failed => "failed",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<RejectKind> {
        RejectKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn code(self) -> u8 {
        match self {
            RejectKind::Malformed => 1,
            RejectKind::Oversize => 2,
            RejectKind::Refused => 3,
            RejectKind::Failed => 4,
        }
    }
}

/// A row that was not loaded, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The item number.
    pub number: u64,
    /// The input line it starts on.
    pub line: u64,
    /// Why, in one word.
    pub kind: RejectKind,
    /// Why, in a sentence.
    pub reason: String,
    /// The record as read (a CSV line, a JSON line), or for a row that failed to write,
    /// its columns as a JSON object; lossy UTF-8.
    pub record: String,
}

/// One numbered unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A row to write.
    Row(LoadRow),
    /// A record rejected while parsing.
    Reject(Reject),
}

impl Item {
    /// The item number.
    pub fn number(&self) -> u64 {
        match self {
            Item::Row(r) => r.number,
            Item::Reject(r) => r.number,
        }
    }
}

/// The limits a row is checked against before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLimits {
    /// Largest value (`--max-value-bytes`, the node's `--max-value-kb`).
    pub max_value_bytes: usize,
    /// Length of the table name (counted in every mutation).
    pub table_len: usize,
}

impl RowLimits {
    /// Checks a row: `Err((kind, reason))` when it cannot be sent as it is.
    pub fn check(
        &self,
        key: &[u8],
        columns: &[(Bytes, Bytes)],
    ) -> Result<(), (RejectKind, String)> {
        if key.is_empty() {
            return Err((RejectKind::Malformed, "empty key".into()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err((
                RejectKind::Oversize,
                format!(
                    "key of {} bytes, over the limit of {MAX_KEY_BYTES}",
                    key.len()
                ),
            ));
        }
        if columns.is_empty() {
            return Err((RejectKind::Malformed, "no column to write".into()));
        }
        for (name, value) in columns {
            if name.is_empty() {
                return Err((RejectKind::Malformed, "empty column name".into()));
            }
            if name.len() > MAX_COLUMN_NAME_BYTES {
                return Err((
                    RejectKind::Oversize,
                    format!(
                        "column name of {} bytes, over the limit of {MAX_COLUMN_NAME_BYTES}",
                        name.len()
                    ),
                ));
            }
            if value.len() > self.max_value_bytes {
                return Err((
                    RejectKind::Oversize,
                    format!(
                        "column {}: value of {} bytes, over the limit of {}",
                        String::from_utf8_lossy(name),
                        value.len(),
                        self.max_value_bytes
                    ),
                ));
            }
        }
        let size = row_payload_bytes(key, columns, self.table_len);
        if size > MAX_ROW_BYTES {
            return Err((
                RejectKind::Oversize,
                format!("row of {size} bytes, over the limit of {MAX_ROW_BYTES} for one request"),
            ));
        }
        Ok(())
    }
}

/// A running CRC-32 over the items read so far: each item's number, then a row's key,
/// names and values (length-prefixed), or a reject's kind and reason. The value after
/// item `n` is stored with the checkpoint whose watermark is `n`.
#[derive(Debug, Clone, Default)]
pub struct ItemDigest {
    hasher: crc32fast::Hasher,
    /// The item's bytes, gathered so the hasher sees one long update (its fast path)
    /// rather than many small ones.
    buf: Vec<u8>,
}

impl ItemDigest {
    /// Adds one item.
    pub fn add(&mut self, item: &Item) {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&item.number().to_be_bytes());
        match item {
            Item::Row(row) => {
                b.push(0);
                for part in
                    std::iter::once(&row.key).chain(row.columns.iter().flat_map(|(n, v)| [n, v]))
                {
                    b.extend_from_slice(&(part.len() as u64).to_be_bytes());
                    b.extend_from_slice(part);
                }
            }
            Item::Reject(r) => {
                b.push(r.kind.code());
                b.extend_from_slice(r.reason.as_bytes());
            }
        }
        self.hasher.update(b);
    }

    /// The digest of the items added so far (0 for none).
    pub fn value(&self) -> u32 {
        self.hasher.clone().finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(pairs: &[(&str, &str)]) -> Vec<(Bytes, Bytes)> {
        pairs
            .iter()
            .map(|(n, v)| (Bytes::from(n.to_string()), Bytes::from(v.to_string())))
            .collect()
    }

    #[test]
    fn row_limits_reject_each_limit_with_its_kind() {
        let limits = RowLimits {
            max_value_bytes: 4,
            table_len: 1,
        };
        assert_eq!(limits.check(b"k", &cols(&[("a", "1234")])), Ok(()));
        assert_eq!(
            limits.check(b"", &cols(&[("a", "1")])).map_err(|e| e.0),
            Err(RejectKind::Malformed)
        );
        assert_eq!(
            limits.check(b"k", &[]).map_err(|e| e.0),
            Err(RejectKind::Malformed)
        );
        let err = limits.check(b"k", &cols(&[("a", "12345")]));
        assert!(
            matches!(&err, Err((RejectKind::Oversize, r)) if r.contains("value of 5 bytes")),
            "{err:?}"
        );
        let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
        assert_eq!(
            limits
                .check(&long_key, &cols(&[("a", "1")]))
                .map_err(|e| e.0),
            Err(RejectKind::Oversize)
        );
    }

    #[test]
    fn item_digest_depends_on_every_field_and_the_order() {
        let row = |n, v: &str| {
            Item::Row(LoadRow {
                number: n,
                line: n,
                key: Bytes::from_static(b"k"),
                columns: cols(&[("c", v)]),
            })
        };
        let digest = |items: &[Item]| {
            let mut d = ItemDigest::default();
            items.iter().for_each(|i| d.add(i));
            d.value()
        };
        let a = digest(&[row(1, "x"), row(2, "y")]);
        assert_eq!(a, digest(&[row(1, "x"), row(2, "y")]));
        assert_ne!(a, digest(&[row(1, "x"), row(2, "z")]));
        assert_ne!(a, digest(&[row(1, "y"), row(2, "x")]));
        assert_eq!(ItemDigest::default().value(), 0);
    }
}
