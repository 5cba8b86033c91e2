//! [`Row`] and [`Page`]: what reads return to a client user. A row keeps each cell's
//! opaque context, so a later write built with `context_from(&row)` supersedes exactly
//! what was read without the caller touching context bytes.

use bytes::Bytes;

use crate::message::types::{Cell, ResponseMeta};

/// The cells of one row that a read returned, with the response metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Partition key.
    pub key: Bytes,
    /// Cells sorted by column name (as the server sends them).
    pub cells: Vec<Cell>,
    /// Which replicas answered, whether read repair ran.
    pub meta: ResponseMeta,
}

impl Row {
    /// The cell named `name`.
    pub fn cell(&self, name: impl AsRef<[u8]>) -> Option<&Cell> {
        let name = name.as_ref();
        match self.cells.binary_search_by(|c| c.name.as_ref().cmp(name)) {
            Ok(i) => self.cells.get(i),
            // Not sorted as promised: fall back to a scan rather than miss the cell.
            Err(_) => self.cells.iter().find(|c| c.name.as_ref() == name),
        }
    }

    /// The value of `name` when it has exactly one live version.
    pub fn value(&self, name: impl AsRef<[u8]>) -> Option<&Bytes> {
        self.cell(name).and_then(Cell::value)
    }

    /// Every live version of `name` (more than one after concurrent writes).
    pub fn values(&self, name: impl AsRef<[u8]>) -> Vec<&Bytes> {
        self.cell(name)
            .map(|c| c.values().collect())
            .unwrap_or_default()
    }

    /// The opaque context of `name`.
    pub fn context(&self, name: impl AsRef<[u8]>) -> Option<&Bytes> {
        self.cell(name).map(|c| &c.context)
    }

    /// True when the read found no cells.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Iterates over the cells in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Cell> {
        self.cells.iter()
    }
}

impl<'a> IntoIterator for &'a Row {
    type Item = &'a Cell;
    type IntoIter = std::slice::Iter<'a, Cell>;

    fn into_iter(self) -> Self::IntoIter {
        self.cells.iter()
    }
}

/// One page of a column slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The cells of this page.
    pub row: Row,
    /// Token for the next page; `None` when the slice is exhausted.
    pub next_page: Option<Bytes>,
}

impl Page {
    /// True when another page follows.
    pub fn has_more(&self) -> bool {
        self.next_page.is_some()
    }
}
