//! Client requests: [`Request`] and the mutations it carries, with their body encodings.
//!
//! A request travels in a frame whose opcode is [`Request::opcode`] and whose flags are 0.
//! Body grammar per opcode is in `doc/wire_format.md` and beside each `encode`. Decoding
//! consumes the whole body (trailing bytes are an error). Pure data.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::message::opcode::Opcode;
use crate::message::types::{CellContext, ColumnWrite, Consistency, Grant, Selector, TableOptions};
use crate::scram::{ScramVerifier, KEY_LEN};
use crate::wire::{WireReader, WireWriter};
use crate::{PROTOCOL_VERSION, SUPPORTED_VERSIONS};

/// The columns written to one row. Wire: `string` table, `bytes` key, `option<u32>`
/// ttl_secs, `option<i64>` timestamp_micros, `list<column write>` columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowInsert {
    /// Table name.
    pub table: String,
    /// Partition key.
    pub key: Bytes,
    /// Time to live of every column written; `None` = the table's default.
    pub ttl_secs: Option<u32>,
    /// Client-supplied write time (lww tables); `None` = the coordinator's clock.
    pub timestamp_micros: Option<i64>,
    /// The write's id, chosen by the client: a retry carrying the same id is the same
    /// write (section 5.2); `None` = a write that cannot be told from another.
    pub write_id: Option<WriteId>,
    /// The columns, each with the context it supersedes.
    pub columns: Vec<ColumnWrite>,
}

/// A client-chosen identifier of one write (an INSERT or DELETE, or one mutation of a
/// BATCH): the versions a write and its retries create are recognised as one by it.
/// Wire: 16 bytes, big-endian. Unique per write; the native client draws 64 random bits
/// per client and counts the other 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId(pub u128);

fn encode_write_id(w: &mut WireWriter, id: Option<&WriteId>) -> Result<(), ProtocolError> {
    w.option(id, |w, v| {
        w.u64((v.0 >> 64) as u64);
        w.u64(v.0 as u64);
        Ok(())
    })
}

fn decode_write_id(r: &mut WireReader) -> Result<Option<WriteId>, ProtocolError> {
    r.option("write id", |r| {
        let high = r.u64("write id")?;
        let low = r.u64("write id")?;
        Ok(WriteId((u128::from(high) << 64) | u128::from(low)))
    })
}

impl RowInsert {
    fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("table", &self.table)?;
        w.bytes("key", &self.key)?;
        w.option(self.ttl_secs.as_ref(), |w, v| {
            w.u32(*v);
            Ok(())
        })?;
        w.option(self.timestamp_micros.as_ref(), |w, v| {
            w.i64(*v);
            Ok(())
        })?;
        encode_write_id(w, self.write_id.as_ref())?;
        w.list("columns", &self.columns, |w, c| c.encode(w))
    }

    fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        Ok(RowInsert {
            table: r.string("table")?,
            key: r.bytes("key")?,
            ttl_secs: r.option("ttl", |r| r.u32("ttl"))?,
            timestamp_micros: r.option("timestamp", |r| r.i64("timestamp"))?,
            write_id: decode_write_id(r)?,
            columns: r.list("columns", ColumnWrite::MIN_LEN, ColumnWrite::decode)?,
        })
    }
}

/// What a delete removes. Wire: `u8` tag; 0 columns `list<cell context>`; 1 row
/// `list<cell context>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeleteTarget {
    /// These columns, each with the context of what the caller read of it.
    Columns(Vec<CellContext>),
    /// The whole row; `contexts` are the contexts of the cells the caller read (may be
    /// empty): in causal tables they are superseded exactly, in lww tables ignored.
    Row {
        /// Contexts of the cells the caller saw.
        contexts: Vec<CellContext>,
    },
}

/// A delete of columns or of a row. Wire: `string` table, `bytes` key, `option<i64>`
/// timestamp_micros, `option<write id>`, delete target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowDelete {
    /// Table name.
    pub table: String,
    /// Partition key.
    pub key: Bytes,
    /// Client-supplied delete time (lww tables); `None` = the coordinator's clock.
    pub timestamp_micros: Option<i64>,
    /// The delete's id, chosen by the client (see [`RowInsert::write_id`]).
    pub write_id: Option<WriteId>,
    /// What to delete.
    pub target: DeleteTarget,
}

impl RowDelete {
    fn encode(&self, w: &mut WireWriter) -> Result<(), ProtocolError> {
        w.string("table", &self.table)?;
        w.bytes("key", &self.key)?;
        w.option(self.timestamp_micros.as_ref(), |w, v| {
            w.i64(*v);
            Ok(())
        })?;
        encode_write_id(w, self.write_id.as_ref())?;
        let (tag, cells) = match &self.target {
            DeleteTarget::Columns(cells) => (0, cells),
            DeleteTarget::Row { contexts } => (1, contexts),
        };
        w.u8(tag);
        w.list("delete cells", cells, |w, c| c.encode(w))
    }

    fn decode(r: &mut WireReader) -> Result<Self, ProtocolError> {
        let table = r.string("table")?;
        let key = r.bytes("key")?;
        let timestamp_micros = r.option("timestamp", |r| r.i64("timestamp"))?;
        let write_id = decode_write_id(r)?;
        let tag = r.u8("delete target")?;
        let cells =
            |r: &mut WireReader| r.list("delete cells", CellContext::MIN_LEN, CellContext::decode);
        let target = match tag {
            0 => DeleteTarget::Columns(cells(r)?),
            1 => DeleteTarget::Row {
                contexts: cells(r)?,
            },
            tag => {
                return Err(ProtocolError::InvalidTag {
                    what: "delete target",
                    tag: u64::from(tag),
                })
            }
        };
        Ok(RowDelete {
            table,
            key,
            timestamp_micros,
            write_id,
            target,
        })
    }
}

/// One element of a batch. Wire: `u8` tag (0 insert, 1 delete), then the row insert or
/// row delete.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// Write columns.
    Insert(RowInsert),
    /// Delete columns or a row.
    Delete(RowDelete),
}

impl Mutation {
    /// The table it writes.
    pub fn table(&self) -> &str {
        match self {
            Mutation::Insert(i) => &i.table,
            Mutation::Delete(d) => &d.table,
        }
    }

    /// The partition key it writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Mutation::Insert(i) => &i.key,
            Mutation::Delete(d) => &d.key,
        }
    }
}

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// Opens a connection. Wire: `u8` version, `string` client name. Its body layout is
    /// the same in every protocol version.
    Handshake {
        /// The protocol version the client wants to speak.
        version: u8,
        /// Free-form client name and version, for logs.
        client: String,
    },
    /// Liveness check. Empty body.
    Ping,
    /// Starts authentication. Wire: `string` mechanism, `bytes` SCRAM client-first.
    AuthStart {
        /// The SASL mechanism; `SCRAM-SHA-256` is the one served.
        mechanism: String,
        /// The SCRAM client-first-message.
        message: Bytes,
    },
    /// Finishes authentication. Wire: `bytes` SCRAM client-final.
    AuthFinish {
        /// The SCRAM client-final-message.
        message: Bytes,
    },
    /// Creates a user. Wire: `string` name, `bool` superuser, `bool` if_not_exists,
    /// verifier (`u32` iterations, `bytes` salt, `bytes` stored_key, `bytes` server_key).
    CreateUser {
        /// User name.
        name: String,
        /// Holds every permission (section 6 "Permissions").
        superuser: bool,
        /// Succeed without change if the user exists.
        if_not_exists: bool,
        /// The password's SCRAM verifier, computed by the client.
        verifier: ScramVerifier,
    },
    /// Sets a user's password. Wire: `string` name, verifier.
    AlterUser {
        /// User name.
        name: String,
        /// The new password's SCRAM verifier.
        verifier: ScramVerifier,
    },
    /// Drops a user. Wire: `string` name, `bool` if_exists.
    DropUser {
        /// User name.
        name: String,
        /// Succeed without change if the user is missing.
        if_exists: bool,
    },
    /// Lists users. Empty body.
    ListUsers,
    /// Grants a permission to a user. Wire: `string` user, grant (`u8` permission,
    /// `option<string>` table).
    Grant {
        /// User name.
        user: String,
        /// The permission, and its table for a table permission.
        grant: Grant,
    },
    /// Revokes a permission from a user. Wire: as [`Request::Grant`].
    Revoke {
        /// User name.
        user: String,
        /// The permission, and its table for a table permission.
        grant: Grant,
    },
    /// Asks for the cluster topology. Empty body.
    Topology,
    /// Wire: `string` name, `bool` if_not_exists, table options.
    CreateTable {
        /// Table name.
        name: String,
        /// Its options.
        options: TableOptions,
        /// Succeed without change if the table exists.
        if_not_exists: bool,
    },
    /// Wire: `string` name, `bool` if_exists.
    DropTable {
        /// Table name.
        name: String,
        /// Succeed without change if the table is missing.
        if_exists: bool,
    },
    /// Empty body.
    ListTables,
    /// Wire: `string` name.
    DescribeTable {
        /// Table name.
        name: String,
    },
    /// Wire: `option<consistency>`, row insert.
    Insert {
        /// What to write.
        insert: RowInsert,
        /// `None` = the table's write consistency.
        consistency: Option<Consistency>,
    },
    /// Wire: `option<consistency>`, `string` table, `bytes` key, selector.
    Get {
        /// Table name.
        table: String,
        /// Partition key.
        key: Bytes,
        /// Which columns.
        selector: Selector,
        /// `None` = the table's read consistency.
        consistency: Option<Consistency>,
    },
    /// Wire: `option<consistency>`, row delete.
    Delete {
        /// What to delete.
        delete: RowDelete,
        /// `None` = the table's write consistency.
        consistency: Option<Consistency>,
    },
    /// Wire: `option<consistency>`, `list<mutation>`. Not atomic across keys: each
    /// mutation is applied independently; the answer is an error if any failed.
    Batch {
        /// The mutations, applied in order per key.
        mutations: Vec<Mutation>,
        /// `None` = each table's write consistency.
        consistency: Option<Consistency>,
    },
    /// Admin: flushes the memtables of one table (all tables when `None`) on the answering
    /// node and waits for the SSTables. Wire: `option<string>` table.
    Flush {
        /// The table; `None` = every table.
        table: Option<String>,
    },
    /// Admin: merges all SSTables of a table on the answering node (a major compaction)
    /// and waits for it. Wire: `string` table.
    Compact {
        /// The table.
        table: String,
    },
    /// Admin: the answering node's storage statistics of a table. Wire: `string` table.
    TableStats {
        /// The table.
        table: String,
    },
    /// Admin: announces a dead node as removed, cluster-wide (`removenode`). Wire:
    /// `string` node id (16 hex digits, as the topology shows it), `bool` force.
    RemoveNode {
        /// The node's id.
        node_id: String,
        /// Remove it even when a range it replicated has no other live replica to copy it
        /// from (what only it held is lost).
        force: bool,
    },
    /// Admin: the answering node leaves the ring (announces `leaving`, then `left`).
    /// Empty body.
    Decommission,
    /// Admin: starts an anti-entropy repair of every range the answering node replicates,
    /// with every other replica, of `table` (every replicated table when `None`); answered
    /// at once with the repair's status (its id, running). Wire: `option<string>` table.
    Repair {
        /// The table, or every replicated table.
        table: Option<String>,
    },
    /// Admin: the status of repair `id` (0 = the latest), and the repair sync times of
    /// every replicated table. Wire: `u64` id.
    RepairStatus {
        /// The repair's id; 0 for the latest.
        id: u64,
    },
    /// Admin: the hints the answering node holds for other nodes, per owner, and the
    /// hints it dropped. Empty body.
    Hints,
    /// Admin: the answering node's streams, after setting its incoming stream throughput
    /// cap to `set_throughput` bytes per second when present (0 = unlimited). Wire:
    /// `option<u64>` set_throughput.
    Streams {
        /// The new cap, bytes per second; `None` leaves it.
        set_throughput: Option<u64>,
    },
    /// Admin: drops, on the answering node, the data of `table` (every table when `None`)
    /// in ranges the node no longer replicates (after ring changes moved them to other
    /// nodes); answered once done. Wire: `option<string>` table.
    Cleanup {
        /// The table; `None` for every table.
        table: Option<String>,
    },
    /// Admin: a plan of token moves that spreads the cluster's stored bytes evenly over
    /// its nodes, computed by the answering node from every node's sizes; nothing moves.
    /// Empty body.
    Rebalance,
    /// Admin: the answering node moves to `tokens` (a step of a rebalance plan): it
    /// announces `moving`, streams the ranges it gains and those it loses, then owns the
    /// new tokens; answered once `moving` is published. Wire: `list<i128>` tokens.
    Move {
        /// The new tokens (as the topology carries them).
        tokens: Vec<i128>,
    },
    /// Admin: the answering node's metrics (the text its `--metrics-listen` endpoint
    /// serves). Empty body.
    Metrics,
    /// Admin: the cluster's name, partitioner and each node's schema version, as the
    /// answering node sees them. Empty body.
    DescribeCluster,
    /// Admin: the answering node's own health: a poisoned engine, writes refused or
    /// flushes and compactions blocked for want of disk space. Empty body.
    Health,
}

fn encode_verifier(w: &mut WireWriter, v: &ScramVerifier) -> Result<(), ProtocolError> {
    w.u32(v.iterations);
    w.bytes("salt", &v.salt)?;
    w.bytes("stored key", &v.stored_key)?;
    w.bytes("server key", &v.server_key)
}

fn decode_key(r: &mut WireReader, what: &'static str) -> Result<[u8; KEY_LEN], ProtocolError> {
    let bytes = r.bytes(what)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_ref()).map_err(|_| ProtocolError::InvalidValue {
        what,
        reason: format!("must be {KEY_LEN} bytes, got {}", bytes.len()),
    })
}

fn decode_verifier(r: &mut WireReader) -> Result<ScramVerifier, ProtocolError> {
    Ok(ScramVerifier {
        iterations: r.u32("iterations")?,
        salt: r.bytes("salt")?.to_vec(),
        stored_key: decode_key(r, "stored key")?,
        server_key: decode_key(r, "server key")?,
    })
}

fn encode_consistency(w: &mut WireWriter, c: Option<&Consistency>) -> Result<(), ProtocolError> {
    w.option(c, |w, c| {
        c.encode(w);
        Ok(())
    })
}

fn decode_consistency(r: &mut WireReader) -> Result<Option<Consistency>, ProtocolError> {
    r.option("consistency", Consistency::decode)
}

impl Request {
    /// The opcode of this request.
    /// True when sending this request twice does what sending it once does: an
    /// idempotent opcode (reads, [`Opcode::is_idempotent`]), or an INSERT, DELETE or
    /// BATCH whose every write carries a write id (section 5.2 of the spec).
    pub fn is_resendable(&self) -> bool {
        match self {
            Request::Insert { insert, .. } => insert.write_id.is_some(),
            Request::Delete { delete, .. } => delete.write_id.is_some(),
            Request::Batch { mutations, .. } => {
                !mutations.is_empty()
                    && mutations.iter().all(|m| match m {
                        Mutation::Insert(i) => i.write_id.is_some(),
                        Mutation::Delete(d) => d.write_id.is_some(),
                    })
            }
            other => other.opcode().is_idempotent(),
        }
    }

    /// The opcode of this request.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Handshake { .. } => Opcode::Handshake,
            Request::Ping => Opcode::Ping,
            Request::Topology => Opcode::Topology,
            Request::AuthStart { .. } => Opcode::AuthStart,
            Request::AuthFinish { .. } => Opcode::AuthFinish,
            Request::CreateUser { .. } => Opcode::CreateUser,
            Request::AlterUser { .. } => Opcode::AlterUser,
            Request::DropUser { .. } => Opcode::DropUser,
            Request::ListUsers => Opcode::ListUsers,
            Request::Grant { .. } => Opcode::Grant,
            Request::Revoke { .. } => Opcode::Revoke,
            Request::CreateTable { .. } => Opcode::CreateTable,
            Request::DropTable { .. } => Opcode::DropTable,
            Request::ListTables => Opcode::ListTables,
            Request::DescribeTable { .. } => Opcode::DescribeTable,
            Request::Insert { .. } => Opcode::Insert,
            Request::Get { .. } => Opcode::Get,
            Request::Delete { .. } => Opcode::Delete,
            Request::Batch { .. } => Opcode::Batch,
            Request::Flush { .. } => Opcode::Flush,
            Request::Compact { .. } => Opcode::Compact,
            Request::TableStats { .. } => Opcode::TableStats,
            Request::RemoveNode { .. } => Opcode::RemoveNode,
            Request::Decommission => Opcode::Decommission,
            Request::Repair { .. } => Opcode::Repair,
            Request::RepairStatus { .. } => Opcode::RepairStatus,
            Request::Hints => Opcode::Hints,
            Request::Streams { .. } => Opcode::Streams,
            Request::Cleanup { .. } => Opcode::Cleanup,
            Request::Rebalance => Opcode::Rebalance,
            Request::Move { .. } => Opcode::Move,
            Request::Metrics => Opcode::Metrics,
            Request::DescribeCluster => Opcode::DescribeCluster,
            Request::Health => Opcode::Health,
        }
    }

    /// Encodes the body (without the frame header).
    pub fn encode_body(&self) -> Result<Bytes, ProtocolError> {
        let mut w = WireWriter::new();
        match self {
            Request::Handshake { version, client } => {
                w.u8(*version);
                w.string("client name", client)?;
            }
            Request::Ping
            | Request::Topology
            | Request::ListTables
            | Request::Decommission
            | Request::Hints
            | Request::Rebalance
            | Request::Metrics
            | Request::DescribeCluster
            | Request::ListUsers
            | Request::Health => {}
            Request::AuthStart { mechanism, message } => {
                w.string("mechanism", mechanism)?;
                w.bytes("SCRAM message", message)?;
            }
            Request::AuthFinish { message } => w.bytes("SCRAM message", message)?,
            Request::CreateUser {
                name,
                superuser,
                if_not_exists,
                verifier,
            } => {
                w.string("user", name)?;
                w.bool(*superuser);
                w.bool(*if_not_exists);
                encode_verifier(&mut w, verifier)?;
            }
            Request::AlterUser { name, verifier } => {
                w.string("user", name)?;
                encode_verifier(&mut w, verifier)?;
            }
            Request::DropUser { name, if_exists } => {
                w.string("user", name)?;
                w.bool(*if_exists);
            }
            Request::Grant { user, grant } | Request::Revoke { user, grant } => {
                w.string("user", user)?;
                grant.encode(&mut w)?;
            }
            Request::Move { tokens } => w.list("tokens", tokens, |w, t| {
                w.i128(*t);
                Ok(())
            })?,
            Request::CreateTable {
                name,
                options,
                if_not_exists,
            } => {
                w.string("table", name)?;
                w.bool(*if_not_exists);
                options.encode(&mut w)?;
            }
            Request::DropTable { name, if_exists } => {
                w.string("table", name)?;
                w.bool(*if_exists);
            }
            Request::DescribeTable { name } => w.string("table", name)?,
            Request::Flush { table } => w.option(table.as_ref(), |w, t| w.string("table", t))?,
            Request::Compact { table } | Request::TableStats { table } => {
                w.string("table", table)?
            }
            Request::RemoveNode { node_id, force } => {
                w.string("node id", node_id)?;
                w.bool(*force);
            }
            Request::Repair { table } | Request::Cleanup { table } => {
                w.option(table.as_ref(), |w, t| w.string("table", t))?
            }
            Request::RepairStatus { id } => w.u64(*id),
            Request::Streams { set_throughput } => w.option(set_throughput.as_ref(), |w, v| {
                w.u64(*v);
                Ok(())
            })?,
            Request::Insert {
                insert,
                consistency,
            } => {
                encode_consistency(&mut w, consistency.as_ref())?;
                insert.encode(&mut w)?;
            }
            Request::Get {
                table,
                key,
                selector,
                consistency,
            } => {
                encode_consistency(&mut w, consistency.as_ref())?;
                w.string("table", table)?;
                w.bytes("key", key)?;
                selector.encode(&mut w)?;
            }
            Request::Delete {
                delete,
                consistency,
            } => {
                encode_consistency(&mut w, consistency.as_ref())?;
                delete.encode(&mut w)?;
            }
            Request::Batch {
                mutations,
                consistency,
            } => {
                encode_consistency(&mut w, consistency.as_ref())?;
                w.list("mutations", mutations, |w, m| match m {
                    Mutation::Insert(i) => {
                        w.u8(0);
                        i.encode(w)
                    }
                    Mutation::Delete(d) => {
                        w.u8(1);
                        d.encode(w)
                    }
                })?;
            }
        }
        Ok(w.finish())
    }

    /// Decodes a body for `opcode`; the whole body must be consumed.
    pub fn decode_body(opcode: Opcode, body: Bytes) -> Result<Request, ProtocolError> {
        let mut r = WireReader::new(body);
        let req = match opcode {
            Opcode::Handshake => Request::Handshake {
                version: r.u8("version")?,
                client: r.string("client name")?,
            },
            Opcode::Ping => Request::Ping,
            Opcode::Topology => Request::Topology,
            Opcode::AuthStart => Request::AuthStart {
                mechanism: r.string("mechanism")?,
                message: r.bytes("SCRAM message")?,
            },
            Opcode::AuthFinish => Request::AuthFinish {
                message: r.bytes("SCRAM message")?,
            },
            Opcode::CreateUser => Request::CreateUser {
                name: r.string("user")?,
                superuser: r.bool("superuser")?,
                if_not_exists: r.bool("if not exists")?,
                verifier: decode_verifier(&mut r)?,
            },
            Opcode::AlterUser => Request::AlterUser {
                name: r.string("user")?,
                verifier: decode_verifier(&mut r)?,
            },
            Opcode::DropUser => Request::DropUser {
                name: r.string("user")?,
                if_exists: r.bool("if exists")?,
            },
            Opcode::ListUsers => Request::ListUsers,
            Opcode::Grant => Request::Grant {
                user: r.string("user")?,
                grant: Grant::decode(&mut r)?,
            },
            Opcode::Revoke => Request::Revoke {
                user: r.string("user")?,
                grant: Grant::decode(&mut r)?,
            },
            Opcode::CreateTable => Request::CreateTable {
                name: r.string("table")?,
                if_not_exists: r.bool("if not exists")?,
                options: TableOptions::decode(&mut r)?,
            },
            Opcode::DropTable => Request::DropTable {
                name: r.string("table")?,
                if_exists: r.bool("if exists")?,
            },
            Opcode::ListTables => Request::ListTables,
            Opcode::DescribeTable => Request::DescribeTable {
                name: r.string("table")?,
            },
            Opcode::Insert => {
                let consistency = decode_consistency(&mut r)?;
                Request::Insert {
                    insert: RowInsert::decode(&mut r)?,
                    consistency,
                }
            }
            Opcode::Get => Request::Get {
                consistency: decode_consistency(&mut r)?,
                table: r.string("table")?,
                key: r.bytes("key")?,
                selector: Selector::decode(&mut r)?,
            },
            Opcode::Delete => {
                let consistency = decode_consistency(&mut r)?;
                Request::Delete {
                    delete: RowDelete::decode(&mut r)?,
                    consistency,
                }
            }
            Opcode::Batch => {
                let consistency = decode_consistency(&mut r)?;
                // Smallest mutation: tag + empty table + empty key + option + one list count.
                let mutations = r.list("mutations", 12, |r| match r.u8("mutation")? {
                    0 => Ok(Mutation::Insert(RowInsert::decode(r)?)),
                    1 => Ok(Mutation::Delete(RowDelete::decode(r)?)),
                    tag => Err(ProtocolError::InvalidTag {
                        what: "mutation",
                        tag: u64::from(tag),
                    }),
                })?;
                Request::Batch {
                    mutations,
                    consistency,
                }
            }
            Opcode::Flush => Request::Flush {
                table: r.option("table", |r| r.string("table"))?,
            },
            Opcode::Compact => Request::Compact {
                table: r.string("table")?,
            },
            Opcode::TableStats => Request::TableStats {
                table: r.string("table")?,
            },
            Opcode::RemoveNode => Request::RemoveNode {
                node_id: r.string("node id")?,
                force: r.bool("force")?,
            },
            Opcode::Decommission => Request::Decommission,
            Opcode::Repair => Request::Repair {
                table: r.option("table", |r| r.string("table"))?,
            },
            Opcode::RepairStatus => Request::RepairStatus {
                id: r.u64("repair id")?,
            },
            Opcode::Hints => Request::Hints,
            Opcode::Health => Request::Health,
            Opcode::Streams => Request::Streams {
                set_throughput: r.option("stream throughput", |r| r.u64("stream throughput"))?,
            },
            Opcode::Cleanup => Request::Cleanup {
                table: r.option("table", |r| r.string("table"))?,
            },
            Opcode::Rebalance => Request::Rebalance,
            Opcode::Move => Request::Move {
                tokens: r.list("tokens", 16, |r| r.i128("token"))?,
            },
            Opcode::Metrics => Request::Metrics,
            Opcode::DescribeCluster => Request::DescribeCluster,
        };
        r.finish(opcode.name())?;
        Ok(req)
    }

    /// A request frame at [`PROTOCOL_VERSION`].
    pub fn to_frame(&self, stream_id: u32) -> Result<Frame, ProtocolError> {
        Ok(Frame {
            version: PROTOCOL_VERSION,
            flags: 0,
            opcode: self.opcode().as_u8(),
            stream_id,
            body: self.encode_body()?,
        })
    }

    /// Decodes a request frame. A response frame, an unknown opcode or (except for the
    /// handshake, whose layout never changes) an unsupported version is an error.
    pub fn from_frame(frame: &Frame) -> Result<Request, ProtocolError> {
        if frame.is_response() {
            return Err(ProtocolError::InvalidValue {
                what: "request flags",
                reason: "response flag set on a request".into(),
            });
        }
        let opcode = Opcode::from_u8(frame.opcode)?;
        if opcode != Opcode::Handshake && !SUPPORTED_VERSIONS.contains(&frame.version) {
            return Err(ProtocolError::UnsupportedVersion {
                version: frame.version,
            });
        }
        Request::decode_body(opcode, frame.body.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_get_round_trips_through_frame() {
        let req = Request::Get {
            table: "users".into(),
            key: Bytes::from_static(b"alice"),
            selector: Selector::Slice {
                from: Some(Bytes::from_static(b"a")),
                to: None,
                limit: 10,
                paging: None,
            },
            consistency: Some(Consistency::ALL.strict()),
        };
        let frame = req.to_frame(9).unwrap();
        assert_eq!(frame.opcode, 0x21);
        assert_eq!(Request::from_frame(&frame).unwrap(), req);
    }

    #[test]
    fn request_admin_flush_of_all_tables_round_trips() {
        let req = Request::Flush { table: None };
        let frame = req.to_frame(4).unwrap();
        assert_eq!(frame.opcode, 0x30);
        assert_eq!(&frame.body[..], &[0]);
        assert_eq!(Request::from_frame(&frame).unwrap(), req);
    }

    #[test]
    fn request_trailing_bytes_are_rejected() {
        let mut body = Request::Ping.encode_body().unwrap().to_vec();
        body.push(0);
        assert!(matches!(
            Request::decode_body(Opcode::Ping, Bytes::from(body)),
            Err(ProtocolError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn request_unsupported_version_is_rejected_except_handshake() {
        let mut frame = Request::Ping.to_frame(1).unwrap();
        frame.version = 99;
        assert!(matches!(
            Request::from_frame(&frame),
            Err(ProtocolError::UnsupportedVersion { version: 99 })
        ));
        let mut hs = Request::Handshake {
            version: 99,
            client: "x".into(),
        }
        .to_frame(1)
        .unwrap();
        hs.version = 99;
        assert!(Request::from_frame(&hs).is_ok());
    }
}
