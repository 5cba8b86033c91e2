//! The shell's `help` text: the whole grammar in one screen. Keep it in step with
//! [`crate::cli::command`] (the parser's usage lines say the same things).

/// What `help` prints.
pub const HELP: &str = r#"Sibyl shell. Commands (keywords are case-insensitive; end with ; or a new line):

  create table NAME [if not exists] [rf=N] [conflict=causal|lww] [ttl=SECS]
               [compaction=size_tiered|leveled] [consistency=LEVEL] [read=LEVEL] [write=LEVEL]
                                  rf defaults to min(3, nodes in the cluster)
  drop table NAME [if exists]
  tables | list tables            table names
  describe NAME                   a table's options
  use NAME                        the table used when a command omits TABLE
  put [TABLE] KEY col=value [col=value ...] [ttl=SECS]
  get [TABLE] KEY [col ...]       the whole row, or the named columns
  slice [TABLE] KEY FROM TO [limit N]
                                  columns FROM <= name < TO (* = unbounded), N per page
                                  (default 100); `next` shows the following page
  delete [TABLE] KEY [col ...]    the named columns, or the whole row
  consistency [LEVEL | default]   per-request consistency for this session; LEVEL is
                                  one|two|three|quorum|all|local_quorum|N, optionally
                                  followed by :strict (home replicas only) or a word strict
  create user NAME [superuser] [if not exists] [password=TEXT]
  alter user NAME [password=TEXT] a new password
                                  without password=, asked on the terminal (no echo);
                                  the password never leaves the shell (its SCRAM verifier
                                  does); needs the users permission on a node with
                                  --auth required
  drop user NAME [if exists]
  users | list users              user names (superusers marked) and their permissions
  grant read|write|alter on TABLE to USER
  grant create|users|operate to USER
  revoke read|write|alter on TABLE from USER
  revoke create|users|operate from USER
                                  table permissions: read (get, slice), write (put,
                                  delete), alter (drop table); cluster-wide: create
                                  (create table), users (manage users and permissions),
                                  operate (flush, compact, repair, ... in sibyl-admin);
                                  a superuser holds them all
  ping                            checks the node answers
  topology                        the nodes of the cluster
  help | quit

Values: a word, a "double-quoted string" (escapes \" \\ \n \t \r), or 0x.. hex bytes.
  Values are shown quoted when they are UTF-8, else as 0x.. hex.
TABLE: may be omitted after `use`. For get/delete, a first word that names an existing
  table is taken as the table when more words follow.
Versions: a column written concurrently shows every version,
  name: 2 siblings: "alice" | "alicia"
  and a deleted version shows as <deleted>. The shell remembers what the last get/slice of
  a (table, key) returned; the next put or delete of those columns supersedes exactly that
  (so a put after a get resolves siblings). A write without a prior read is a blind write.
Scripts: `sibyl-cli -e "cmd; cmd"` or a script on standard input, one command per line,
  # starts a comment line. The exit status is 1 if any command failed.
"#;
