//! Records to rows: the three input formats behind one [`RecordParser`] trait.
//!
//! - [`Format::Csv`] (wide): a header names the columns; `--key` names the key column;
//!   every other field of a record is a column of the row. An empty field is no value
//!   (the column is not written), as `cqlsh COPY FROM` reads it, unless `keep_empty`.
//! - [`Format::LongCsv`]: records `key,column,value` (a header line first unless
//!   `header` is off); consecutive records with the same key form one row (at most
//!   [`LONG_ROW_MAX_CELLS`] cells; a longer run is cut into several rows). A record
//!   naming a column its row already has is rejected on its own. Empty values are
//!   written as empty values (the record is the cell).
//! - [`Format::JsonLines`]: in [`crate::load::jsonl`].
//!
//! CSV is read by the `csv` crate (RFC 4180: quotes, doubled quotes, newlines inside
//! quotes, `\r\n`), as bytes: keys, names and values need not be UTF-8. A record's line
//! is the line it starts on. Only I/O errors end the parse; everything else about a
//! record becomes a [`Reject`].

use std::collections::HashSet;
use std::io::Read;

use bytes::Bytes;

use crate::load::item::{Columns, Item, LoadRow, Reject, RejectKind, RowLimits};

/// The most cells a long-form row gathers before it is cut.
pub const LONG_ROW_MAX_CELLS: usize = 4096;

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header; one record per row.
    Csv,
    /// CSV records `key,column,value`.
    LongCsv,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// `csv`, `long-csv` or `jsonl` (as the flag and the checkpoint spell it).
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::LongCsv => "long-csv",
            Format::JsonLines => "jsonl",
        }
    }
}

/// How records become rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseOptions {
    /// The format.
    pub format: Format,
    /// The key column (CSV) or field (JSON lines); unused by the long form.
    pub key: String,
    /// CSV field delimiter.
    pub delimiter: u8,
    /// Whether a long-form input starts with a header line (skipped).
    pub header: bool,
    /// Write empty CSV fields as empty values instead of skipping them.
    pub keep_empty: bool,
    /// Limits every row is checked against.
    pub limits: RowLimits,
}

/// Failures that end the parse (the input itself cannot be read or has no usable header).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Reading failed (including a corrupt gzip stream).
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// The CSV header cannot be used.
    #[error("bad header: {reason}")]
    Header {
        /// What is wrong with it.
        reason: String,
    },
}

/// A source of numbered items.
pub trait RecordParser: Send {
    /// The next item, `None` at the end of the input.
    fn next_item(&mut self) -> Result<Option<Item>, ParseError>;
}

/// The parser of `options.format` over `reader` (reads the header now for CSV).
pub fn parser(
    options: &ParseOptions,
    reader: Box<dyn Read + Send>,
) -> Result<Box<dyn RecordParser>, ParseError> {
    Ok(match options.format {
        Format::Csv => Box::new(WideCsvParser::new(options, reader)?),
        Format::LongCsv => Box::new(LongCsvParser::new(options, reader)?),
        Format::JsonLines => Box::new(crate::load::jsonl::JsonLinesParser::new(options, reader)),
    })
}

fn csv_reader(
    options: &ParseOptions,
    reader: Box<dyn Read + Send>,
) -> csv::Reader<Box<dyn Read + Send>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(options.delimiter)
        .buffer_capacity(256 * 1024)
        .from_reader(reader)
}

fn csv_error(e: csv::Error) -> ParseError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => ParseError::Io(io),
        other => ParseError::Io(std::io::Error::other(format!("{other:?}"))),
    }
}

/// A record written back as one CSV line (what the rejects file shows).
fn record_text(record: &csv::ByteRecord, delimiter: u8) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let text = match w.write_byte_record(record) {
        Ok(()) => w.into_inner().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    String::from_utf8_lossy(text.strip_suffix(b"\n").unwrap_or(&text)).into_owned()
}

/// Numbers items in emission order.
#[derive(Debug, Default)]
struct Numbering {
    last: u64,
}

impl Numbering {
    fn next(&mut self) -> u64 {
        self.last += 1;
        self.last
    }
}

/// The wide CSV form.
pub struct WideCsvParser {
    reader: csv::Reader<Box<dyn Read + Send>>,
    record: csv::ByteRecord,
    names: Vec<Bytes>,
    key_index: usize,
    options: ParseOptions,
    numbering: Numbering,
}

impl WideCsvParser {
    /// Reads the header; fails when it is missing, lacks the key column, or names a
    /// column twice or not at all.
    pub fn new(options: &ParseOptions, reader: Box<dyn Read + Send>) -> Result<Self, ParseError> {
        let mut reader = csv_reader(options, reader);
        let mut header = csv::ByteRecord::new();
        if !reader.read_byte_record(&mut header).map_err(csv_error)? {
            return Err(ParseError::Header {
                reason: "the input is empty (a CSV input starts with a header line)".into(),
            });
        }
        // Static names: every row and every request shares them without touching a
        // reference count (one atomic counter cloned and dropped by every thread for
        // every cell was the loader's hottest spot). A handful of bytes per load, leaked
        // once.
        let names: Vec<Bytes> = header
            .iter()
            .map(|n| Bytes::from_static(Box::leak(n.to_vec().into_boxed_slice())))
            .collect();
        let mut seen = HashSet::new();
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(ParseError::Header {
                    reason: format!(
                        "field {} of the header is empty (every column needs a name)",
                        i + 1
                    ),
                });
            }
            if !seen.insert(n.clone()) {
                return Err(ParseError::Header {
                    reason: format!("column {:?} is named twice", String::from_utf8_lossy(n)),
                });
            }
        }
        let key_index = names
            .iter()
            .position(|n| n.as_ref() == options.key.as_bytes())
            .ok_or_else(|| ParseError::Header {
                reason: format!(
                    "no key column {:?} in the header ({}); name it with --key",
                    options.key,
                    names
                        .iter()
                        .map(|n| String::from_utf8_lossy(n).into_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            })?;
        Ok(WideCsvParser {
            reader,
            record: csv::ByteRecord::new(),
            names,
            key_index,
            options: options.clone(),
            numbering: Numbering::default(),
        })
    }
}

impl RecordParser for WideCsvParser {
    fn next_item(&mut self) -> Result<Option<Item>, ParseError> {
        if !self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(csv_error)?
        {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let number = self.numbering.next();
        let reject = |kind, reason: String, record: &csv::ByteRecord, delim| {
            Ok(Some(Item::Reject(Reject {
                number,
                line,
                kind,
                reason,
                record: record_text(record, delim),
            })))
        };
        let delim = self.options.delimiter;
        if self.record.len() != self.names.len() {
            let reason = format!(
                "expected {} fields as in the header, found {}",
                self.names.len(),
                self.record.len()
            );
            return reject(RejectKind::Malformed, reason, &self.record, delim);
        }
        // One allocation per record; the key and values are slices of it.
        let all = Bytes::copy_from_slice(self.record.as_slice());
        let field = |i: usize| {
            self.record
                .range(i)
                .and_then(|r| (r.end <= all.len()).then(|| all.slice(r)))
                .unwrap_or_default()
        };
        let key = field(self.key_index);
        let mut columns = Vec::with_capacity(self.names.len().saturating_sub(1));
        for (i, name) in self.names.iter().enumerate() {
            if i == self.key_index {
                continue;
            }
            let value = field(i);
            if value.is_empty() && !self.options.keep_empty {
                continue;
            }
            columns.push((name.clone(), value));
        }
        if let Err((kind, reason)) = self.options.limits.check(&key, &columns) {
            let reason = if columns.is_empty() && kind == RejectKind::Malformed && !key.is_empty() {
                "every column is empty (nothing to write; --keep-empty writes empty values)".into()
            } else {
                reason
            };
            return reject(kind, reason, &self.record, delim);
        }
        Ok(Some(Item::Row(LoadRow {
            number,
            line,
            key,
            columns,
        })))
    }
}

/// A long-form row being gathered.
struct LongGroup {
    /// The line of its first record.
    line: u64,
    key: Bytes,
    columns: Columns,
    /// Names in `columns`.
    names: HashSet<Bytes>,
}

/// The long CSV form: `key,column,value` records grouped by consecutive key.
pub struct LongCsvParser {
    reader: csv::Reader<Box<dyn Read + Send>>,
    record: csv::ByteRecord,
    options: ParseOptions,
    numbering: Numbering,
    /// The row being gathered.
    group: Option<LongGroup>,
    /// Items ready to emit before reading on (a finished group, then a reject).
    ready: std::collections::VecDeque<Item>,
    done: bool,
}

impl LongCsvParser {
    /// Skips the header line when `options.header`.
    pub fn new(options: &ParseOptions, reader: Box<dyn Read + Send>) -> Result<Self, ParseError> {
        let mut reader = csv_reader(options, reader);
        if options.header {
            let mut header = csv::ByteRecord::new();
            reader.read_byte_record(&mut header).map_err(csv_error)?;
        }
        Ok(LongCsvParser {
            reader,
            record: csv::ByteRecord::new(),
            options: options.clone(),
            numbering: Numbering::default(),
            group: None,
            ready: Default::default(),
            done: false,
        })
    }

    /// Emits the gathered row (checked against the limits).
    fn close_group(&mut self) {
        let Some(LongGroup {
            line, key, columns, ..
        }) = self.group.take()
        else {
            return;
        };
        let number = self.numbering.next();
        let item = match self.options.limits.check(&key, &columns) {
            Ok(()) => Item::Row(LoadRow {
                number,
                line,
                key,
                columns,
            }),
            Err((kind, reason)) => {
                let record = columns
                    .iter()
                    .map(|(n, v)| {
                        let mut r = csv::ByteRecord::new();
                        r.push_field(&key);
                        r.push_field(n);
                        r.push_field(v);
                        record_text(&r, self.options.delimiter)
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                Item::Reject(Reject {
                    number,
                    line,
                    kind,
                    reason,
                    record,
                })
            }
        };
        self.ready.push_back(item);
    }

    fn reject_record(&mut self, line: u64, kind: RejectKind, reason: String) {
        let number = self.numbering.next();
        self.ready.push_back(Item::Reject(Reject {
            number,
            line,
            kind,
            reason,
            record: record_text(&self.record, self.options.delimiter),
        }));
    }
}

impl RecordParser for LongCsvParser {
    fn next_item(&mut self) -> Result<Option<Item>, ParseError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return Ok(None);
            }
            if !self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(csv_error)?
            {
                self.done = true;
                self.close_group();
                continue;
            }
            let line = self.record.position().map_or(0, |p| p.line());
            let fields = match (
                self.record.get(0),
                self.record.get(1),
                self.record.get(2),
                self.record.len(),
            ) {
                (Some(key), Some(name), Some(value), 3) => (
                    Bytes::copy_from_slice(key),
                    Bytes::copy_from_slice(name),
                    Bytes::copy_from_slice(value),
                ),
                _ => {
                    let reason = format!(
                        "expected 3 fields (key,column,value), found {}",
                        self.record.len()
                    );
                    self.reject_record(line, RejectKind::Malformed, reason);
                    continue;
                }
            };
            let (key, name, value) = fields;
            let same_key = self.group.as_ref().is_some_and(|g| g.key == key);
            let full = self
                .group
                .as_ref()
                .is_some_and(|g| g.columns.len() >= LONG_ROW_MAX_CELLS);
            if !same_key || full {
                self.close_group();
            }
            let group = self.group.get_or_insert_with(|| LongGroup {
                line,
                key: key.clone(),
                columns: Vec::new(),
                names: HashSet::new(),
            });
            if !group.names.insert(name.clone()) {
                let reason = format!(
                    "column {:?} given twice for key {:?} in the same run of records",
                    String::from_utf8_lossy(&name),
                    String::from_utf8_lossy(&key)
                );
                self.reject_record(line, RejectKind::Malformed, reason);
                continue;
            }
            group.columns.push((name, value));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn options(format: Format) -> ParseOptions {
        ParseOptions {
            format,
            key: "id".into(),
            delimiter: b',',
            header: true,
            keep_empty: false,
            limits: RowLimits {
                max_value_bytes: 8,
                table_len: 1,
            },
        }
    }

    /// Every item `text` parses into under `options` (test helper, also for the format
    /// modules' tests).
    pub(crate) fn items(options: &ParseOptions, text: &str) -> Vec<Item> {
        let mut p = parser(
            options,
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some(i) = p.next_item().unwrap() {
            out.push(i);
        }
        out
    }

    type RowView<'a> = (&'a [u8], Vec<(&'a [u8], &'a [u8])>);

    fn row(item: &Item) -> RowView<'_> {
        match item {
            Item::Row(r) => (
                &r.key,
                r.columns
                    .iter()
                    .map(|(n, v)| (n.as_ref(), v.as_ref()))
                    .collect(),
            ),
            Item::Reject(r) => panic!("expected a row, got {r:?}"),
        }
    }

    fn reject(item: &Item) -> &Reject {
        match item {
            Item::Reject(r) => r,
            Item::Row(r) => panic!("expected a reject, got {r:?}"),
        }
    }

    #[test]
    fn wide_csv_rows_rejects_and_quoting() {
        let text = "name,id,city\n\"Smith, J\",1,\"Lyon\nsud\"\nx,2\n,3,\nBob,4,ParisParis\n\"\"\"q\"\"\",,z\n";
        let got = items(&options(Format::Csv), text);
        assert_eq!(got.len(), 5);
        assert_eq!(
            row(&got[0]),
            (
                &b"1"[..],
                vec![(&b"name"[..], &b"Smith, J"[..]), (b"city", b"Lyon\nsud")]
            )
        );
        let short = reject(&got[1]);
        assert_eq!(
            (short.number, short.line, short.kind),
            (2, 4, RejectKind::Malformed)
        );
        assert!(short.reason.contains("expected 3 fields"), "{short:?}");
        assert_eq!(short.record, "x,2");
        assert!(reject(&got[2]).reason.contains("every column is empty"));
        let big = reject(&got[3]);
        assert_eq!((big.kind, big.line), (RejectKind::Oversize, 6));
        let no_key = reject(&got[4]);
        assert_eq!(
            (no_key.kind, no_key.reason.as_str()),
            (RejectKind::Malformed, "empty key")
        );
        assert_eq!(no_key.record, "\"\"\"q\"\"\",,z", "written back as CSV");
        assert_eq!(
            got.iter().map(Item::number).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn wide_csv_keep_empty_writes_empty_values() {
        let mut o = options(Format::Csv);
        o.keep_empty = true;
        let got = items(&o, "id,a,b\nk,,v\n");
        assert_eq!(
            row(&got[0]),
            (&b"k"[..], vec![(&b"a"[..], &b""[..]), (b"b", b"v")])
        );
    }

    #[test]
    fn wide_csv_header_errors_are_fatal() {
        let bad = |text: &str| {
            parser(
                &options(Format::Csv),
                Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
            )
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(bad("name,city\n").contains("no key column \"id\""));
        assert!(bad("id,a,a\n").contains("named twice"));
        assert!(bad("id,,a\n").contains("empty"));
        assert!(bad("").contains("empty"));
    }

    #[test]
    fn long_csv_groups_consecutive_keys() {
        let text = "key,column,value\na,x,1\na,y,2\nb,x,3\nb,x,4\nbad\na,z,\n";
        let got = items(&options(Format::LongCsv), text);
        assert_eq!(
            row(&got[0]),
            (&b"a"[..], vec![(&b"x"[..], &b"1"[..]), (b"y", b"2")])
        );
        let dup = reject(&got[1]);
        assert!(dup.reason.contains("given twice"), "{dup:?}");
        assert_eq!(dup.line, 5);
        let short = reject(&got[2]);
        assert!(short.reason.contains("expected 3 fields"));
        assert_eq!(row(&got[3]), (&b"b"[..], vec![(&b"x"[..], &b"3"[..])]));
        assert_eq!(row(&got[4]), (&b"a"[..], vec![(&b"z"[..], &b""[..])]));
        assert_eq!(
            got.iter().map(Item::number).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let mut no_header = options(Format::LongCsv);
        no_header.header = false;
        assert_eq!(items(&no_header, "a,x,1\n").len(), 1);
    }
}
