//! [`Shell`]: the state of one `sibyl-cli` session and the execution of its commands.
//!
//! State: the client, the table in use, the session consistency (`None` = each table's
//! default), the table names last seen (to tell a table from a key in `get`/`delete`),
//! the cells last read of each (table, key) with their contexts, and the cursor of the
//! last slice for `next`.
//!
//! Invariants: a put or delete of a column the session has read sends that read's context
//! and then forgets it (the context is consumed: the write supersedes what was read, and a
//! second write without a new read is blind). At most [`MAX_REMEMBERED_ROWS`] rows are
//! remembered; past that the memory is cleared (later writes are blind until re-read).
//!
//! Threading: a `Shell` is used by one task; its methods are async and need a tokio
//! runtime (the client's connections run on it).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::ops::Bound;

use bytes::Bytes;
use sibyl_protocol::{
    Cell, Client, ClientError, Consistency, ErrorKind, NodeState, Row, TableOptions,
};

use crate::admin::status::render_status;
use crate::cli::command::{parse, Command, ParseError, TableSpec};
use crate::cli::help::HELP;
use crate::cli::lexer::{lex, LexError};
use crate::cli::render::{show_cells, show_table_options, show_tables};
use crate::consistency::show_consistency;
use crate::text::{quote, show_bytes};

/// Rows whose read contexts the shell keeps at most.
pub const MAX_REMEMBERED_ROWS: usize = 10_000;
/// Replication factor of `create table` without `rf=`, capped by the cluster size.
pub const DEFAULT_REPLICATION_FACTOR: u16 = 3;

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Text to print.
    Text(String),
    /// The session should end.
    Quit,
}

/// A command that failed; its `Display` is the one line the user sees after `error: `.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShellError {
    /// The line could not be split into tokens.
    #[error("{0}")]
    Lex(#[from] LexError),
    /// The statement does not follow the grammar.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The command names no table and none is in use.
    #[error("no table given and none in use (type: use NAME)")]
    NoTable,
    /// `next` without a slice that has more pages.
    #[error("no slice to continue (slice first; `next` follows a slice that said more)")]
    NoSlice,
    /// A user command without `password=` and no terminal to ask on.
    #[error("no password: give password=TEXT or run on a terminal to be asked")]
    NoPassword,
    /// The password asked twice was not typed the same.
    #[error("the two passwords differ; nothing changed")]
    PasswordMismatch,
    /// The cluster refused or failed the request.
    #[error("{}", describe_client_error(.0))]
    Client(#[from] ClientError),
}

/// The password a user command gave, or one asked on the terminal without echo.
fn password_or_prompt(given: Option<String>, user: &str) -> Result<String, ShellError> {
    if let Some(p) = given {
        return Ok(p);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(ShellError::NoPassword);
    }
    let password = rpassword::prompt_password(format!("new password for {user}: "))
        .map_err(|_| ShellError::NoPassword)?;
    if password.is_empty() {
        return Err(ShellError::NoPassword);
    }
    let again =
        rpassword::prompt_password("the same again: ").map_err(|_| ShellError::NoPassword)?;
    if again != password {
        return Err(ShellError::PasswordMismatch);
    }
    Ok(password)
}

/// `users`: one line per user, superusers marked, each with its permissions.
fn show_users(users: &[sibyl_protocol::UserInfo]) -> String {
    if users.is_empty() {
        return "(no users)".to_owned();
    }
    users
        .iter()
        .map(|u| {
            let grants: Vec<String> = u.grants.iter().map(ToString::to_string).collect();
            match (u.superuser, grants.is_empty()) {
                (true, _) => format!("{} (superuser)", u.name),
                (false, true) => format!("{}: no permissions", u.name),
                (false, false) => format!("{}: {}", u.name, grants.join(", ")),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One readable line for a client error: what happened and, when it matters, whether a
/// write may have been applied.
pub fn describe_client_error(e: &ClientError) -> String {
    match e {
        ClientError::Server(s) => match &s.kind {
            ErrorKind::UnknownTable { table } => format!("unknown table {}", quote(table)),
            ErrorKind::TableExists { table } => format!("table {} already exists", quote(table)),
            ErrorKind::Unavailable { required, alive } => format!(
                "unavailable: {required} replicas required, {alive} alive ({})",
                s.message
            ),
            ErrorKind::WriteTimeout { acks, required } => format!(
                "write timed out: {acks} of {required} replicas acknowledged (it may have been applied)"
            ),
            ErrorKind::ReadTimeout { acks, required } => {
                format!("read timed out: {acks} of {required} replicas answered")
            }
            ErrorKind::TooManySiblings { limit } => format!(
                "too many siblings (limit {limit}): get the cell, then put with that context to resolve them"
            ),
            ErrorKind::Overloaded => format!("node overloaded, retry later ({})", s.message),
            ErrorKind::DiskFull { free, reserve } => format!(
                "node's disk is full ({} free, {} reserved): not applied, retry later or on \
                 another node",
                crate::text::human_size(*free),
                crate::text::human_size(*reserve)
            ),
            ErrorKind::Invalid => format!("invalid request: {}", s.message),
            ErrorKind::Unauthenticated => {
                "this node requires authentication: pass --user NAME (and --password-file \
                 FILE or SIBYL_PASSWORD)"
                    .to_owned()
            }
            ErrorKind::Unauthorized { permission } => {
                format!(
                    "not allowed: the user lacks the permission {permission:?} ({})",
                    s.message
                )
            }
            _ => s.to_string(),
        },
        ClientError::Timeout { after } => format!(
            "no answer within {:.1}s (a write may have been applied)",
            after.as_secs_f64()
        ),
        other => other.to_string(),
    }
}

/// The cursor of the last slice that has more pages.
#[derive(Debug, Clone)]
struct SliceCursor {
    table: String,
    key: Bytes,
    from: Option<Bytes>,
    to: Option<Bytes>,
    limit: u32,
    token: Bytes,
}

/// Counts of one line's statements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStatus {
    /// Statements that failed.
    pub failed: usize,
    /// A `quit` was reached (statements after it are not run).
    pub quit: bool,
}

/// One shell session.
#[derive(Debug)]
pub struct Shell {
    client: Client,
    current_table: Option<String>,
    consistency: Option<Consistency>,
    known_tables: Option<Vec<String>>,
    reads: HashMap<(String, Bytes), BTreeMap<Bytes, Cell>>,
    cursor: Option<SliceCursor>,
}

/// What a `get` or `delete` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowTarget {
    /// Table name.
    pub table: String,
    /// Partition key.
    pub key: Vec<u8>,
    /// Column names (none = the whole row).
    pub columns: Vec<Vec<u8>>,
}

/// Splits `words` (`[TABLE] KEY [col ...]`) into table, key and columns: the first word is
/// the table when no table is in use, or when it names a known table and more words
/// follow; otherwise the table in use applies.
pub fn split_table(
    words: &[Vec<u8>],
    current: Option<&str>,
    known: &[String],
) -> Result<RowTarget, ShellError> {
    let first_is_table = |w: &Vec<u8>| known.iter().any(|t| t.as_bytes() == w.as_slice());
    match (words, current) {
        ([first, key, cols @ ..], current) if current.is_none() || first_is_table(first) => {
            let table = String::from_utf8(first.clone()).map_err(|_| {
                ShellError::Parse(ParseError::InvalidValue {
                    what: "table name".into(),
                    given: show_bytes(first),
                    reason: "table names are UTF-8".into(),
                })
            })?;
            Ok(RowTarget {
                table,
                key: key.clone(),
                columns: cols.to_vec(),
            })
        }
        ([key, cols @ ..], Some(current)) => Ok(RowTarget {
            table: current.to_owned(),
            key: key.clone(),
            columns: cols.to_vec(),
        }),
        _ => Err(ShellError::NoTable),
    }
}

impl Shell {
    /// A session over `client`, with no table in use and table-default consistency.
    pub fn new(client: Client) -> Shell {
        Shell {
            client,
            current_table: None,
            consistency: None,
            known_tables: None,
            reads: HashMap::new(),
            cursor: None,
        }
    }

    /// The table in use, if any.
    pub fn current_table(&self) -> Option<&str> {
        self.current_table.as_deref()
    }

    /// Sets the session consistency (`None` = each table's default).
    pub fn set_consistency(&mut self, c: Option<Consistency>) {
        self.consistency = c;
    }

    /// Sets the table in use without checking that it exists.
    pub fn set_current_table(&mut self, table: Option<String>) {
        self.current_table = table;
    }

    /// The prompt for the next line: `sibyl> ` or `sibyl:users> `.
    pub fn prompt(&self) -> String {
        match &self.current_table {
            Some(t) => format!("sibyl:{t}> "),
            None => "sibyl> ".to_owned(),
        }
    }

    /// Runs every statement of `line`, printing replies to `out` and `error: ...` lines to
    /// `err`; stops at `quit`.
    pub async fn run_line(
        &mut self,
        line: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> std::io::Result<LineStatus> {
        let mut status = LineStatus::default();
        let statements = match lex(line) {
            Ok(s) => s,
            Err(e) => {
                writeln!(err, "error: {e}")?;
                status.failed += 1;
                return Ok(status);
            }
        };
        for tokens in statements {
            let result = match parse(&tokens) {
                Ok(cmd) => self.execute(cmd).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(Reply::Text(t)) => {
                    if !t.is_empty() {
                        writeln!(out, "{t}")?;
                    }
                }
                Ok(Reply::Quit) => {
                    status.quit = true;
                    break;
                }
                Err(e) => {
                    writeln!(err, "error: {e}")?;
                    status.failed += 1;
                }
            }
        }
        out.flush()?;
        Ok(status)
    }

    /// Executes one command.
    pub async fn execute(&mut self, cmd: Command) -> Result<Reply, ShellError> {
        let text = match cmd {
            Command::Help => HELP.trim_end().to_owned(),
            Command::Quit => return Ok(Reply::Quit),
            Command::Ping => {
                let start = std::time::Instant::now();
                self.client.ping().await?;
                format!("pong ({:.2} ms)", start.elapsed().as_secs_f64() * 1e3)
            }
            Command::Topology => render_status(&self.client.topology().await?),
            Command::ListTables => {
                let mut names = self.client.list_tables().await?;
                names.sort();
                self.known_tables = Some(names.clone());
                show_tables(&names)
            }
            Command::Describe { name } => {
                let options = self.client.describe_table(&name).await?;
                show_table_options(&name, &options)
            }
            Command::Use { name } => {
                // Fails with "unknown table" rather than letting a typo stick.
                self.client.describe_table(&name).await?;
                let text = format!("using table {name}");
                self.current_table = Some(name);
                text
            }
            Command::CreateTable {
                name,
                if_not_exists,
                spec,
            } => self.create_table(name, if_not_exists, spec).await?,
            Command::CreateUser {
                name,
                superuser,
                if_not_exists,
                password,
            } => {
                let password = password_or_prompt(password, &name)?;
                let created = self
                    .client
                    .create_user(&name, &password, superuser, if_not_exists)
                    .await?;
                match (created, superuser) {
                    (true, true) => format!("created superuser {name}"),
                    (true, false) => format!("created user {name}"),
                    (false, _) => format!("user {name} exists"),
                }
            }
            Command::AlterUser { name, password } => {
                let password = password_or_prompt(password, &name)?;
                self.client.alter_user_password(&name, &password).await?;
                format!("changed the password of {name}")
            }
            Command::DropUser { name, if_exists } => {
                if self.client.drop_user(&name, if_exists).await? {
                    format!("dropped user {name}")
                } else {
                    format!("no user {name}")
                }
            }
            Command::ListUsers => show_users(&self.client.list_users().await?),
            Command::Grant { user, grant } => {
                let table = grant.table.as_deref();
                if self.client.grant(&user, grant.permission, table).await? {
                    format!("granted {grant} to {user}")
                } else {
                    format!("{user} already holds {grant}")
                }
            }
            Command::Revoke { user, grant } => {
                let table = grant.table.as_deref();
                if self.client.revoke(&user, grant.permission, table).await? {
                    format!("revoked {grant} from {user}")
                } else {
                    format!("{user} did not hold {grant}")
                }
            }
            Command::DropTable { name, if_exists } => {
                let dropped = if if_exists {
                    self.client.drop_table_if_exists(&name).await?
                } else {
                    self.client.drop_table(&name).await.map(|()| true)?
                };
                self.known_tables = None;
                self.reads.retain(|(t, _), _| *t != name);
                if self.current_table.as_deref() == Some(name.as_str()) {
                    self.current_table = None;
                }
                if dropped {
                    format!("dropped table {name}")
                } else {
                    format!("no table {name}")
                }
            }
            Command::Put {
                table,
                key,
                columns,
                ttl_secs,
            } => {
                let table = self.table_or_current(table)?;
                self.put(table, Bytes::from(key), columns, ttl_secs).await?
            }
            Command::Get { words } => {
                let t = self.resolve(&words).await?;
                self.get(t.table, Bytes::from(t.key), t.columns).await?
            }
            Command::Delete { words } => {
                let t = self.resolve(&words).await?;
                self.delete(t.table, Bytes::from(t.key), t.columns).await?
            }
            Command::Slice {
                table,
                key,
                from,
                to,
                limit,
            } => {
                let table = self.table_or_current(table)?;
                let cursor = SliceCursor {
                    table,
                    key: Bytes::from(key),
                    from: from.map(Bytes::from),
                    to: to.map(Bytes::from),
                    limit,
                    token: Bytes::new(),
                };
                self.slice(cursor, None).await?
            }
            Command::Next => {
                let cursor = self.cursor.take().ok_or(ShellError::NoSlice)?;
                let token = cursor.token.clone();
                self.slice(cursor, Some(token)).await?
            }
            Command::Consistency { set } => {
                if let Some(c) = set {
                    self.consistency = c;
                }
                match &self.consistency {
                    Some(c) => format!("consistency {}", show_consistency(c)),
                    None => "consistency: each table's default".to_owned(),
                }
            }
        };
        Ok(Reply::Text(text))
    }

    fn table_or_current(&self, table: Option<String>) -> Result<String, ShellError> {
        table
            .or_else(|| self.current_table.clone())
            .ok_or(ShellError::NoTable)
    }

    /// Splits `[TABLE] KEY [col ...]`, fetching table names when a table is in use and
    /// the first word might be another table.
    async fn resolve(&mut self, words: &[Vec<u8>]) -> Result<RowTarget, ShellError> {
        if self.current_table.is_some() && words.len() >= 2 && self.known_tables.is_none() {
            let mut names = self.client.list_tables().await?;
            names.sort();
            self.known_tables = Some(names);
        }
        let known = self.known_tables.as_deref().unwrap_or(&[]);
        split_table(words, self.current_table.as_deref(), known)
    }

    async fn create_table(
        &mut self,
        name: String,
        if_not_exists: bool,
        spec: TableSpec,
    ) -> Result<String, ShellError> {
        let defaults = TableOptions::default();
        let replication_factor = match spec.replication_factor {
            Some(rf) => rf,
            None => {
                let topology = self.client.topology().await?;
                let members = topology
                    .nodes
                    .iter()
                    .filter(|n| n.state != NodeState::Left)
                    .count();
                let members = u16::try_from(members).unwrap_or(u16::MAX).max(1);
                DEFAULT_REPLICATION_FACTOR.min(members)
            }
        };
        let options = TableOptions {
            replication_factor,
            read_consistency: spec.read_consistency.unwrap_or(defaults.read_consistency),
            write_consistency: spec.write_consistency.unwrap_or(defaults.write_consistency),
            conflict_mode: spec.conflict_mode.unwrap_or(defaults.conflict_mode),
            default_ttl_secs: spec.default_ttl_secs.or(defaults.default_ttl_secs),
            compaction: spec.compaction.unwrap_or(defaults.compaction),
            placement: defaults.placement,
        };
        let created = if if_not_exists {
            self.client
                .create_table_if_not_exists(&name, options.clone())
                .await?
        } else {
            self.client
                .create_table(&name, options.clone())
                .await
                .map(|()| true)?
        };
        self.known_tables = None;
        if created {
            Ok(format!(
                "created table {name} (rf={}, read={}, write={})",
                options.replication_factor,
                show_consistency(&options.read_consistency),
                show_consistency(&options.write_consistency)
            ))
        } else {
            Ok(format!("table {name} exists"))
        }
    }

    fn remember(&mut self, table: &str, key: &Bytes, cells: &[Cell]) {
        if cells.is_empty() {
            return;
        }
        if self.reads.len() >= MAX_REMEMBERED_ROWS
            && !self.reads.contains_key(&(table.to_owned(), key.clone()))
        {
            self.reads.clear();
        }
        let row = self
            .reads
            .entry((table.to_owned(), key.clone()))
            .or_default();
        for cell in cells {
            row.insert(cell.name.clone(), cell.clone());
        }
    }

    /// Removes and returns the remembered cells of `columns` (all of them for `None`).
    fn take_read(&mut self, table: &str, key: &Bytes, columns: Option<&[Bytes]>) -> Vec<Cell> {
        let map_key = (table.to_owned(), key.clone());
        let Some(row) = self.reads.get_mut(&map_key) else {
            return Vec::new();
        };
        let taken: Vec<Cell> = match columns {
            None => std::mem::take(row).into_values().collect(),
            Some(cols) => cols.iter().filter_map(|c| row.remove(c)).collect(),
        };
        if row.is_empty() {
            self.reads.remove(&map_key);
        }
        taken
    }

    async fn put(
        &mut self,
        table: String,
        key: Bytes,
        columns: Vec<(Vec<u8>, Vec<u8>)>,
        ttl_secs: Option<u32>,
    ) -> Result<String, ShellError> {
        let columns: Vec<(Bytes, Bytes)> = columns
            .into_iter()
            .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
            .collect();
        let names: Vec<Bytes> = columns.iter().map(|(n, _)| n.clone()).collect();
        let seen = self.take_read(&table, &key, Some(&names));
        let mut req = self.client.table(table.as_str()).put(key, columns);
        for cell in &seen {
            req = req.context(cell.name.clone(), cell.context.clone());
        }
        if let Some(ttl) = ttl_secs {
            req = req.ttl(ttl);
        }
        if let Some(c) = self.consistency {
            req = req.consistency(c);
        }
        req.await?;
        Ok(written_note(seen.len()))
    }

    async fn delete(
        &mut self,
        table: String,
        key: Bytes,
        columns: Vec<Vec<u8>>,
    ) -> Result<String, ShellError> {
        let handle = self.client.table(table.as_str());
        let (mut req, seen) = if columns.is_empty() {
            let seen = self.take_read(&table, &key, None);
            (handle.delete_row(key.clone()), seen)
        } else {
            let names: Vec<Bytes> = columns.into_iter().map(Bytes::from).collect();
            let seen = self.take_read(&table, &key, Some(&names));
            (handle.delete_columns(key.clone(), names), seen)
        };
        if !seen.is_empty() {
            req = req.context_from(&Row {
                key,
                cells: seen.clone(),
                meta: Default::default(),
            });
        }
        if let Some(c) = self.consistency {
            req = req.consistency(c);
        }
        req.await?;
        Ok(written_note(seen.len()))
    }

    async fn get(
        &mut self,
        table: String,
        key: Bytes,
        columns: Vec<Vec<u8>>,
    ) -> Result<String, ShellError> {
        let handle = self.client.table(table.as_str());
        let mut req = if columns.is_empty() {
            handle.get(key.clone())
        } else {
            handle.get_columns(key.clone(), &columns)
        };
        if let Some(c) = self.consistency {
            req = req.consistency(c);
        }
        let row = req.await?;
        self.remember(&table, &key, &row.cells);
        Ok(show_cells(&row.cells))
    }

    async fn slice(
        &mut self,
        mut cursor: SliceCursor,
        token: Option<Bytes>,
    ) -> Result<String, ShellError> {
        let from = cursor
            .from
            .clone()
            .map_or(Bound::Unbounded, Bound::Included);
        let to = cursor.to.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let mut req = self
            .client
            .table(cursor.table.as_str())
            .slice(cursor.key.clone(), (from, to), cursor.limit)
            .paging(token);
        if let Some(c) = self.consistency {
            req = req.consistency(c);
        }
        let page = req.await?;
        self.remember(&cursor.table, &cursor.key, &page.row.cells);
        let mut text = show_cells(&page.row.cells);
        if let Some(next) = page.next_page {
            cursor.token = next;
            self.cursor = Some(cursor);
            text.push_str("\n(more: type next for the next page)");
        } else {
            self.cursor = None;
        }
        Ok(text)
    }
}

fn written_note(superseded: usize) -> String {
    match superseded {
        0 => "ok".to_owned(),
        1 => "ok (superseding 1 column as read)".to_owned(),
        n => format!("ok (superseding {n} columns as read)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn target(table: &str, key: &str, columns: &[&str]) -> RowTarget {
        RowTarget {
            table: table.into(),
            key: w(key),
            columns: columns.iter().map(|c| w(c)).collect(),
        }
    }

    #[test]
    fn split_table_first_word_is_table_without_current() {
        let got = split_table(&[w("users"), w("alice"), w("name")], None, &[]).unwrap();
        assert_eq!(got, target("users", "alice", &["name"]));
    }

    #[test]
    fn split_table_uses_current_unless_first_is_known_table() {
        let known = vec!["users".to_owned()];
        let got = split_table(&[w("alice"), w("name")], Some("people"), &known).unwrap();
        assert_eq!(got, target("people", "alice", &["name"]));
        let got = split_table(&[w("users"), w("bob")], Some("people"), &known).unwrap();
        assert_eq!(got, target("users", "bob", &[]));
        // A lone word is always the key.
        let got = split_table(&[w("users")], Some("people"), &known).unwrap();
        assert_eq!(got, target("people", "users", &[]));
    }

    #[test]
    fn split_table_without_current_needs_two_words() {
        assert!(matches!(
            split_table(&[w("alice")], None, &[]),
            Err(ShellError::NoTable)
        ));
    }

    #[test]
    fn describe_client_error_unknown_table() {
        let e = ClientError::Server(sibyl_protocol::ServerError::new(
            ErrorKind::UnknownTable {
                table: "users".into(),
            },
            "no such table",
        ));
        assert_eq!(describe_client_error(&e), "unknown table \"users\"");
    }
}
