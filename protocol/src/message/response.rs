//! Server responses: [`Response`] and the encoding of typed errors ([`ServerError`]).
//!
//! A response frame echoes the request's stream id and opcode and sets
//! [`FLAG_RESPONSE`]; an error also sets [`FLAG_ERROR`] and its body is an error body
//! whatever the opcode. Success bodies have no tag: the opcode says which shape follows,
//! so [`Response::from_frame`] needs only the frame and [`Response::to_frame`] checks that
//! the variant fits the opcode. Pure data.

use bytes::Bytes;

use crate::error::{ErrorCode, ErrorKind, ProtocolError, ServerError};
use crate::frame::{Frame, FLAG_ERROR, FLAG_RESPONSE};
use crate::message::opcode::Opcode;
use crate::message::types::{
    Cell, ClusterDescription, HintOwner, NodeHealth, RebalanceReport, RepairStatus, ResponseMeta,
    StreamsReport, TableCleanup, TableOptions, TableStatistics, Topology, UserInfo,
};
use crate::wire::{WireReader, WireWriter};
use crate::{PROTOCOL_VERSION, SUPPORTED_VERSIONS};

/// A server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// To HANDSHAKE. Wire: `u8` version, `string` server name, `u32` max_frame_len.
    Handshake {
        /// The version both sides now speak.
        version: u8,
        /// Server name and version, for logs.
        server: String,
        /// Largest frame (header + body) the server accepts from now on.
        max_frame_len: u32,
    },
    /// To PING. Empty body.
    Pong,
    /// To AUTH_START. Wire: `bytes` SCRAM server-first.
    AuthContinue {
        /// The SCRAM server-first-message.
        message: Bytes,
    },
    /// To AUTH_FINISH: authenticated. Wire: `bytes` SCRAM server-final, `string` user,
    /// `bool` superuser.
    AuthOk {
        /// The SCRAM server-final-message (the client checks the server's signature).
        message: Bytes,
        /// The user the connection is now authenticated as.
        user: String,
        /// Whether that user is a superuser.
        superuser: bool,
    },
    /// To CREATE_USER, ALTER_USER and DROP_USER. Wire: `string` name, `bool` applied.
    UserChanged {
        /// The user.
        name: String,
        /// False when `if_not_exists` / `if_exists` made the request a no-op.
        applied: bool,
    },
    /// To LIST_USERS, sorted by name. Wire: `list<user info>`.
    Users(Vec<UserInfo>),
    /// To TOPOLOGY. Wire: topology.
    Topology(Topology),
    /// To CREATE_TABLE and DROP_TABLE. Wire: `string` table, `bool` applied.
    SchemaChanged {
        /// The table.
        table: String,
        /// False when `if_not_exists` / `if_exists` made the request a no-op.
        applied: bool,
    },
    /// To LIST_TABLES (every table) and FLUSH (the tables flushed). Wire: `list<string>`.
    Tables(Vec<String>),
    /// To DESCRIBE_TABLE. Wire: `string` name, table options.
    Table {
        /// Table name.
        name: String,
        /// Its options.
        options: TableOptions,
    },
    /// To GET. Wire: response meta, `list<cell>` cells (sorted by name), `option<bytes>`
    /// next_page.
    Row {
        /// The selected cells that exist, sorted by name.
        cells: Vec<Cell>,
        /// Token to pass as `paging` for the next page of a slice; `None` = no more.
        next_page: Option<Bytes>,
        /// Which replicas answered, whether read repair ran.
        meta: ResponseMeta,
    },
    /// To INSERT, DELETE and BATCH. Wire: response meta.
    Written {
        /// Which replicas acknowledged.
        meta: ResponseMeta,
    },
    /// To TABLE_STATS, and to COMPACT (the statistics once the compaction is done).
    /// Wire: table statistics.
    AdminTableStats(TableStatistics),
    /// To REMOVE_NODE and DECOMMISSION: done, with what the node did in words (for the
    /// operator). Wire: `string` message.
    AdminDone {
        /// What happened, for the operator.
        message: String,
    },
    /// To REPAIR and REPAIR_STATUS. Wire: repair status.
    AdminRepair(RepairStatus),
    /// To HINTS: one entry per owner with hints pending or dropped, by owner id. Wire:
    /// `list<hint owner>`.
    AdminHints(Vec<HintOwner>),
    /// To STREAMS. Wire: streams report.
    AdminStreams(StreamsReport),
    /// To CLEANUP: one entry per table cleaned, by name. Wire: `list<table cleanup>`.
    AdminCleanup(Vec<TableCleanup>),
    /// To REBALANCE: the plan. Wire: rebalance report.
    AdminRebalance(RebalanceReport),
    /// To METRICS: the node's metrics in the Prometheus text exposition format (version
    /// 0.0.4). Wire: `bytes` UTF-8 text (it outgrows a `string`).
    AdminMetrics(String),
    /// To DESCRIBE_CLUSTER. Wire: cluster description.
    AdminCluster(ClusterDescription),
    /// To HEALTH. Wire: node health.
    AdminHealth(NodeHealth),
    /// An error, to any request. Wire: `u16` code, `string` message, `bytes` fields (the
    /// code-specific fields, length-prefixed so unknown codes can be skipped).
    Error(ServerError),
}

fn encode_error(w: &mut WireWriter, e: &ServerError) -> Result<(), ProtocolError> {
    w.u16(e.code());
    w.string("error message", &e.message)?;
    let mut f = WireWriter::new();
    match &e.kind {
        ErrorKind::UnsupportedVersion { supported } => {
            f.list("supported versions", supported, |w, v| {
                w.u8(*v);
                Ok(())
            })?;
        }
        ErrorKind::UnknownTable { table } | ErrorKind::TableExists { table } => {
            f.string("table", table)?
        }
        ErrorKind::TooManySiblings { limit } => f.u32(*limit),
        ErrorKind::Unauthorized { permission } => f.string("permission", permission)?,
        ErrorKind::Unavailable { required, alive } => {
            f.u32(*required);
            f.u32(*alive);
        }
        ErrorKind::WriteTimeout { acks, required } | ErrorKind::ReadTimeout { acks, required } => {
            f.u32(*acks);
            f.u32(*required);
        }
        ErrorKind::DiskFull { free, reserve } => {
            f.u64(*free);
            f.u64(*reserve);
        }
        ErrorKind::Unknown { fields, .. } => return w.bytes("error fields", fields),
        ErrorKind::Protocol
        | ErrorKind::Server
        | ErrorKind::Invalid
        | ErrorKind::Overloaded
        | ErrorKind::AuthenticationFailed
        | ErrorKind::Unauthenticated => {}
    }
    w.bytes("error fields", &f.finish())
}

fn decode_error(r: &mut WireReader) -> Result<ServerError, ProtocolError> {
    let code = r.u16("error code")?;
    let message = r.string("error message")?;
    let fields = r.bytes("error fields")?;
    let Some(known) = ErrorCode::from_u16(code) else {
        return Ok(ServerError {
            kind: ErrorKind::Unknown { code, fields },
            message,
        });
    };
    let mut f = WireReader::new(fields);
    let kind = match known {
        ErrorCode::Protocol => ErrorKind::Protocol,
        ErrorCode::UnsupportedVersion => ErrorKind::UnsupportedVersion {
            supported: f.list("supported versions", 1, |r| r.u8("version"))?,
        },
        ErrorCode::Server => ErrorKind::Server,
        ErrorCode::Invalid => ErrorKind::Invalid,
        ErrorCode::UnknownTable => ErrorKind::UnknownTable {
            table: f.string("table")?,
        },
        ErrorCode::TableExists => ErrorKind::TableExists {
            table: f.string("table")?,
        },
        ErrorCode::TooManySiblings => ErrorKind::TooManySiblings {
            limit: f.u32("sibling limit")?,
        },
        ErrorCode::Unavailable => ErrorKind::Unavailable {
            required: f.u32("required")?,
            alive: f.u32("alive")?,
        },
        ErrorCode::WriteTimeout => ErrorKind::WriteTimeout {
            acks: f.u32("acks")?,
            required: f.u32("required")?,
        },
        ErrorCode::ReadTimeout => ErrorKind::ReadTimeout {
            acks: f.u32("acks")?,
            required: f.u32("required")?,
        },
        ErrorCode::Overloaded => ErrorKind::Overloaded,
        ErrorCode::DiskFull => ErrorKind::DiskFull {
            free: f.u64("free")?,
            reserve: f.u64("reserve")?,
        },
        ErrorCode::AuthenticationFailed => ErrorKind::AuthenticationFailed,
        ErrorCode::Unauthenticated => ErrorKind::Unauthenticated,
        ErrorCode::Unauthorized => ErrorKind::Unauthorized {
            permission: f.string("permission")?,
        },
    };
    f.finish("error fields")?;
    Ok(ServerError { kind, message })
}

impl Response {
    /// The server's answer to `Request::Handshake { version, .. }`: handshake-ok at that
    /// version if this build speaks it, else an `UNSUPPORTED_VERSION` error naming
    /// [`SUPPORTED_VERSIONS`]. Send it with [`Response::to_frame_version`] using the
    /// client's version byte, and close the connection after an error.
    pub fn negotiate_handshake(version: u8, server: &str, max_frame_len: u32) -> Response {
        if SUPPORTED_VERSIONS.contains(&version) {
            Response::Handshake {
                version,
                server: server.to_owned(),
                max_frame_len,
            }
        } else {
            Response::Error(ServerError::new(
                ErrorKind::UnsupportedVersion { supported: SUPPORTED_VERSIONS.to_vec() },
                format!("protocol version {version} is not supported; this server speaks {SUPPORTED_VERSIONS:?}"),
            ))
        }
    }

    /// An error frame for any opcode byte (including unknown ones), e.g. to answer a
    /// request that failed to decode with a `PROTOCOL` error before closing.
    pub fn error_frame(
        stream_id: u32,
        opcode: u8,
        error: &ServerError,
    ) -> Result<Frame, ProtocolError> {
        let mut w = WireWriter::new();
        encode_error(&mut w, error)?;
        Ok(Frame {
            version: PROTOCOL_VERSION,
            flags: FLAG_RESPONSE | FLAG_ERROR,
            opcode,
            stream_id,
            body: w.finish(),
        })
    }

    /// Decodes an error body (the same for every opcode).
    pub fn decode_error_body(body: Bytes) -> Result<ServerError, ProtocolError> {
        let mut r = WireReader::new(body);
        let e = decode_error(&mut r)?;
        r.finish("error")?;
        Ok(e)
    }

    /// True when this response may answer a request with `opcode`.
    pub fn fits(&self, opcode: Opcode) -> bool {
        matches!(
            (self, opcode),
            (Response::Error(_), _)
                | (Response::Handshake { .. }, Opcode::Handshake)
                | (Response::Pong, Opcode::Ping)
                | (Response::AuthContinue { .. }, Opcode::AuthStart)
                | (Response::AuthOk { .. }, Opcode::AuthFinish)
                | (
                    Response::UserChanged { .. },
                    Opcode::CreateUser
                        | Opcode::AlterUser
                        | Opcode::DropUser
                        | Opcode::Grant
                        | Opcode::Revoke
                )
                | (Response::Users(_), Opcode::ListUsers)
                | (Response::Topology(_), Opcode::Topology)
                | (
                    Response::SchemaChanged { .. },
                    Opcode::CreateTable | Opcode::DropTable
                )
                | (Response::Tables(_), Opcode::ListTables | Opcode::Flush)
                | (Response::Table { .. }, Opcode::DescribeTable)
                | (Response::Row { .. }, Opcode::Get)
                | (
                    Response::Written { .. },
                    Opcode::Insert | Opcode::Delete | Opcode::Batch
                )
                | (
                    Response::AdminTableStats(_),
                    Opcode::TableStats | Opcode::Compact
                )
                | (
                    Response::AdminDone { .. },
                    Opcode::RemoveNode | Opcode::Decommission | Opcode::Move
                )
                | (
                    Response::AdminRepair(_),
                    Opcode::Repair | Opcode::RepairStatus
                )
                | (Response::AdminHints(_), Opcode::Hints)
                | (Response::AdminStreams(_), Opcode::Streams)
                | (Response::AdminCleanup(_), Opcode::Cleanup)
                | (Response::AdminRebalance(_), Opcode::Rebalance)
                | (Response::AdminMetrics(_), Opcode::Metrics)
                | (Response::AdminCluster(_), Opcode::DescribeCluster)
                | (Response::AdminHealth(_), Opcode::Health)
        )
    }

    /// Encodes the body (without the frame header).
    pub fn encode_body(&self) -> Result<Bytes, ProtocolError> {
        let mut w = WireWriter::new();
        match self {
            Response::Handshake {
                version,
                server,
                max_frame_len,
            } => {
                w.u8(*version);
                w.string("server name", server)?;
                w.u32(*max_frame_len);
            }
            Response::Pong => {}
            Response::AuthContinue { message } => w.bytes("SCRAM message", message)?,
            Response::AuthOk {
                message,
                user,
                superuser,
            } => {
                w.bytes("SCRAM message", message)?;
                w.string("user", user)?;
                w.bool(*superuser);
            }
            Response::UserChanged { name, applied } => {
                w.string("user", name)?;
                w.bool(*applied);
            }
            Response::Users(users) => w.list("users", users, |w, u| u.encode(w))?,
            Response::Topology(t) => t.encode(&mut w)?,
            Response::SchemaChanged { table, applied } => {
                w.string("table", table)?;
                w.bool(*applied);
            }
            Response::Tables(names) => w.list("tables", names, |w, n| w.string("table", n))?,
            Response::Table { name, options } => {
                w.string("table", name)?;
                options.encode(&mut w)?;
            }
            Response::Row {
                cells,
                next_page,
                meta,
            } => {
                meta.encode(&mut w)?;
                w.list("cells", cells, |w, c| c.encode(w))?;
                w.option(next_page.as_ref(), |w, p| w.bytes("next page", p))?;
            }
            Response::Written { meta } => meta.encode(&mut w)?,
            Response::AdminTableStats(s) => s.encode(&mut w)?,
            Response::AdminDone { message } => w.string("admin message", message)?,
            Response::AdminRepair(s) => s.encode(&mut w)?,
            Response::AdminHints(owners) => w.list("hint owners", owners, |w, o| o.encode(w))?,
            Response::AdminStreams(report) => report.encode(&mut w)?,
            Response::AdminCleanup(tables) => {
                w.list("cleaned tables", tables, |w, t| t.encode(w))?
            }
            Response::AdminRebalance(plan) => plan.encode(&mut w)?,
            Response::AdminMetrics(text) => w.bytes("metrics text", text.as_bytes())?,
            Response::AdminCluster(d) => d.encode(&mut w)?,
            Response::AdminHealth(h) => h.encode(&mut w)?,
            Response::Error(e) => encode_error(&mut w, e)?,
        }
        Ok(w.finish())
    }

    /// Decodes a success body for `opcode`, or an error body when `is_error`.
    pub fn decode_body(
        opcode: Opcode,
        is_error: bool,
        body: Bytes,
    ) -> Result<Response, ProtocolError> {
        let mut r = WireReader::new(body);
        let resp = if is_error {
            Response::Error(decode_error(&mut r)?)
        } else {
            match opcode {
                Opcode::Handshake => Response::Handshake {
                    version: r.u8("version")?,
                    server: r.string("server name")?,
                    max_frame_len: r.u32("max frame length")?,
                },
                Opcode::Ping => Response::Pong,
                Opcode::AuthStart => Response::AuthContinue {
                    message: r.bytes("SCRAM message")?,
                },
                Opcode::AuthFinish => Response::AuthOk {
                    message: r.bytes("SCRAM message")?,
                    user: r.string("user")?,
                    superuser: r.bool("superuser")?,
                },
                Opcode::CreateUser
                | Opcode::AlterUser
                | Opcode::DropUser
                | Opcode::Grant
                | Opcode::Revoke => Response::UserChanged {
                    name: r.string("user")?,
                    applied: r.bool("applied")?,
                },
                Opcode::ListUsers => {
                    Response::Users(r.list("users", UserInfo::MIN_LEN, UserInfo::decode)?)
                }
                Opcode::Topology => Response::Topology(Topology::decode(&mut r)?),
                Opcode::CreateTable | Opcode::DropTable => Response::SchemaChanged {
                    table: r.string("table")?,
                    applied: r.bool("applied")?,
                },
                Opcode::ListTables | Opcode::Flush => {
                    Response::Tables(r.list("tables", 2, |r| r.string("table"))?)
                }
                Opcode::DescribeTable => Response::Table {
                    name: r.string("table")?,
                    options: TableOptions::decode(&mut r)?,
                },
                Opcode::Get => {
                    let meta = ResponseMeta::decode(&mut r)?;
                    let cells = r.list("cells", Cell::MIN_LEN, Cell::decode)?;
                    let next_page = r.option("next page", |r| r.bytes("next page"))?;
                    Response::Row {
                        cells,
                        next_page,
                        meta,
                    }
                }
                Opcode::Insert | Opcode::Delete | Opcode::Batch => Response::Written {
                    meta: ResponseMeta::decode(&mut r)?,
                },
                Opcode::TableStats | Opcode::Compact => {
                    Response::AdminTableStats(TableStatistics::decode(&mut r)?)
                }
                Opcode::RemoveNode | Opcode::Decommission | Opcode::Move => Response::AdminDone {
                    message: r.string("admin message")?,
                },
                Opcode::Repair | Opcode::RepairStatus => {
                    Response::AdminRepair(RepairStatus::decode(&mut r)?)
                }
                Opcode::Hints => Response::AdminHints(r.list(
                    "hint owners",
                    HintOwner::MIN_LEN,
                    HintOwner::decode,
                )?),
                Opcode::Streams => Response::AdminStreams(StreamsReport::decode(&mut r)?),
                Opcode::Cleanup => Response::AdminCleanup(r.list(
                    "cleaned tables",
                    TableCleanup::MIN_LEN,
                    TableCleanup::decode,
                )?),
                Opcode::Rebalance => Response::AdminRebalance(RebalanceReport::decode(&mut r)?),
                Opcode::DescribeCluster => {
                    Response::AdminCluster(ClusterDescription::decode(&mut r)?)
                }
                Opcode::Metrics => {
                    let text = r.bytes("metrics text")?;
                    Response::AdminMetrics(String::from_utf8(text.to_vec()).map_err(|_| {
                        ProtocolError::InvalidUtf8 {
                            what: "metrics text",
                        }
                    })?)
                }
                Opcode::Health => Response::AdminHealth(NodeHealth::decode(&mut r)?),
            }
        };
        r.finish(opcode.name())?;
        Ok(resp)
    }

    /// A response frame answering `opcode` on `stream_id`, at [`PROTOCOL_VERSION`].
    /// Fails if the variant cannot answer that opcode.
    pub fn to_frame(&self, stream_id: u32, opcode: Opcode) -> Result<Frame, ProtocolError> {
        self.to_frame_version(PROTOCOL_VERSION, stream_id, opcode)
    }

    /// As [`Response::to_frame`] with an explicit version byte (a server answering a
    /// handshake for a version it does not speak echoes the client's version).
    pub fn to_frame_version(
        &self,
        version: u8,
        stream_id: u32,
        opcode: Opcode,
    ) -> Result<Frame, ProtocolError> {
        if !self.fits(opcode) {
            return Err(ProtocolError::InvalidValue {
                what: "response",
                reason: format!("this response cannot answer {}", opcode.name()),
            });
        }
        let flags = match self {
            Response::Error(_) => FLAG_RESPONSE | FLAG_ERROR,
            _ => FLAG_RESPONSE,
        };
        Ok(Frame {
            version,
            flags,
            opcode: opcode.as_u8(),
            stream_id,
            body: self.encode_body()?,
        })
    }

    /// Decodes a response frame. An error frame decodes whatever its opcode and version
    /// (its layout never changes, so a client can read any server's refusal). Otherwise a
    /// request frame, an unknown opcode or an unsupported version (except on the
    /// handshake) is an error.
    pub fn from_frame(frame: &Frame) -> Result<Response, ProtocolError> {
        if !frame.is_response() {
            return Err(ProtocolError::InvalidValue {
                what: "response flags",
                reason: "response flag not set".into(),
            });
        }
        if frame.is_error() {
            return Ok(Response::Error(Response::decode_error_body(
                frame.body.clone(),
            )?));
        }
        let opcode = Opcode::from_u8(frame.opcode)?;
        if opcode != Opcode::Handshake && !SUPPORTED_VERSIONS.contains(&frame.version) {
            return Err(ProtocolError::UnsupportedVersion {
                version: frame.version,
            });
        }
        Response::decode_body(opcode, false, frame.body.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_error_round_trips_with_fields() {
        let resp = Response::Error(ServerError::new(
            ErrorKind::WriteTimeout {
                acks: 1,
                required: 2,
            },
            "slow",
        ));
        let frame = resp.to_frame(3, Opcode::Insert).unwrap();
        assert!(frame.is_error());
        assert_eq!(Response::from_frame(&frame).unwrap(), resp);
    }

    #[test]
    fn response_unknown_error_code_keeps_fields() {
        let resp = Response::Error(ServerError::new(
            ErrorKind::Unknown {
                code: 0x7777,
                fields: Bytes::from_static(b"xyz"),
            },
            "new",
        ));
        let frame = resp.to_frame(3, Opcode::Get).unwrap();
        let back = Response::from_frame(&frame).unwrap();
        assert_eq!(back, resp);
        let Response::Error(e) = back else {
            panic!("not an error")
        };
        assert!(!e.retry_safe());
    }

    #[test]
    fn response_negotiate_unknown_version_names_supported_versions() {
        let resp = Response::negotiate_handshake(42, "s", 1 << 20);
        let Response::Error(e) = resp else {
            panic!("expected an error")
        };
        assert_eq!(
            e.kind,
            ErrorKind::UnsupportedVersion {
                supported: SUPPORTED_VERSIONS.to_vec()
            }
        );
        assert!(matches!(
            Response::negotiate_handshake(PROTOCOL_VERSION, "s", 1 << 20),
            Response::Handshake {
                version: PROTOCOL_VERSION,
                ..
            }
        ));
    }

    #[test]
    fn response_error_frame_for_unknown_opcode_decodes() {
        let e = ServerError::new(ErrorKind::Protocol, "unknown opcode 0x7e");
        let frame = Response::error_frame(5, 0x7e, &e).unwrap();
        assert_eq!(Response::from_frame(&frame).unwrap(), Response::Error(e));
    }

    #[test]
    fn response_mismatched_opcode_is_refused() {
        assert!(Response::Pong.to_frame(1, Opcode::Get).is_err());
    }

    #[test]
    fn response_known_code_with_extra_fields_is_rejected() {
        let mut w = WireWriter::new();
        w.u16(ErrorCode::Overloaded.as_u16());
        w.string("m", "x").unwrap();
        w.bytes("f", &[1]).unwrap();
        assert!(matches!(
            Response::decode_body(Opcode::Get, true, w.finish()),
            Err(ProtocolError::TrailingBytes {
                what: "error fields",
                ..
            })
        ));
    }
}
