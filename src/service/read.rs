//! GET: turns stored cells into the protocol's [`Cell`]s (siblings + opaque context) for
//! the three selectors (all columns, named columns, a slice with paging).
//!
//! Rules:
//! - A causal cell whose siblings are all tombstones (or expired) is omitted; a cell with
//!   live and tombstone siblings is returned with both, so its context covers the delete.
//! - An lww cell is one sibling; its context is empty (lww writes take none).
//! - The row's tombstone ([`crate::versioning::row_tombstone`]) is applied to every cell
//!   read: causal siblings it covers are not shown, and a causal cell's context includes
//!   what the tombstone saw (so a write with it survives the delete on every replica); an
//!   lww cell at or below its timestamp is not shown.
//! - A slice returns at most `limit` cells (0 = [`DEFAULT_PAGE_SIZE`], capped at
//!   [`MAX_PAGE_SIZE`]) and at most [`MAX_RESPONSE_BYTES`] of cells (names, contexts,
//!   values: [`cell_bytes`]); a cell that would take the page past that budget starts
//!   the next page, unless the page is empty (a cell is never split). When more remain
//!   it returns a paging token.
//! - Reading a whole row ([`Selector::All`]) that exceeds those bounds is refused with
//!   `Invalid` (read it with slices instead), so one response never outgrows a frame.
//!
//! # Paging token format (version 1)
//! ```text
//! token = 0x53 0x50 0x01 column crc
//! crc   = CRC-32 (IEEE) of (table | 0x00 | partition key | 0x00 | column), u32be
//! ```
//! The token is the last column returned; the next page starts strictly after it. The
//! checksum binds it to its table and row: a token forged, damaged or replayed against
//! another row is refused with `Invalid`.

use std::ops::Bound;

use bytes::Bytes;
use sibyl_protocol::{Cell, ConflictMode, Consistency, Response, Selector, ServerError, Sibling};

use super::keys::{RowPrefix, MAX_COLUMN_NAME_LEN, MAX_PARTITION_KEY_LEN};
use super::schema::TableSchema;
use super::{invalid, storage_error, Service};
use crate::replica::row_tombstone::context_with_tombstone;
use crate::versioning::{decode_causal_cell, LwwCell, RowTombstone};

/// Cells of a slice page when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// Most cells one page returns.
pub const MAX_PAGE_SIZE: u32 = 100_000;
/// Most stored cells (live or deleted) one page steps over before it returns a token.
pub const MAX_SCANNED_PER_PAGE: usize = 100_000;
/// A page holds at most this many bytes of cells (well under the 16 MiB frame cap);
/// only a page of one cell may hold more.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

const PAGING_MAGIC: [u8; 3] = [0x53, 0x50, 0x01];

/// Validates a partition key.
pub(crate) fn check_key(key: &[u8]) -> Result<(), ServerError> {
    if key.is_empty() {
        return Err(invalid("the partition key is empty"));
    }
    if key.len() > MAX_PARTITION_KEY_LEN {
        return Err(invalid(format!(
            "partition key of {} bytes exceeds the limit of {MAX_PARTITION_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// Validates a column name.
pub(crate) fn check_column(name: &[u8]) -> Result<(), ServerError> {
    if name.is_empty() {
        return Err(invalid("a column name is empty"));
    }
    if name.len() > MAX_COLUMN_NAME_LEN {
        return Err(invalid(format!(
            "column name of {} bytes exceeds the limit of {MAX_COLUMN_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

/// The `Invalid` answer to named columns holding more than one response may carry.
pub(crate) fn columns_too_large() -> ServerError {
    invalid(format!(
        "the columns asked for hold over {MAX_RESPONSE_BYTES} bytes; ask for fewer"
    ))
}

/// The `Invalid` answer to a whole-row read larger than one response may carry.
pub(crate) fn row_too_large() -> ServerError {
    invalid(format!(
        "row is too large for one response (over {MAX_PAGE_SIZE} cells or \
         {MAX_RESPONSE_BYTES} bytes); read it with a slice"
    ))
}

/// Where a slice starts: the later of `from` (inclusive) and the paging token's column
/// (exclusive); `Invalid` for a bad column or a token not made for this row.
pub(crate) fn slice_start<'a>(
    table: &str,
    key: &[u8],
    from: Option<&'a [u8]>,
    paging: Option<&'a [u8]>,
) -> Result<Bound<&'a [u8]>, ServerError> {
    if let Some(f) = from {
        check_column(f)?;
    }
    let after = match paging {
        Some(t) => Some(decode_paging_token(table, key, t)?),
        None => None,
    };
    Ok(match (from, after) {
        (Some(f), Some(a)) if f > a => Bound::Included(f),
        (_, Some(a)) => Bound::Excluded(a),
        (Some(f), None) => Bound::Included(f),
        (None, None) => Bound::Unbounded,
    })
}

/// The cells a slice page holds at most: the request's limit, 0 meaning
/// [`DEFAULT_PAGE_SIZE`], capped at [`MAX_PAGE_SIZE`].
pub(crate) fn page_limit(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

fn paging_crc(table: &str, key: &[u8], column: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(table.as_bytes());
    h.update(&[0]);
    h.update(key);
    h.update(&[0]);
    h.update(column);
    h.finalize()
}

/// The paging token resuming after `column`.
pub fn encode_paging_token(table: &str, key: &[u8], column: &[u8]) -> Bytes {
    let mut t = Vec::with_capacity(PAGING_MAGIC.len() + column.len() + 4);
    t.extend_from_slice(&PAGING_MAGIC);
    t.extend_from_slice(column);
    t.extend_from_slice(&paging_crc(table, key, column).to_be_bytes());
    Bytes::from(t)
}

/// The column a paging token resumes after; `Invalid` unless it was made for this row.
pub fn decode_paging_token<'a>(
    table: &str,
    key: &[u8],
    token: &'a [u8],
) -> Result<&'a [u8], ServerError> {
    let bad = || invalid("invalid paging token");
    let rest = token.strip_prefix(&PAGING_MAGIC[..]).ok_or_else(bad)?;
    let split = rest.len().checked_sub(4).ok_or_else(bad)?;
    let (column, crc) = rest.split_at(split);
    let mut c = [0u8; 4];
    c.copy_from_slice(crc);
    if column.is_empty() || u32::from_be_bytes(c) != paging_crc(table, key, column) {
        return Err(bad());
    }
    Ok(column)
}

/// The client's view of a stored cell, or `None` when nothing live remains.
pub(crate) fn cell_from_stored(
    mode: ConflictMode,
    name: Bytes,
    stored: &[u8],
    now_secs: u64,
    row_tombstone: Option<&RowTombstone>,
) -> Result<Option<Cell>, ServerError> {
    let ttl_left = |expires: Option<u64>| {
        expires.map(|t| u32::try_from(t.saturating_sub(now_secs)).unwrap_or(u32::MAX))
    };
    match mode {
        ConflictMode::Causal => {
            let mut dvv = decode_causal_cell(stored)
                .map_err(super::versioning_error)?
                .without_expired(now_secs);
            if let Some(left) = row_tombstone.and_then(|t| t.remove_covered(&dvv)) {
                dvv = left;
            }
            if dvv.is_all_tombstones() {
                return Ok(None);
            }
            let siblings = dvv
                .shown_values()
                .into_iter()
                .map(|s| Sibling {
                    value: s.value.as_ref().map(|v| Bytes::copy_from_slice(v)),
                    timestamp_micros: s.timestamp_micros,
                    ttl_secs: ttl_left(s.expires_at_secs),
                })
                .collect();
            Ok(Some(Cell {
                name,
                siblings,
                context: Bytes::from(context_with_tombstone(&dvv, row_tombstone).encode()),
            }))
        }
        ConflictMode::Lww => {
            let cell = LwwCell::decode(stored).map_err(super::versioning_error)?;
            if cell.is_tombstone()
                || cell.is_expired(now_secs)
                || row_tombstone.is_some_and(|t| t.covers_lww(&cell))
            {
                return Ok(None);
            }
            Ok(Some(Cell {
                name,
                siblings: vec![Sibling {
                    value: cell.value.map(Bytes::from),
                    timestamp_micros: cell.timestamp_micros,
                    ttl_secs: ttl_left(cell.expires_at_secs),
                }],
                context: Bytes::new(),
            }))
        }
    }
}

/// True when `cell` may join a page already holding `bytes` of cells: within
/// [`MAX_RESPONSE_BYTES`], or the page's first cell whatever its size.
pub(crate) fn fits_page(bytes: usize, cell: &Cell, page_empty: bool) -> bool {
    page_empty || bytes.saturating_add(cell_bytes(cell)) <= MAX_RESPONSE_BYTES
}

/// The bytes a cell counts for against a page's budget.
pub(crate) fn cell_bytes(cell: &Cell) -> usize {
    cell.name.len()
        + cell.context.len()
        + cell
            .siblings
            .iter()
            .map(|s| 16 + s.value.as_ref().map_or(0, Bytes::len))
            .sum::<usize>()
}

impl Service {
    /// GET of one row.
    pub(crate) fn get(
        &self,
        table: &str,
        key: &[u8],
        selector: &Selector,
        consistency: Option<Consistency>,
    ) -> Result<Response, ServerError> {
        let schema = self.schema(table)?;
        check_key(key)?;
        self.check_consistency(&schema, consistency, schema.options.read_consistency)?;
        let prefix = RowPrefix::new(self.opts.partitioner, key);
        let now = self.clock.now_secs();
        let (cells, next_page) = match selector {
            Selector::Columns(names) => (self.get_columns(&schema, &prefix, names, now)?, None),
            Selector::All => {
                let (cells, more) =
                    self.scan_row(&schema, &prefix, Bound::Unbounded, None, MAX_PAGE_SIZE, now)?;
                if more.is_some() {
                    return Err(row_too_large());
                }
                (cells, None)
            }
            Selector::Slice {
                from,
                to,
                limit,
                paging,
            } => {
                let lower = slice_start(table, key, from.as_deref(), paging.as_deref())?;
                let limit = page_limit(*limit);
                let (cells, more) =
                    self.scan_row(&schema, &prefix, lower, to.as_deref(), limit, now)?;
                let next = more.map(|last| encode_paging_token(table, key, &last));
                (cells, next)
            }
        };
        Ok(Response::Row {
            cells,
            next_page,
            meta: self.meta(),
        })
    }

    fn get_columns(
        &self,
        schema: &TableSchema,
        prefix: &RowPrefix,
        names: &[Bytes],
        now: u64,
    ) -> Result<Vec<Cell>, ServerError> {
        let mut names: Vec<&Bytes> = names.iter().collect();
        for n in &names {
            check_column(n)?;
        }
        names.sort_unstable();
        names.dedup();
        let mut cells = Vec::with_capacity(names.len());
        let mut bytes = 0usize;
        // Read only once a cell is found: a row tombstone changes nothing about cells
        // that are absent, so a read of missing columns costs no extra engine get.
        let mut tomb: Option<Option<RowTombstone>> = None;
        for name in names {
            // The raw merged entry: cell_from_stored filters tombstones and expired
            // siblings itself, so the engine's read filter would only decode it twice.
            let stored = self
                .replica
                .read_raw(&schema.name, &prefix.cell_key(name))?;
            if let Some(stored) = stored {
                let tomb = match &tomb {
                    Some(t) => t,
                    None => tomb.insert(
                        self.replica
                            .row_tombstone(&schema.name, prefix.as_bytes())?,
                    ),
                };
                if let Some(cell) = cell_from_stored(
                    schema.options.conflict_mode,
                    name.clone(),
                    &stored,
                    now,
                    tomb.as_ref(),
                )? {
                    bytes += cell_bytes(&cell);
                    if bytes > MAX_RESPONSE_BYTES {
                        return Err(columns_too_large());
                    }
                    cells.push(cell);
                }
            }
        }
        Ok(cells)
    }

    /// Scans the row's columns from `lower` to `to` (exclusive); returns up to `limit`
    /// cells and, when more remain, the last column returned.
    fn scan_row(
        &self,
        schema: &TableSchema,
        prefix: &RowPrefix,
        lower: Bound<&[u8]>,
        to: Option<&[u8]>,
        limit: u32,
        now: u64,
    ) -> Result<(Vec<Cell>, Option<Vec<u8>>), ServerError> {
        let lower_key = match lower {
            Bound::Included(c) => Bound::Included(prefix.cell_key(c)),
            Bound::Excluded(c) => Bound::Excluded(prefix.cell_key(c)),
            Bound::Unbounded => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let upper_key = match to {
            Some(t) => Some(prefix.cell_key(t)),
            None => prefix.upper_bound(),
        };
        let mut iter = self.replica.scan(
            &schema.name,
            lower_key.as_ref().map(Vec::as_slice),
            match &upper_key {
                Some(u) => Bound::Excluded(u.as_slice()),
                None => Bound::Unbounded,
            },
        )?;
        let mut cells = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut last_scanned: Vec<u8> = Vec::new();
        // A scan from the row's start meets the row tombstone first; otherwise read it.
        let mut tomb = match lower {
            Bound::Unbounded => None,
            _ => self
                .replica
                .row_tombstone(&schema.name, prefix.as_bytes())?,
        };
        while let Some((k, v)) = iter.next_entry().map_err(storage_error)? {
            let Some(column) = prefix.column_of(k) else {
                if k == prefix.as_bytes() {
                    tomb = Some(RowTombstone::decode(v).map_err(super::versioning_error)?);
                }
                continue;
            };
            let full = cells.len() >= limit as usize;
            if full {
                let last = cells
                    .last()
                    .map(|c: &Cell| c.name.to_vec())
                    .unwrap_or_default();
                return Ok((cells, Some(last)));
            }
            // Deleted cells are skipped but still cost a step: bound the steps per page so
            // a row full of tombstones cannot keep a worker busy; the token resumes after
            // the last cell looked at.
            if scanned >= MAX_SCANNED_PER_PAGE {
                return Ok((cells, Some(last_scanned)));
            }
            scanned += 1;
            last_scanned.clear();
            last_scanned.extend_from_slice(column);
            let name = Bytes::copy_from_slice(column);
            if let Some(cell) =
                cell_from_stored(schema.options.conflict_mode, name, v, now, tomb.as_ref())?
            {
                if !fits_page(bytes, &cell, cells.is_empty()) {
                    // This cell starts the next page: resume after the last one returned.
                    let last = cells.last().map(|c| c.name.to_vec()).unwrap_or_default();
                    return Ok((cells, Some(last)));
                }
                bytes += cell_bytes(&cell);
                cells.push(cell);
            }
        }
        Ok((cells, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_token_round_trips_for_its_row_only() {
        let t = encode_paging_token("t", b"k", b"col");
        assert_eq!(decode_paging_token("t", b"k", &t).unwrap(), b"col");
        assert!(decode_paging_token("t", b"other", &t).is_err());
        assert!(decode_paging_token("u", b"k", &t).is_err());
    }

    #[test]
    fn paging_token_damage_is_invalid() {
        let t = encode_paging_token("t", b"k", b"col").to_vec();
        for i in 0..t.len() * 8 {
            let mut b = t.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode_paging_token("t", b"k", &b).is_err(), "bit {i}");
        }
        for n in 0..t.len() {
            assert!(decode_paging_token("t", b"k", &t[..n]).is_err());
        }
    }
}
