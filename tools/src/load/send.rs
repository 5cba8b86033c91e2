//! Writing a batch of rows: one BATCH request (an INSERT for a batch of one row, which a
//! node may group with other INSERTs into one engine write) through the token-aware client, retried
//! with backoff while that is safe, split into single INSERTs to find the rows a node
//! refuses.
//!
//! Every row is one mutation carrying the write id `load_id << 64 | item number`
//! ([`write_id`]). Retry rules ([`classify`]):
//!
//! - `UNAVAILABLE`, `OVERLOADED` (nothing was written), `WRITE_TIMEOUT`, `READ_TIMEOUT`,
//!   a client timeout, a lost or refused connection (the write may have been applied on
//!   some replicas): sent again, the same mutations with the same write ids, after
//!   `backoff` doubling up to `max_backoff`, at most `attempts` times in all. This is
//!   safe because a coordinator that already holds a version with the write id creates
//!   none (spec section 5.2): a causal cell never shows a second sibling of the same row,
//!   and an lww cell gets the same value again. The client library also moves on to the
//!   key's next replica by itself on these errors (the request is resendable).
//! - `INVALID`, `TOO_MANY_SIBLINGS`, `SERVER`, an unknown code, a response of the wrong
//!   shape: a batch of several rows is split and each row sent alone (same write id, so
//!   the rows of the batch that were applied are not applied twice), and a row refused
//!   alone is rejected as `refused` with the node's message.
//! - `UNKNOWN_TABLE`: fatal, the load stops (the table was dropped under it).
//! - Still failing after `attempts`: every row of the request is rejected as `failed`
//!   (it may have been applied; see the module docs of [`crate::load`]).

use std::time::Duration;

use sibyl_protocol::{
    Client, ClientError, ColumnWrite, Consistency, ErrorKind, Mutation, Request, Response,
    RowInsert, WriteId,
};

use crate::load::item::{LoadRow, Reject, RejectKind};

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt.
    pub backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Time an attempt may wait for its answer.
    pub timeout: Duration,
}

/// What to do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Send it again (it is safe: write ids).
    Retry,
    /// The node refused it: split it, or reject the row.
    Refused,
    /// Stop the load.
    Fatal,
}

/// The write id of item `number` of load `load_id`.
pub fn write_id(load_id: u64, number: u64) -> WriteId {
    WriteId((u128::from(load_id) << 64) | u128::from(number))
}

/// What a failure means for the load.
pub fn classify(e: &ClientError) -> Failure {
    match e {
        ClientError::Server(s) => match &s.kind {
            ErrorKind::UnknownTable { .. } => Failure::Fatal,
            ErrorKind::Unavailable { .. }
            | ErrorKind::Overloaded
            | ErrorKind::DiskFull { .. }
            | ErrorKind::WriteTimeout { .. }
            | ErrorKind::ReadTimeout { .. } => Failure::Retry,
            _ => Failure::Refused,
        },
        ClientError::Connect { .. }
        | ClientError::ConnectionClosed { .. }
        | ClientError::Timeout { .. }
        | ClientError::Resolve { .. } => Failure::Retry,
        ClientError::NoNodes => Failure::Fatal,
        _ => Failure::Refused,
    }
}

/// The error-kind name of a failure, for the report (`unavailable`, `timeout`, ...).
pub fn failure_name(e: &ClientError) -> String {
    match e {
        ClientError::Server(s) => crate::stress::server_error_type(&s.kind),
        other => crate::stress::classify_error(other).to_owned(),
    }
}

/// Where one batch went.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Numbers of the rows written and acknowledged.
    pub loaded: Vec<u64>,
    /// Rows not loaded, with why.
    pub rejected: Vec<Reject>,
    /// Attempts after the first, by error kind.
    pub retries: Vec<String>,
    /// A failure that must stop the load.
    pub fatal: Option<ClientError>,
}

/// Sends batches of one load.
#[derive(Debug, Clone)]
pub struct BatchSender {
    /// The client (token-aware).
    pub client: Client,
    /// Target table.
    pub table: String,
    /// Consistency of every write; `None` = the table's write consistency.
    pub consistency: Option<Consistency>,
    /// High half of every write id.
    pub load_id: u64,
    /// Retries.
    pub retry: RetryPolicy,
}

impl BatchSender {
    fn mutation(&self, row: &LoadRow) -> Mutation {
        Mutation::Insert(self.row_insert(row))
    }

    fn row_insert(&self, row: &LoadRow) -> RowInsert {
        RowInsert {
            table: self.table.clone(),
            key: row.key.clone(),
            ttl_secs: None,
            timestamp_micros: None,
            write_id: Some(write_id(self.load_id, row.number)),
            columns: row
                .columns
                .iter()
                .map(|(name, value)| ColumnWrite {
                    name: name.clone(),
                    value: value.clone(),
                    context: bytes::Bytes::new(),
                })
                .collect(),
        }
    }

    /// Sends `request` until it succeeds, is refused, or runs out of attempts; notes
    /// each retry's error kind.
    async fn with_retries(
        &self,
        request: impl Fn() -> Request,
        retries: &mut Vec<String>,
    ) -> Result<(), ClientError> {
        let mut backoff = self.retry.backoff;
        let mut attempt = 1;
        loop {
            let result: Result<(), ClientError> = match self
                .client
                .request_with_timeout(request(), self.retry.timeout)
                .await
            {
                Ok(Response::Written { .. }) => return Ok(()),
                Ok(other) => Err(ClientError::UnexpectedResponse {
                    opcode: "BATCH",
                    got: format!("{other:?}"),
                }),
                Err(e) => Err(e),
            };
            let Err(e) = result else { return Ok(()) };
            if classify(&e) != Failure::Retry || attempt >= self.retry.attempts {
                return Err(e);
            }
            retries.push(failure_name(&e));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.retry.max_backoff);
            attempt += 1;
        }
    }

    /// Writes `rows` (one BATCH, split into single INSERTs when the batch is refused).
    pub async fn send(&self, rows: Vec<LoadRow>) -> BatchOutcome {
        let mut out = BatchOutcome::default();
        // Built for each attempt from the rows (no copy of a sent request is kept).
        let request = || match rows.as_slice() {
            [row] => Request::Insert {
                insert: self.row_insert(row),
                consistency: self.consistency,
            },
            _ => Request::Batch {
                mutations: rows.iter().map(|r| self.mutation(r)).collect(),
                consistency: self.consistency,
            },
        };
        let err = match self.with_retries(request, &mut out.retries).await {
            Ok(()) => {
                out.loaded = rows.iter().map(|r| r.number).collect();
                return out;
            }
            Err(e) => e,
        };
        match classify(&err) {
            Failure::Fatal => {
                out.fatal = Some(err);
                return out;
            }
            Failure::Retry => {
                let reason = format!(
                    "write failed after {} attempts ({}): {err}",
                    self.retry.attempts,
                    failure_name(&err)
                );
                out.rejected = rows
                    .iter()
                    .map(|r| failed_row(r, RejectKind::Failed, &reason))
                    .collect();
                return out;
            }
            Failure::Refused if rows.len() == 1 => {
                let reason = format!("refused ({}): {err}", failure_name(&err));
                out.rejected = rows
                    .iter()
                    .map(|r| failed_row(r, RejectKind::Refused, &reason))
                    .collect();
                return out;
            }
            Failure::Refused => {}
        }
        // Find the refused rows: each alone, with the same write id as in the batch.
        for row in &rows {
            let request = || Request::Insert {
                insert: self.row_insert(row),
                consistency: self.consistency,
            };
            match self.with_retries(request, &mut out.retries).await {
                Ok(()) => out.loaded.push(row.number),
                Err(e) => match classify(&e) {
                    Failure::Fatal => {
                        out.fatal = Some(e);
                        return out;
                    }
                    Failure::Retry => {
                        let reason = format!(
                            "write failed after {} attempts ({}): {e}",
                            self.retry.attempts,
                            failure_name(&e)
                        );
                        out.rejected
                            .push(failed_row(row, RejectKind::Failed, &reason));
                    }
                    Failure::Refused => {
                        let reason = format!("refused ({}): {e}", failure_name(&e));
                        out.rejected
                            .push(failed_row(row, RejectKind::Refused, &reason));
                    }
                },
            }
        }
        out
    }
}

/// The reject of a row that could not be written: its key and columns as JSON.
pub fn failed_row(row: &LoadRow, kind: RejectKind, reason: &str) -> Reject {
    let columns: serde_json::Map<String, serde_json::Value> = row
        .columns
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let record = serde_json::json!({
        "key": String::from_utf8_lossy(&row.key),
        "columns": columns,
    });
    Reject {
        number: row.number,
        line: row.line,
        kind,
        reason: reason.to_owned(),
        record: record.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sibyl_protocol::ServerError;

    #[test]
    fn write_id_is_load_then_item_number() {
        assert_eq!(write_id(0xab, 7).0, (0xab_u128 << 64) | 7);
        assert_ne!(write_id(1, 2), write_id(2, 1));
    }

    #[test]
    fn classify_retries_only_what_write_ids_make_safe() {
        let server = |kind| ClientError::Server(ServerError::new(kind, "x"));
        assert_eq!(classify(&server(ErrorKind::Overloaded)), Failure::Retry);
        assert_eq!(
            classify(&server(ErrorKind::DiskFull {
                free: 0,
                reserve: 0
            })),
            Failure::Retry
        );
        assert_eq!(
            classify(&server(ErrorKind::WriteTimeout {
                acks: 1,
                required: 2
            })),
            Failure::Retry
        );
        assert_eq!(classify(&server(ErrorKind::Invalid)), Failure::Refused);
        assert_eq!(
            classify(&server(ErrorKind::TooManySiblings { limit: 100 })),
            Failure::Refused
        );
        assert_eq!(
            classify(&server(ErrorKind::UnknownTable { table: "t".into() })),
            Failure::Fatal
        );
        assert_eq!(
            classify(&ClientError::Timeout {
                after: Duration::from_secs(1)
            }),
            Failure::Retry
        );
    }
}
