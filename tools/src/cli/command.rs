//! The shell's grammar: a statement of [`Token`]s -> [`Command`].
//!
//! Keywords are case-insensitive; names, keys and values are exact. Where a command takes
//! an optional TABLE before the key (`get [TABLE] KEY [col ...]`), the parser keeps the
//! leading words as [`Command`] fields of type `Vec<Vec<u8>>` and the shell decides which
//! word is the table (see [`crate::cli::shell::split_table`]), because only the shell knows
//! the current table and the table names. `put` and `slice` are unambiguous by word count
//! and resolved here. Pure functions; the full grammar is [`crate::cli::help::HELP`].

use sibyl_protocol::{Compaction, ConflictMode, Consistency, Grant, Permission};

use crate::cli::lexer::Token;
use crate::consistency::{parse_consistency, ConsistencyParseError};

/// Columns a `slice` returns per page unless `limit N` says otherwise.
pub const DEFAULT_SLICE_LIMIT: u32 = 100;

/// A parsed shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `create table NAME [if not exists] [option=value ...]`
    CreateTable {
        /// Table name.
        name: String,
        /// `if not exists` was given.
        if_not_exists: bool,
        /// The options given.
        spec: TableSpec,
    },
    /// `drop table NAME [if exists]`
    DropTable {
        /// Table name.
        name: String,
        /// `if exists` was given.
        if_exists: bool,
    },
    /// `tables` / `list tables`
    ListTables,
    /// `create user NAME [superuser] [if not exists] [password=TEXT]`; without
    /// `password=` the shell asks for it without echo.
    CreateUser {
        /// User name.
        name: String,
        /// `superuser` was given.
        superuser: bool,
        /// `if not exists` was given.
        if_not_exists: bool,
        /// `password=TEXT`, when given.
        password: Option<String>,
    },
    /// `alter user NAME [password=TEXT]`: a new password (asked without echo when not
    /// given).
    AlterUser {
        /// User name.
        name: String,
        /// `password=TEXT`, when given.
        password: Option<String>,
    },
    /// `drop user NAME [if exists]`
    DropUser {
        /// User name.
        name: String,
        /// `if exists` was given.
        if_exists: bool,
    },
    /// `users` / `list users`
    ListUsers,
    /// `grant PERMISSION [on TABLE] to USER`
    Grant {
        /// User name.
        user: String,
        /// The permission and, for a table permission, its table.
        grant: Grant,
    },
    /// `revoke PERMISSION [on TABLE] from USER`
    Revoke {
        /// User name.
        user: String,
        /// The permission and, for a table permission, its table.
        grant: Grant,
    },
    /// `describe [table] NAME`
    Describe {
        /// Table name.
        name: String,
    },
    /// `use NAME`
    Use {
        /// Table name.
        name: String,
    },
    /// `put [TABLE] KEY col=value ... [ttl=SECS]`
    Put {
        /// The table, when given.
        table: Option<String>,
        /// Partition key.
        key: Vec<u8>,
        /// Columns in the order given.
        columns: Vec<(Vec<u8>, Vec<u8>)>,
        /// `ttl=SECS`.
        ttl_secs: Option<u32>,
    },
    /// `get [TABLE] KEY [col ...]`: the words after `get`.
    Get {
        /// `[TABLE] KEY [col ...]`, resolved by the shell.
        words: Vec<Vec<u8>>,
    },
    /// `delete [TABLE] KEY [col ...]`: the words after `delete`.
    Delete {
        /// `[TABLE] KEY [col ...]`, resolved by the shell.
        words: Vec<Vec<u8>>,
    },
    /// `slice [TABLE] KEY FROM TO [limit N]`
    Slice {
        /// The table, when given.
        table: Option<String>,
        /// Partition key.
        key: Vec<u8>,
        /// First column name (inclusive); `None` for `*`.
        from: Option<Vec<u8>>,
        /// End column name (exclusive); `None` for `*`.
        to: Option<Vec<u8>>,
        /// Columns per page.
        limit: u32,
    },
    /// `next`: the next page of the last slice.
    Next,
    /// `consistency [LEVEL[:strict]]`; `None` shows the current setting, `default` clears it.
    Consistency {
        /// The new setting: `Some(None)` for `default` (the table's).
        set: Option<Option<Consistency>>,
    },
    /// `ping`
    Ping,
    /// `topology`
    Topology,
    /// `help`
    Help,
    /// `quit` / `exit`
    Quit,
}

/// Options of `create table`; `None` = the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSpec {
    /// `rf=N`.
    pub replication_factor: Option<u16>,
    /// `conflict=causal|lww`.
    pub conflict_mode: Option<ConflictMode>,
    /// `ttl=SECS`.
    pub default_ttl_secs: Option<u32>,
    /// `compaction=size_tiered|leveled`.
    pub compaction: Option<Compaction>,
    /// `consistency=LEVEL` (read and write) or `read=LEVEL`.
    pub read_consistency: Option<Consistency>,
    /// `consistency=LEVEL` (read and write) or `write=LEVEL`.
    pub write_consistency: Option<Consistency>,
}

/// A statement that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The first word is no command.
    #[error("unknown command {word:?} (type help)")]
    UnknownCommand {
        /// The word.
        word: String,
    },
    /// The statement does not match its command's usage.
    #[error("usage: {usage}")]
    Usage {
        /// The command's usage line.
        usage: &'static str,
    },
    /// An option or argument has a bad value.
    #[error("invalid {what} {given:?}: {reason}")]
    InvalidValue {
        /// Which option or argument.
        what: String,
        /// What was given.
        given: String,
        /// What is expected.
        reason: String,
    },
    /// A bad consistency spelling.
    #[error(transparent)]
    Consistency(#[from] ConsistencyParseError),
}

const USAGE_CREATE: &str = "create table NAME [if not exists] [rf=N] [conflict=causal|lww] \
     [ttl=SECS] [compaction=size_tiered|leveled] [consistency=LEVEL] [read=LEVEL] [write=LEVEL]";
const USAGE_DROP: &str = "drop table NAME [if exists] | drop user NAME [if exists]";
const USAGE_CREATE_USER: &str =
    "create user NAME [superuser] [if not exists] [password=TEXT]   (asked when not given)";
const USAGE_ALTER_USER: &str = "alter user NAME [password=TEXT]   (asked when not given)";
const USAGE_GRANT: &str = "grant read|write|alter on TABLE to USER | \
     grant create|users|operate to USER";
const USAGE_REVOKE: &str = "revoke read|write|alter on TABLE from USER | \
     revoke create|users|operate from USER";
const USAGE_DESCRIBE: &str = "describe NAME";
const USAGE_USE: &str = "use NAME";
const USAGE_PUT: &str = "put [TABLE] KEY col=value [col=value ...] [ttl=SECS]";
const USAGE_GET: &str = "get [TABLE] KEY [col ...]";
const USAGE_DELETE: &str = "delete [TABLE] KEY [col ...]";
const USAGE_SLICE: &str = "slice [TABLE] KEY FROM TO [limit N]   (FROM/TO: a column name or *)";
const USAGE_CONSISTENCY: &str =
    "consistency [one|two|three|quorum|all|local_quorum|N[:strict]|default]";
const USAGE_NOARGS: &str =
    "ping | topology | tables | users | next | help | quit take no arguments";

/// Parses one statement (non-empty token list from [`crate::cli::lexer::lex`]).
pub fn parse(tokens: &[Token]) -> Result<Command, ParseError> {
    let Some((first, rest)) = tokens.split_first() else {
        return Err(ParseError::UnknownCommand {
            word: String::new(),
        });
    };
    let Some(cmd) = first.keyword() else {
        return Err(ParseError::UnknownCommand { word: first.show() });
    };
    let no_args = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(ParseError::Usage {
                usage: USAGE_NOARGS,
            })
        }
    };
    match cmd.as_str() {
        "create" => parse_create(rest),
        "drop" => parse_drop(rest),
        "tables" => no_args(Command::ListTables),
        "users" => no_args(Command::ListUsers),
        "alter" => parse_alter_user(rest),
        "grant" => {
            parse_grant(rest, "to", USAGE_GRANT).map(|(user, grant)| Command::Grant { user, grant })
        }
        "revoke" => parse_grant(rest, "from", USAGE_REVOKE)
            .map(|(user, grant)| Command::Revoke { user, grant }),
        "list" => match rest {
            [t] if t.keyword().as_deref() == Some("tables") => Ok(Command::ListTables),
            [t] if t.keyword().as_deref() == Some("users") => Ok(Command::ListUsers),
            _ => Err(ParseError::Usage {
                usage: "list tables | list users",
            }),
        },
        "describe" | "desc" => {
            let rest = skip_keyword(rest, "table");
            match rest {
                [name] => Ok(Command::Describe {
                    name: name_of(name, USAGE_DESCRIBE)?,
                }),
                _ => Err(ParseError::Usage {
                    usage: USAGE_DESCRIBE,
                }),
            }
        }
        "use" => match rest {
            [name] => Ok(Command::Use {
                name: name_of(name, USAGE_USE)?,
            }),
            _ => Err(ParseError::Usage { usage: USAGE_USE }),
        },
        "put" | "insert" => parse_put(rest),
        "get" => Ok(Command::Get {
            words: words(rest, 1, USAGE_GET)?,
        }),
        "delete" | "del" => Ok(Command::Delete {
            words: words(rest, 1, USAGE_DELETE)?,
        }),
        "slice" | "scan" => parse_slice(rest),
        "next" | "more" => no_args(Command::Next),
        "consistency" => parse_consistency_cmd(rest),
        "ping" => no_args(Command::Ping),
        "topology" => no_args(Command::Topology),
        "help" | "?" => Ok(Command::Help),
        "quit" | "exit" => no_args(Command::Quit),
        _ => Err(ParseError::UnknownCommand { word: first.show() }),
    }
}

fn skip_keyword<'a>(tokens: &'a [Token], keyword: &str) -> &'a [Token] {
    match tokens.split_first() {
        Some((t, rest)) if t.keyword().as_deref() == Some(keyword) => rest,
        _ => tokens,
    }
}

/// Whether `tokens` are exactly the keywords `kw`.
fn is_keywords(tokens: &[Token], kw: &[&str]) -> bool {
    tokens.len() == kw.len()
        && tokens
            .iter()
            .zip(kw)
            .all(|(t, k)| t.keyword().as_deref() == Some(*k))
}

fn name_of(token: &Token, usage: &'static str) -> Result<String, ParseError> {
    match token.text() {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err(ParseError::Usage { usage }),
    }
}

/// Every token as bytes; at least `min`, and no `=`.
fn words(tokens: &[Token], min: usize, usage: &'static str) -> Result<Vec<Vec<u8>>, ParseError> {
    let out: Option<Vec<Vec<u8>>> = tokens.iter().map(Token::bytes).collect();
    match out {
        Some(v) if v.len() >= min => Ok(v),
        _ => Err(ParseError::Usage { usage }),
    }
}

/// The leading plain tokens of a statement and the `name = value` pairs after them.
type Assignments = (Vec<Token>, Vec<(Token, Token)>);

/// Splits `tokens` into the leading plain tokens and the `name = value` triples after them.
fn assignments(tokens: &[Token], usage: &'static str) -> Result<Assignments, ParseError> {
    let first_eq = tokens.iter().position(|t| *t == Token::Eq);
    let split = match first_eq {
        Some(0) => return Err(ParseError::Usage { usage }),
        Some(i) => i - 1,
        None => tokens.len(),
    };
    let (lead, tail) = tokens.split_at(split);
    let mut pairs = Vec::new();
    let mut it = tail.chunks(3);
    for chunk in &mut it {
        match chunk {
            [name, Token::Eq, value] if *name != Token::Eq && *value != Token::Eq => {
                pairs.push((name.clone(), value.clone()))
            }
            _ => return Err(ParseError::Usage { usage }),
        }
    }
    Ok((lead.to_vec(), pairs))
}

fn invalid(what: &str, given: &Token, reason: &str) -> ParseError {
    ParseError::InvalidValue {
        what: what.to_owned(),
        given: given.text().unwrap_or("=").to_owned(),
        reason: reason.to_owned(),
    }
}

fn number<T: std::str::FromStr>(what: &str, t: &Token) -> Result<T, ParseError> {
    t.text()
        .and_then(|s| s.parse::<T>().ok())
        .ok_or_else(|| invalid(what, t, "expected a non-negative integer"))
}

fn parse_create(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = ParseError::Usage {
        usage: USAGE_CREATE,
    };
    let Some((kw, rest)) = rest.split_first() else {
        return Err(usage);
    };
    if kw.keyword().as_deref() == Some("user") {
        return parse_create_user(rest);
    }
    if kw.keyword().as_deref() != Some("table") {
        return Err(usage);
    }
    let (lead, opts) = assignments(rest, USAGE_CREATE)?;
    let (name, flags) = match lead.split_first() {
        Some((n, flags)) => (name_of(n, USAGE_CREATE)?, flags),
        None => return Err(usage),
    };
    let if_not_exists = match flags {
        [] => false,
        f if is_keywords(f, &["if", "not", "exists"]) => true,
        _ => return Err(usage),
    };
    let mut spec = TableSpec::default();
    for (k, v) in &opts {
        let key = k.keyword().unwrap_or_default();
        let text = v.text().unwrap_or_default().to_ascii_lowercase();
        match key.as_str() {
            "rf" | "replication" | "replication_factor" => {
                let n: u16 = number("rf", v)?;
                if n == 0 {
                    return Err(invalid("rf", v, "at least 1"));
                }
                spec.replication_factor = Some(n);
            }
            "conflict" => {
                spec.conflict_mode = Some(match text.as_str() {
                    "causal" => ConflictMode::Causal,
                    "lww" => ConflictMode::Lww,
                    _ => return Err(invalid("conflict", v, "causal or lww")),
                })
            }
            "ttl" => spec.default_ttl_secs = Some(number("ttl", v)?),
            "compaction" => {
                spec.compaction = Some(match text.as_str() {
                    "size_tiered" | "size-tiered" | "stcs" => Compaction::SizeTiered,
                    "leveled" | "lcs" => Compaction::Leveled,
                    _ => return Err(invalid("compaction", v, "size_tiered or leveled")),
                })
            }
            "consistency" => {
                let c = parse_consistency(&text)?;
                spec.read_consistency = Some(c);
                spec.write_consistency = Some(c);
            }
            "read" => spec.read_consistency = Some(parse_consistency(&text)?),
            "write" => spec.write_consistency = Some(parse_consistency(&text)?),
            _ => {
                return Err(invalid(
                    "table option",
                    k,
                    "expected rf, conflict, ttl, compaction, consistency, read or write",
                ))
            }
        }
    }
    Ok(Command::CreateTable {
        name,
        if_not_exists,
        spec,
    })
}

/// The `password=TEXT` option of the user commands, if any; nothing else is allowed.
fn password_option(
    opts: &[(&Token, &Token)],
    usage: &'static str,
) -> Result<Option<String>, ParseError> {
    match opts {
        [] => Ok(None),
        [(k, v)] if k.keyword().as_deref() == Some("password") => v
            .text()
            .map(|t| Some(t.to_owned()))
            .ok_or(ParseError::Usage { usage }),
        _ => Err(ParseError::Usage { usage }),
    }
}

fn parse_create_user(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = ParseError::Usage {
        usage: USAGE_CREATE_USER,
    };
    let (lead, opts) = assignments(rest, USAGE_CREATE_USER)?;
    let Some((name, mut flags)) = lead.split_first() else {
        return Err(usage);
    };
    let superuser = flags
        .first()
        .is_some_and(|f| f.keyword().as_deref() == Some("superuser"));
    if superuser {
        flags = flags.get(1..).unwrap_or(&[]);
    }
    let if_not_exists = match flags {
        [] => false,
        f if is_keywords(f, &["if", "not", "exists"]) => true,
        _ => return Err(usage),
    };
    let opts: Vec<(&Token, &Token)> = opts.iter().map(|(k, v)| (k, v)).collect();
    Ok(Command::CreateUser {
        name: name_of(name, USAGE_CREATE_USER)?,
        superuser,
        if_not_exists,
        password: password_option(&opts, USAGE_CREATE_USER)?,
    })
}

fn parse_alter_user(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = ParseError::Usage {
        usage: USAGE_ALTER_USER,
    };
    let Some((kw, rest)) = rest.split_first() else {
        return Err(usage);
    };
    if kw.keyword().as_deref() != Some("user") {
        return Err(usage);
    }
    let (lead, opts) = assignments(rest, USAGE_ALTER_USER)?;
    let [name] = lead.as_slice() else {
        return Err(usage);
    };
    let opts: Vec<(&Token, &Token)> = opts.iter().map(|(k, v)| (k, v)).collect();
    Ok(Command::AlterUser {
        name: name_of(name, USAGE_ALTER_USER)?,
        password: password_option(&opts, USAGE_ALTER_USER)?,
    })
}

/// `PERMISSION [on TABLE] (to|from) USER`: a table permission needs its table, a
/// cluster-wide one takes none.
fn parse_grant(
    rest: &[Token],
    to: &str,
    usage: &'static str,
) -> Result<(String, Grant), ParseError> {
    let err = || ParseError::Usage { usage };
    let is = |t: &Token, kw: &str| t.keyword().as_deref() == Some(kw);
    let (perm, table, user) = match rest {
        [perm, on, table, kw, user] if is(on, "on") && is(kw, to) => (perm, Some(table), user),
        [perm, kw, user] if is(kw, to) => (perm, None, user),
        _ => return Err(err()),
    };
    let permission = perm
        .keyword()
        .and_then(|p| Permission::from_name(&p))
        .ok_or_else(err)?;
    if permission.is_table_scoped() != table.is_some() {
        return Err(err());
    }
    let table = table.map(|t| name_of(t, usage)).transpose()?;
    Ok((name_of(user, usage)?, Grant { permission, table }))
}

fn parse_drop(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = ParseError::Usage { usage: USAGE_DROP };
    match rest {
        [kw, name, flags @ ..] if kw.keyword().as_deref() == Some("user") => {
            let if_exists = match flags {
                [] => false,
                f if is_keywords(f, &["if", "exists"]) => true,
                _ => return Err(usage),
            };
            Ok(Command::DropUser {
                name: name_of(name, USAGE_DROP)?,
                if_exists,
            })
        }
        [kw, name, flags @ ..] if kw.keyword().as_deref() == Some("table") => {
            let if_exists = match flags {
                [] => false,
                f if is_keywords(f, &["if", "exists"]) => true,
                _ => return Err(usage),
            };
            Ok(Command::DropTable {
                name: name_of(name, USAGE_DROP)?,
                if_exists,
            })
        }
        _ => Err(usage),
    }
}

fn parse_put(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = ParseError::Usage { usage: USAGE_PUT };
    let (lead, pairs) = assignments(rest, USAGE_PUT)?;
    let (table, key) = match lead.as_slice() {
        [key] => (None, key),
        [table, key] => (Some(name_of(table, USAGE_PUT)?), key),
        _ => return Err(usage),
    };
    let mut columns = Vec::new();
    let mut ttl_secs = None;
    for (name, value) in &pairs {
        // An unquoted `ttl` is the option; quote it ("ttl"=v) to write a column so named.
        if name.keyword().as_deref() == Some("ttl") {
            ttl_secs = Some(number("ttl", value)?);
            continue;
        }
        match (name.bytes(), value.bytes()) {
            (Some(n), Some(v)) => columns.push((n, v)),
            _ => return Err(ParseError::Usage { usage: USAGE_PUT }),
        }
    }
    if columns.is_empty() {
        return Err(usage);
    }
    Ok(Command::Put {
        table,
        key: key.bytes().ok_or(ParseError::Usage { usage: USAGE_PUT })?,
        columns,
        ttl_secs,
    })
}

fn parse_slice(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = || ParseError::Usage { usage: USAGE_SLICE };
    let (args, limit) = match rest {
        [args @ .., kw, count] if kw.keyword().as_deref() == Some("limit") => {
            let n: u32 = number("limit", count)?;
            if n == 0 {
                return Err(invalid("limit", count, "at least 1"));
            }
            (args, n)
        }
        args => (args, DEFAULT_SLICE_LIMIT),
    };
    let bound = |t: &Token| match t {
        Token::Word(w) if w == "*" => Ok(None),
        t => t.bytes().map(Some).ok_or_else(usage),
    };
    let (table, key, from, to) = match args {
        [key, from, to] => (None, key, from, to),
        [table, key, from, to] => (Some(name_of(table, USAGE_SLICE)?), key, from, to),
        _ => return Err(usage()),
    };
    Ok(Command::Slice {
        table,
        key: key.bytes().ok_or_else(usage)?,
        from: bound(from)?,
        to: bound(to)?,
        limit,
    })
}

fn parse_consistency_cmd(rest: &[Token]) -> Result<Command, ParseError> {
    let usage = ParseError::Usage {
        usage: USAGE_CONSISTENCY,
    };
    let spelled = match rest {
        [] => return Ok(Command::Consistency { set: None }),
        [level] => level.text().map(str::to_owned),
        // `consistency quorum strict` reads as `quorum:strict`.
        [level, mode] => match (level.text(), mode.text()) {
            (Some(l), Some(m)) => Some(format!("{l}:{m}")),
            _ => None,
        },
        _ => None,
    };
    let Some(spelled) = spelled else {
        return Err(usage);
    };
    if spelled.eq_ignore_ascii_case("default") {
        return Ok(Command::Consistency { set: Some(None) });
    }
    Ok(Command::Consistency {
        set: Some(Some(parse_consistency(&spelled)?)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::lexer::lex;

    fn p(line: &str) -> Result<Command, ParseError> {
        let mut st = lex(line).unwrap();
        assert_eq!(st.len(), 1, "one statement in {line:?}");
        parse(&st.remove(0))
    }

    #[test]
    fn parse_grant_and_revoke() {
        let g = |permission, table: Option<&str>| Grant {
            permission,
            table: table.map(str::to_owned),
        };
        assert_eq!(
            p("grant read on kv to alice").unwrap(),
            Command::Grant {
                user: "alice".into(),
                grant: g(Permission::Read, Some("kv")),
            }
        );
        assert_eq!(
            p("REVOKE Write ON kv FROM alice").unwrap(),
            Command::Revoke {
                user: "alice".into(),
                grant: g(Permission::Write, Some("kv")),
            }
        );
        assert_eq!(
            p("grant create to bob").unwrap(),
            Command::Grant {
                user: "bob".into(),
                grant: g(Permission::Create, None),
            }
        );
        for bad in [
            "grant read to alice",
            "grant create on kv to alice",
            "grant fly to alice",
            "grant read on kv from alice",
            "revoke operate to alice",
            "grant",
        ] {
            assert!(matches!(p(bad), Err(ParseError::Usage { .. })), "{bad:?}");
        }
    }

    #[test]
    fn parse_create_table_with_options() {
        let got = p("CREATE TABLE users if not exists rf=1 conflict=lww ttl=60 \
                     compaction=leveled consistency=one write=all:strict")
        .unwrap();
        assert_eq!(
            got,
            Command::CreateTable {
                name: "users".into(),
                if_not_exists: true,
                spec: TableSpec {
                    replication_factor: Some(1),
                    conflict_mode: Some(ConflictMode::Lww),
                    default_ttl_secs: Some(60),
                    compaction: Some(Compaction::Leveled),
                    read_consistency: Some(Consistency::ONE),
                    write_consistency: Some(Consistency::ALL.strict()),
                },
            }
        );
    }

    #[test]
    fn parse_create_table_rejects_unknown_option() {
        assert!(matches!(
            p("create table t colour=red"),
            Err(ParseError::InvalidValue { .. })
        ));
    }

    #[test]
    fn parse_put_with_and_without_table() {
        assert_eq!(
            p(r#"put alice name="Alice B" ttl=5"#).unwrap(),
            Command::Put {
                table: None,
                key: b"alice".to_vec(),
                columns: vec![(b"name".to_vec(), b"Alice B".to_vec())],
                ttl_secs: Some(5),
            }
        );
        assert_eq!(
            p(r#"put users 0x01ff "ttl"=7"#).unwrap(),
            Command::Put {
                table: Some("users".into()),
                key: vec![1, 0xff],
                columns: vec![(b"ttl".to_vec(), b"7".to_vec())],
                ttl_secs: None,
            }
        );
    }

    #[test]
    fn parse_put_without_columns_is_usage_error() {
        assert!(matches!(
            p("put users alice"),
            Err(ParseError::Usage { .. })
        ));
        assert!(matches!(
            p("put users alice name="),
            Err(ParseError::Usage { .. })
        ));
    }

    #[test]
    fn parse_slice_bounds_and_limit() {
        assert_eq!(
            p("slice users k a * limit 10").unwrap(),
            Command::Slice {
                table: Some("users".into()),
                key: b"k".to_vec(),
                from: Some(b"a".to_vec()),
                to: None,
                limit: 10,
            }
        );
        assert_eq!(
            p(r#"slice k * "*""#).unwrap(),
            Command::Slice {
                table: None,
                key: b"k".to_vec(),
                from: None,
                to: Some(b"*".to_vec()),
                limit: DEFAULT_SLICE_LIMIT,
            }
        );
    }

    #[test]
    fn parse_consistency_forms() {
        assert_eq!(
            p("consistency").unwrap(),
            Command::Consistency { set: None }
        );
        assert_eq!(
            p("consistency quorum strict").unwrap(),
            Command::Consistency {
                set: Some(Some(Consistency::QUORUM.strict()))
            }
        );
        assert_eq!(
            p("consistency default").unwrap(),
            Command::Consistency { set: Some(None) }
        );
        assert!(matches!(
            p("consistency most"),
            Err(ParseError::Consistency(_))
        ));
    }

    #[test]
    fn parse_unknown_command_names_it() {
        assert_eq!(
            p("frobnicate x").unwrap_err().to_string(),
            "unknown command \"frobnicate\" (type help)"
        );
    }

    #[test]
    fn parse_user_commands() {
        assert_eq!(
            p("create user alice superuser if not exists password=\"s3 cret\"").unwrap(),
            Command::CreateUser {
                name: "alice".into(),
                superuser: true,
                if_not_exists: true,
                password: Some("s3 cret".into()),
            }
        );
        assert_eq!(
            p("CREATE USER bob").unwrap(),
            Command::CreateUser {
                name: "bob".into(),
                superuser: false,
                if_not_exists: false,
                password: None,
            }
        );
        assert_eq!(
            p("alter user bob password=x").unwrap(),
            Command::AlterUser {
                name: "bob".into(),
                password: Some("x".into()),
            }
        );
        assert_eq!(
            p("drop user bob if exists").unwrap(),
            Command::DropUser {
                name: "bob".into(),
                if_exists: true
            }
        );
        assert_eq!(p("users").unwrap(), Command::ListUsers);
        assert_eq!(p("list users").unwrap(), Command::ListUsers);
        for bad in [
            "create user",
            "create user a b",
            "create user a rf=3",
            "alter user a b",
            "alter table t",
            "drop user",
        ] {
            assert!(
                matches!(p(bad), Err(ParseError::Usage { .. })),
                "{bad:?}: {:?}",
                p(bad)
            );
        }
    }

    #[test]
    fn parse_list_tables_and_drop() {
        assert_eq!(p("list tables").unwrap(), Command::ListTables);
        assert_eq!(
            p("drop table t if exists").unwrap(),
            Command::DropTable {
                name: "t".into(),
                if_exists: true
            }
        );
    }
}
