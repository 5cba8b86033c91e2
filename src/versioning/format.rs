//! The byte formats of the versioning layer: the one place their constants live, used by
//! both encoders and decoders. This doc comment is the format spec.
//!
//! Integers: `u32le`/`u64le`/`i64le` are fixed-width little-endian; `varint` is LEB128
//! (at most 10 bytes), as in `sibyl_coding`.
//!
//! # Actor (12 bytes, fixed)
//! ```text
//! actor := node:u64le epoch:u32le
//! ```
//! Actors order by (node, epoch); that order sorts every list of actors below.
//!
//! # Causal cell (engine value of a `causal` table)
//! ```text
//! causal_cell := CAUSAL_CELL_V1:u8 entry_count:varint entry{entry_count}
//!              | CAUSAL_CELL_V2:u8 entry_count:varint entry{entry_count}
//!                superseded_count:varint superseded{superseded_count}
//! superseded  := write_id:u128le expires_at:varint
//! entry       := actor counter:varint dot_count:varint dot{dot_count}
//! dot         := age:varint sibling              ; dot counter = counter - age
//! sibling     := flags:u8 timestamp:i64le [expires_at:varint] [write_id:u128le]
//!                [value_len:varint value]
//! flags       := bit0 SIBLING_HAS_VALUE (absent = causal tombstone)
//!                bit1 SIBLING_HAS_EXPIRY
//!                bit2 SIBLING_HAS_WRITE_ID (the client's write id, 16 bytes);
//!                other bits must be zero
//! ```
//! Rules a decoder enforces: entries strictly ascending by actor; `1 <= counter <=
//! MAX_CELL_COUNTER`; dots strictly ascending (ages strictly descending), every dot in
//! `1..=counter`; at most `MAX_ACTORS` entries and `MAX_CELL_SIBLINGS` dots in a cell; no
//! trailing bytes. There is no checksum: the engine checksums every block and log record.
//!
//! The superseded list (V2 only; a cell without one is written as V1) names write ids whose
//! versions a later write or delete superseded, each until `expires_at` (seconds since the
//! Unix epoch): a copy of such a write minted by another coordinator (a client's retry)
//! that arrives later is dropped on merge, though its dot was never seen. Ids strictly
//! ascending, at most `MAX_SUPERSEDED`, V2 only with at least one.
//!
//! Example: actor (node 0x2a, epoch 1) wrote twice without context, values "a" then "b",
//! at timestamps 100 and 200 µs:
//! ```text
//! C1                      magic/version
//! 01                      one entry
//! 2a 00 00 00 00 00 00 00 01 00 00 00   actor 0x2a.1
//! 02                      counter 2
//! 02                      two dots
//! 01 01 64 00 00 00 00 00 00 00 01 61   age 1 (dot 1): value, ts 100, "a"
//! 00 01 c8 00 00 00 00 00 00 00 01 62   age 0 (dot 2): value, ts 200, "b"
//! ```
//! Why explicit dots rather than Riak's positional list (`[v_n, v_n-1, ...]`): a TTL may
//! expire a sibling that is not the oldest of its actor, and removing it from a positional
//! list would renumber the others. The join is the same as Riak's where both apply.
//!
//! # LWW cell (engine value of an `lww` table)
//! ```text
//! lww_cell := LWW_CELL_V1:u8 flags:u8 timestamp:i64le [expires_at:u64le] value*
//! flags    := bit0 LWW_TOMBSTONE, bit1 LWW_HAS_EXPIRY; other bits must be zero
//! ```
//! The value is the rest of the cell; a tombstone carries no value bytes. Example: value
//! "hi" at timestamp 5 without expiry: `D1 00 05 00 00 00 00 00 00 00 68 69`.
//!
//! # Row tombstone (engine value at a row's key with an empty column)
//! ```text
//! causal_row_tombstone := CAUSAL_ROW_TOMBSTONE_V1:u8 timestamp:i64le count:varint
//!                         (actor counter:varint){count}
//! lww_row_tombstone    := LWW_ROW_TOMBSTONE_V1:u8 timestamp:i64le
//! ```
//! The causal form is a version vector (entries strictly ascending by actor, `1 <= counter
//! <= MAX_CELL_COUNTER`, at most `MAX_ACTORS` entries) and the time of the newest delete
//! it merges (shown to operators; not used for ordering). No trailing bytes. Meaning and
//! merge rules: [`super::row_tombstone`]. Example: an lww row delete at timestamp 5 µs is
//! `D2 05 00 00 00 00 00 00 00`.
//!
//! # Context (opaque to clients)
//! ```text
//! context := CONTEXT_MAGIC:2 1:u8 count:varint (actor counter:varint){count}
//!            crc:u32le                   ; crc32 of every byte before it
//!          | CONTEXT_MAGIC:2 2:u8 count:varint (actor counter:varint){count}
//!            id_count:varint write_id:u128le{id_count} crc:u32le
//! ```
//! Entries strictly ascending by actor, `1 <= counter <= MAX_CONTEXT_COUNTER`, at most
//! `MAX_ACTORS` entries, no trailing bytes. Version 2 also names the write ids of the
//! versions the read saw (strictly ascending, 1 to `MAX_CONTEXT_WRITE_IDS`), so a write
//! with it supersedes every copy of those writes; a context without ids is written as
//! version 1. The crc catches corruption and truncation, not a
//! deliberate forgery (that would need a cluster secret; a client may anyway only claim to
//! have seen versions, which is what a delete does). The counter cap is lower than the
//! cell's so that a forged context can never push a cell's counter out of range.
//! Example: the empty context is `53 43 01 00` + crc32 of those four bytes.
//!
//! # Actor file (`<data dir>/actor`)
//! ```text
//! actor_file := ACTOR_FILE_MAGIC:8 ACTOR_FILE_VERSION:u8 actor crc:u32le   ; 25 bytes
//! ```
//! Written to `actor.tmp`, fsynced, renamed over `actor`, then the directory is fsynced
//! (`sibyl_storage::atomic_file`, the one helper every small file of the node uses).

/// First byte of a causal cell: identifies the format and its version.
pub const CAUSAL_CELL_V1: u8 = 0xC1;
/// First byte of a causal cell with a superseded list.
pub const CAUSAL_CELL_V2: u8 = 0xC3;
/// Most superseded write ids a cell remembers (the latest to expire are kept).
pub const MAX_SUPERSEDED: usize = 64;
/// How long a cell remembers a superseded write id, seconds: the hint window's default
/// (3 hours), the longest a copy is expected to travel late, and a margin.
pub const SUPERSEDED_TTL_SECS: u64 = 6 * 3600;
/// First byte of an LWW cell.
pub const LWW_CELL_V1: u8 = 0xD1;

/// Sibling flag: the sibling holds a value (otherwise it is a causal tombstone).
pub const SIBLING_HAS_VALUE: u8 = 0x01;
/// Sibling flag: an expiry (seconds since the Unix epoch) follows the timestamp.
pub const SIBLING_HAS_EXPIRY: u8 = 0x02;
/// Sibling flag: the client's write id follows the expiry (16 bytes, little-endian).
pub const SIBLING_HAS_WRITE_ID: u8 = 0x04;
/// All sibling flags a decoder accepts.
pub const SIBLING_FLAGS_KNOWN: u8 = SIBLING_HAS_VALUE | SIBLING_HAS_EXPIRY | SIBLING_HAS_WRITE_ID;

/// LWW flag: the cell is a tombstone.
pub const LWW_TOMBSTONE: u8 = 0x01;
/// LWW flag: an expiry follows the timestamp.
pub const LWW_HAS_EXPIRY: u8 = 0x02;
/// All LWW flags a decoder accepts.
pub const LWW_FLAGS_KNOWN: u8 = LWW_TOMBSTONE | LWW_HAS_EXPIRY;

/// First byte of a causal row tombstone.
pub const CAUSAL_ROW_TOMBSTONE_V1: u8 = 0xC2;
/// First byte of an lww row tombstone.
pub const LWW_ROW_TOMBSTONE_V1: u8 = 0xD2;

/// Magic of a context ("SC": Sibyl context).
pub const CONTEXT_MAGIC: [u8; 2] = *b"SC";
/// Format version of a context without write ids.
pub const CONTEXT_VERSION: u8 = 1;
/// Format version of a context with write ids.
pub const CONTEXT_VERSION_IDS: u8 = 2;
/// Most write ids a context names.
pub const MAX_CONTEXT_WRITE_IDS: usize = MAX_CELL_SIBLINGS;

/// Magic of the actor file.
pub const ACTOR_FILE_MAGIC: [u8; 8] = *b"SIBYLACT";
/// Format version of the actor file.
pub const ACTOR_FILE_VERSION: u8 = 1;
/// Length of the actor file in bytes.
pub const ACTOR_FILE_LEN: usize = 8 + 1 + ACTOR_LEN + 4;

/// Encoded length of an actor.
pub const ACTOR_LEN: usize = 12;

/// Most actors a cell or a context may name. A cell gains one actor per node that ever
/// coordinated a write to it (and per epoch), so real cells stay far below this.
pub const MAX_ACTORS: usize = 4096;
/// Most siblings (dots) a decoder accepts in one cell; the write-time limit is lower and
/// per table (Riak's default is 100).
pub const MAX_CELL_SIBLINGS: usize = 65_536;
/// Highest counter a stored cell may hold.
pub const MAX_CELL_COUNTER: u64 = 1 << 63;
/// Highest counter a context may claim: below [`MAX_CELL_COUNTER`] by 2^62 writes.
pub const MAX_CONTEXT_COUNTER: u64 = 1 << 62;
