//! Ingesting a streamed range: pages of cells that arrive in ring order are written
//! straight into SSTables ([`sibyl_storage::Ingest`]) instead of through the commit log
//! and memtable.
//!
//! The cells are checked one by one as [`Replica::apply`] checks them; one bad cell
//! refuses its page and writes none of it. A range's keys ascend within each of its spans
//! (a range that wraps past the largest token has two, [`super::range`]); a key that does
//! not ascend finishes the current file and starts the next. A finished file is visible
//! to reads at once; its data merges with every other version of its keys by the
//! table's merge policy, as an applied cell would.
//!
//! Ingested cells do not pass the anti-entropy trees' write hook: finishing a file marks
//! the tree groups of its key span building ([`crate::repair::TableTree::invalidate`]),
//! under every stripe lock, and the caller rebuilds them ([`Replica::rebuild_trees`])
//! once its stream is done. Exchanges that need a building group wait for it meanwhile.
//!
//! Threading: a [`RangeIngest`] belongs to one stream; its calls block on disk.

use sibyl_protocol::ConflictMode;
use sibyl_storage::Ingest;

use super::apply::InvalidCell;
use super::{RawCell, Replica, ReplicaError};

/// One stream's ingestion into one table (see the module documentation).
#[derive(Debug)]
pub struct RangeIngest {
    table: String,
    mode: ConflictMode,
    file: Option<OpenFile>,
    /// Cells in files finished so far.
    cells: u64,
}

#[derive(Debug)]
struct OpenFile {
    ingest: Ingest,
    first: Vec<u8>,
    last: Vec<u8>,
}

impl RangeIngest {
    /// An ingestion into `table`, whose conflict mode is `mode`; no file is opened until
    /// the first cell.
    pub fn new(table: &str, mode: ConflictMode) -> RangeIngest {
        RangeIngest {
            table: table.to_owned(),
            mode,
            file: None,
            cells: 0,
        }
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's conflict mode when the ingestion began.
    pub fn mode(&self) -> ConflictMode {
        self.mode
    }

    /// True while cells are in a file not finished yet (not durable, not visible).
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Cells made visible by the files finished so far.
    pub fn cells(&self) -> u64 {
        self.cells
    }
}

impl Replica {
    /// Adds a page of `ingest`'s table, in ring order after the cells added before. Every
    /// cell is checked first against the table's current conflict mode (`mode_of`,
    /// `None` = unknown table); one bad cell refuses the page and adds nothing.
    pub fn ingest_page(
        &self,
        ingest: &mut RangeIngest,
        cells: &[RawCell],
        mode_of: impl Fn(&str) -> Option<ConflictMode>,
    ) -> Result<(), ReplicaError> {
        for (index, c) in cells.iter().enumerate() {
            match mode_of(&c.table) {
                Some(mode) if c.table == ingest.table && mode == ingest.mode => {}
                _ => {
                    return Err(InvalidCell::UnknownTable {
                        index,
                        table: c.table.clone(),
                    }
                    .into())
                }
            }
            self.check_cell(index, c, ingest.mode)?;
        }
        for c in cells {
            if ingest
                .file
                .as_ref()
                .is_some_and(|f| c.key.as_slice() <= f.last.as_slice())
            {
                // The range's second span (it wraps): a new file.
                self.finish_file(ingest)?;
            }
            let file = match &mut ingest.file {
                Some(f) => f,
                None => ingest.file.insert(OpenFile {
                    ingest: self.engine().ingest(&ingest.table)?,
                    first: c.key.clone(),
                    last: Vec::new(),
                }),
            };
            file.ingest.add(&c.key, &c.value)?;
            file.last.clone_from(&c.key);
        }
        Ok(())
    }

    /// Finishes `ingest`'s open file, if any: fsynced and listed in the manifest, visible
    /// to reads, its tree groups marked building. Afterwards every cell added so far is
    /// durable. The ingestion may go on with a new file.
    pub fn finish_ingest(&self, ingest: &mut RangeIngest) -> Result<(), ReplicaError> {
        self.finish_file(ingest)
    }

    fn finish_file(&self, ingest: &mut RangeIngest) -> Result<(), ReplicaError> {
        let Some(file) = ingest.file.take() else {
            return Ok(());
        };
        let report = file.ingest.finish()?;
        ingest.cells += report.entries;
        if let Some(tree) = self.trees().get(&ingest.table) {
            let _all = self.lock_all();
            tree.invalidate(&file.first, &file.last);
        }
        Ok(())
    }
}
