//! [`RequestMetrics`]: client requests counted per opcode and consistency level, their
//! latency (a histogram per pair), and error answers per error code. Client connections
//! record into it ([`crate::server`]); [`super::Metrics`] encodes it at scrape time.
//!
//! The hot path is lock-free: a fixed table of slots indexed by (opcode, consistency),
//! each made on first use (`OnceLock`) and then only `fetch_add`ed. Pairs never seen are
//! not exported, so a scrape lists only what clients sent.
//!
//! A GET, INSERT or DELETE also goes to its table's figures ([`super::tables`]): read or
//! write latency, and the siblings a read returned.
//!
//! Latency is measured from the moment the connection decoded the request to the moment
//! its answer was encoded (queueing behind the node's in-flight bound included, the
//! socket write excluded).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use sibyl_protocol::{
    Cell, Consistency, ConsistencyLevel, ErrorCode, ErrorKind, Opcode, Request, Response,
};
use sibyl_storage::latency::LatencyHistogram;

use super::encode::Family;
use super::tables::{TableAccess, TableRegistry, TableSlot};

/// Consistency labels, by index ([`consistency_index`]).
const CONSISTENCY_LABELS: [&str; 9] = [
    "none",
    "default",
    "one",
    "two",
    "three",
    "quorum",
    "all",
    "local_quorum",
    "explicit",
];

/// Label of requests that carry no consistency level (DDL, admin, topology).
const NO_CONSISTENCY: usize = 0;
/// Label of reads and writes that leave it to the table's default.
const DEFAULT_CONSISTENCY: usize = 1;

/// Error answers not of a code this build knows.
const UNKNOWN_ERROR_LABEL: &str = "UNKNOWN";

/// Request counts, latencies and errors of one node (see the module documentation).
#[derive(Debug)]
pub struct RequestMetrics {
    /// `Opcode::ALL.len() * CONSISTENCY_LABELS.len()` latency histograms (their counts
    /// are the request counts), opcode-major.
    slots: Vec<OnceLock<LatencyHistogram>>,
    /// Error answers per `ErrorCode::ALL` index, then one for unknown codes.
    errors: Vec<AtomicU64>,
    /// Per-table read and write figures.
    tables: TableRegistry,
}

/// What a request was answered with, as far as the metrics care.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// A success without cells.
    Done,
    /// A row: its cells.
    Row(&'a [Cell]),
    /// An error answer.
    Failed(&'a ErrorKind),
}

impl<'a> Outcome<'a> {
    /// The outcome of `response`.
    pub fn of(response: &'a Response) -> Outcome<'a> {
        match response {
            Response::Error(e) => Outcome::Failed(&e.kind),
            Response::Row { cells, .. } => Outcome::Row(cells),
            _ => Outcome::Done,
        }
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics::new()
    }
}

/// What the connection knows of a request when it starts it: which counters it goes to.
#[derive(Debug, Clone)]
pub struct RequestKind {
    opcode: usize,
    consistency: usize,
    /// A GET, INSERT or DELETE: its table's figures.
    table: Option<(TableAccess, TableSlot)>,
}

impl RequestKind {
    /// The kind of a request with `opcode`; `consistency` is `Some` for reads and writes
    /// (`Some(None)`: the table's default), `None` for requests without a level.
    pub fn new(opcode: Opcode, consistency: Option<Option<Consistency>>) -> RequestKind {
        RequestKind {
            opcode: Opcode::ALL
                .iter()
                .position(|o| *o == opcode)
                .unwrap_or_default(),
            consistency: match consistency {
                None => NO_CONSISTENCY,
                Some(None) => DEFAULT_CONSISTENCY,
                Some(Some(c)) => consistency_index(c.level),
            },
            table: None,
        }
    }
}

fn consistency_index(level: ConsistencyLevel) -> usize {
    match level {
        ConsistencyLevel::One => 2,
        ConsistencyLevel::Two => 3,
        ConsistencyLevel::Three => 4,
        ConsistencyLevel::Quorum => 5,
        ConsistencyLevel::All => 6,
        ConsistencyLevel::LocalQuorum => 7,
        ConsistencyLevel::Explicit(_) => 8,
    }
}

impl RequestMetrics {
    /// Nothing recorded yet.
    pub fn new() -> RequestMetrics {
        RequestMetrics {
            slots: (0..Opcode::ALL.len() * CONSISTENCY_LABELS.len())
                .map(|_| OnceLock::new())
                .collect(),
            errors: (0..=ErrorCode::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            tables: TableRegistry::default(),
        }
    }

    /// The kind of `request`: its opcode, consistency level and, for a GET, INSERT or
    /// DELETE, its table.
    pub fn kind_of(&self, request: &Request) -> RequestKind {
        let (consistency, table) = match request {
            Request::Insert {
                consistency,
                insert,
            } => (
                Some(*consistency),
                Some((TableAccess::Write, &insert.table)),
            ),
            Request::Delete {
                consistency,
                delete,
            } => (
                Some(*consistency),
                Some((TableAccess::Write, &delete.table)),
            ),
            Request::Get {
                consistency, table, ..
            } => (Some(*consistency), Some((TableAccess::Read, table))),
            Request::Batch { consistency, .. } => (Some(*consistency), None),
            _ => (None, None),
        };
        RequestKind {
            table: table.map(|(access, name)| (access, self.tables.slot(name))),
            ..RequestKind::new(request.opcode(), consistency)
        }
    }

    /// Records one answered request of `kind` that took `elapsed` with its outcome.
    pub fn record(&self, kind: &RequestKind, elapsed: Duration, outcome: Outcome<'_>) {
        let index = kind.opcode * CONSISTENCY_LABELS.len() + kind.consistency;
        if let Some(slot) = self.slots.get(index) {
            slot.get_or_init(LatencyHistogram::new).record(elapsed);
        }
        let cells = match outcome {
            Outcome::Failed(error) => {
                self.record_error(error);
                return;
            }
            Outcome::Row(cells) => cells,
            Outcome::Done => &[],
        };
        if let Some((access, slot)) = &kind.table {
            self.tables.resolve(slot).record(*access, elapsed, cells);
        }
    }

    /// The per-table figures.
    pub fn tables(&self) -> &TableRegistry {
        &self.tables
    }

    /// Records an error answered outside any request (a malformed frame).
    pub fn record_error(&self, kind: &ErrorKind) {
        let index = kind
            .error_code()
            .and_then(|c| ErrorCode::ALL.iter().position(|k| *k == c))
            .unwrap_or(ErrorCode::ALL.len());
        if let Some(counter) = self.errors.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests answered with `opcode` so far, every consistency level (for tests and
    /// the admin tool's summary).
    pub fn count(&self, opcode: Opcode) -> u64 {
        let kind = RequestKind::new(opcode, None);
        let start = kind.opcode * CONSISTENCY_LABELS.len();
        self.slots
            .iter()
            .skip(start)
            .take(CONSISTENCY_LABELS.len())
            .filter_map(OnceLock::get)
            .map(|h| h.snapshot().count)
            .sum()
    }

    /// Error answers of `code` so far.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.errors.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Writes `sibyl_requests_total`, `sibyl_request_duration_seconds`,
    /// `sibyl_request_errors_total` and the per-table `sibyl_table_*` families (the
    /// registry adds the prefix).
    pub(super) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let seen: Vec<(&str, &str, sibyl_storage::latency::LatencySnapshot)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| {
                let slot = slot.get()?;
                let op = Opcode::ALL.get(i / CONSISTENCY_LABELS.len())?.name();
                let cl = CONSISTENCY_LABELS.get(i % CONSISTENCY_LABELS.len())?;
                Some((op, *cl, slot.snapshot()))
            })
            .collect();
        let mut family = Family::start(
            encoder,
            "requests",
            "Client requests answered, by opcode and consistency level",
            MetricType::Counter,
        )?;
        for (op, cl, snapshot) in &seen {
            family.sample(&[("op", *op), ("consistency", *cl)], snapshot.count)?;
        }
        let mut family = Family::start(
            encoder,
            "request_duration_seconds",
            "Time from decoding a client request to encoding its answer, by opcode and \
             consistency level",
            MetricType::Histogram,
        )?;
        for (op, cl, snapshot) in &seen {
            family.histogram(&[("op", *op), ("consistency", *cl)], snapshot)?;
        }
        let mut family = Family::start(
            encoder,
            "request_errors",
            "Error answers sent to clients, by error code",
            MetricType::Counter,
        )?;
        let names = ErrorCode::ALL
            .iter()
            .map(|c| c.name())
            .chain(std::iter::once(UNKNOWN_ERROR_LABEL));
        for (name, counter) in names.zip(&self.errors) {
            family.sample(&[("kind", name)], counter.load(Ordering::Relaxed))?;
        }
        let tables = self.tables.all();
        let mut family = Family::start(
            encoder,
            "table_request_duration_seconds",
            "Latency of a table's successful GETs (read) and INSERTs and DELETEs (write) \
             coordinated here",
            MetricType::Histogram,
        )?;
        for (table, stats) in &tables {
            family.histogram(
                &[("table", table.as_str()), ("access", "read")],
                &stats.read,
            )?;
            family.histogram(
                &[("table", table.as_str()), ("access", "write")],
                &stats.write,
            )?;
        }
        let mut family = Family::start(
            encoder,
            "table_cells_read",
            "Cells a table's GETs returned",
            MetricType::Counter,
        )?;
        for (table, stats) in &tables {
            family.sample(&[("table", table.as_str())], stats.cells_read)?;
        }
        let mut family = Family::start(
            encoder,
            "table_cells_with_siblings",
            "Cells a table's GETs returned with more than one sibling (concurrent versions)",
            MetricType::Counter,
        )?;
        for (table, stats) in &tables {
            family.sample(&[("table", table.as_str())], stats.cells_with_siblings)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_metrics_count_per_opcode_and_error_kind() {
        let m = RequestMetrics::new();
        let get = RequestKind::new(Opcode::Get, Some(Some(Consistency::QUORUM)));
        let get_default = RequestKind::new(Opcode::Get, Some(None));
        m.record(&get, Duration::from_micros(80), Outcome::Done);
        m.record(&get_default, Duration::from_micros(80), Outcome::Done);
        m.record(
            &RequestKind::new(Opcode::Insert, Some(None)),
            Duration::from_millis(3),
            Outcome::Failed(&ErrorKind::Overloaded),
        );
        assert_eq!(m.count(Opcode::Get), 2);
        assert_eq!(m.count(Opcode::Insert), 1);
        assert_eq!(m.count(Opcode::Delete), 0);
        let overloaded = ErrorCode::ALL
            .iter()
            .position(|c| *c == ErrorCode::Overloaded)
            .unwrap();
        assert_eq!(m.errors[overloaded].load(Ordering::Relaxed), 1);
    }
}
