//! Primitive field encodings shared by every message: the one place that says how an
//! integer, a byte string, a UTF-8 string, an option or a list is laid out.
//!
//! Grammar (all integers big-endian):
//! - `u8 | u16 | u32 | i64 | i128`: fixed width.
//! - `bool`: one byte, 0 or 1 (anything else is an error).
//! - `bytes`: `u32` length, then that many bytes.
//! - `string`: `u16` length, then that many bytes of UTF-8.
//! - `option<T>`: one byte, 0 (absent) or 1 (present, followed by `T`).
//! - `list<T>`: `u32` count, then that many `T`.
//!
//! Invariants of [`WireReader`]: fixed-width fields are decoded by the workspace's one
//! panic-free cursor ([`sibyl_coding::ByteReader`]); every read checks the remaining length first and returns
//! [`ProtocolError::Truncated`]; byte fields are zero-copy slices of the frame body; a list
//! count is checked against the bytes left (each element needs at least `min_item_len`
//! bytes) before anything is allocated; and every list and string is charged against a
//! budget of [`MAX_DECODED_BYTES`] of in-memory structure per message before it is
//! allocated. So decoding one message allocates at most its frame (the body is shared,
//! not copied) plus `MAX_DECODED_BYTES`, whatever the bytes say.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sibyl_coding::ByteReader;

use crate::error::ProtocolError;
use crate::frame::DEFAULT_MAX_FRAME_LEN;

/// Most bytes of in-memory structure (list elements, string bytes) decoding one message
/// may allocate: the default frame cap. A message needing more is rejected, so a frame of
/// many tiny list elements cannot expand into much more memory than a full frame.
pub const MAX_DECODED_BYTES: usize = DEFAULT_MAX_FRAME_LEN;

/// Reads primitive fields from a message body.
#[derive(Debug)]
pub struct WireReader {
    buf: Bytes,
    /// Structure bytes this message may still allocate.
    budget: usize,
}

impl WireReader {
    /// Starts reading `buf` with the full [`MAX_DECODED_BYTES`] budget.
    pub fn new(buf: Bytes) -> Self {
        WireReader {
            buf,
            budget: MAX_DECODED_BYTES,
        }
    }

    /// Charges `bytes` of allocation against the message's budget.
    fn charge(&mut self, bytes: usize, what: &'static str) -> Result<(), ProtocolError> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(ProtocolError::InvalidValue {
                what,
                reason: format!("decoding needs more than {MAX_DECODED_BYTES} bytes of memory"),
            }),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Truncated {
                what,
                needed: n as u64,
                available: self.buf.len() as u64,
            });
        }
        Ok(())
    }

    /// Decodes one fixed-width field with the shared [`ByteReader`] and consumes it.
    #[inline]
    fn fixed<T>(
        &mut self,
        what: &'static str,
        width: usize,
        read: impl FnOnce(&mut ByteReader<'_>) -> Option<T>,
    ) -> Result<T, ProtocolError> {
        let mut r = ByteReader::new(&self.buf);
        let value = read(&mut r).ok_or(ProtocolError::Truncated {
            what,
            needed: width as u64,
            available: self.buf.len() as u64,
        })?;
        let used = r.position();
        self.buf.advance(used);
        Ok(value)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        self.fixed(what, 1, |r| r.u8())
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        self.fixed(what, 2, |r| r.u16_be())
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        self.fixed(what, 4, |r| r.u32_be())
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        self.fixed(what, 8, |r| r.u64_be())
    }

    /// Reads a big-endian `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, ProtocolError> {
        self.fixed(what, 8, |r| r.i64_be())
    }

    /// Reads a big-endian `i128`.
    pub fn i128(&mut self, what: &'static str) -> Result<i128, ProtocolError> {
        self.fixed(what, 16, |r| r.i128_be())
    }

    /// Reads a `bool` (0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(ProtocolError::InvalidTag {
                what,
                tag: u64::from(tag),
            }),
        }
    }

    /// Reads `bytes` (u32 length + data) as a zero-copy slice.
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, ProtocolError> {
        let len = self.u32(what)? as usize;
        self.need(len, what)?;
        Ok(self.buf.split_to(len))
    }

    /// Reads a `string` (u16 length + UTF-8).
    pub fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        let len = usize::from(self.u16(what)?);
        self.need(len, what)?;
        self.charge(len, what)?;
        let raw = self.buf.split_to(len);
        match std::str::from_utf8(&raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(ProtocolError::InvalidUtf8 { what }),
        }
    }

    /// Reads an `option<T>` with `read` for the present case.
    pub fn option<T>(
        &mut self,
        what: &'static str,
        read: impl FnOnce(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Option<T>, ProtocolError> {
        if self.bool(what)? {
            Ok(Some(read(self)?))
        } else {
            Ok(None)
        }
    }

    /// Reads a `list<T>`; `min_item_len` is the fewest bytes one element can take (at
    /// least 1), used to reject impossible counts before allocating.
    pub fn list<T>(
        &mut self,
        what: &'static str,
        min_item_len: usize,
        mut read: impl FnMut(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Vec<T>, ProtocolError> {
        let count = self.u32(what)? as usize;
        let needed = count.saturating_mul(min_item_len.max(1));
        if needed > self.buf.len() {
            return Err(ProtocolError::Truncated {
                what,
                needed: needed as u64,
                available: self.buf.len() as u64,
            });
        }
        self.charge(count.saturating_mul(std::mem::size_of::<T>()), what)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(read(self)?);
        }
        Ok(items)
    }

    /// Checks that the whole body was consumed.
    pub fn finish(self, what: &'static str) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                what,
                count: self.buf.len() as u64,
            })
        }
    }
}

/// Writes primitive fields into a message body.
#[derive(Debug, Default)]
pub struct WireWriter {
    buf: BytesMut,
}

impl WireWriter {
    /// An empty writer.
    pub fn new() -> Self {
        WireWriter::default()
    }

    /// The bytes written.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }

    /// Writes a `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// Writes a `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    /// Writes a `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    /// Writes a `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    /// Writes an `i64`.
    pub fn i64(&mut self, v: i64) {
        self.buf.put_i64(v);
    }

    /// Writes an `i128`.
    pub fn i128(&mut self, v: i128) {
        self.buf.put_i128(v);
    }

    /// Writes a `bool`.
    pub fn bool(&mut self, v: bool) {
        self.buf.put_u8(u8::from(v));
    }

    /// Writes `bytes`; fails if longer than `u32::MAX`.
    pub fn bytes(&mut self, what: &'static str, v: &[u8]) -> Result<(), ProtocolError> {
        let len = u32::try_from(v.len()).map_err(|_| ProtocolError::InvalidValue {
            what,
            reason: format!("{} bytes exceed u32 length", v.len()),
        })?;
        self.buf.put_u32(len);
        self.buf.put_slice(v);
        Ok(())
    }

    /// Writes a `string`; fails if longer than 65535 bytes.
    pub fn string(&mut self, what: &'static str, v: &str) -> Result<(), ProtocolError> {
        let len = u16::try_from(v.len()).map_err(|_| ProtocolError::InvalidValue {
            what,
            reason: format!("{} bytes exceed the 65535-byte string limit", v.len()),
        })?;
        self.buf.put_u16(len);
        self.buf.put_slice(v.as_bytes());
        Ok(())
    }

    /// Writes an `option<T>`.
    pub fn option<T>(
        &mut self,
        v: Option<&T>,
        write: impl FnOnce(&mut Self, &T) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        match v {
            None => {
                self.u8(0);
                Ok(())
            }
            Some(v) => {
                self.u8(1);
                write(self, v)
            }
        }
    }

    /// Writes a `list<T>`.
    pub fn list<T>(
        &mut self,
        what: &'static str,
        items: &[T],
        mut write: impl FnMut(&mut Self, &T) -> Result<(), ProtocolError>,
    ) -> Result<(), ProtocolError> {
        let count = u32::try_from(items.len()).map_err(|_| ProtocolError::InvalidValue {
            what,
            reason: "list longer than u32".into(),
        })?;
        self.u32(count);
        for item in items {
            write(self, item)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_reader_list_rejects_impossible_count_before_allocating() {
        let mut w = WireWriter::new();
        w.u32(u32::MAX);
        let mut r = WireReader::new(w.finish());
        let err = r.list("cells", 8, |r| r.u8("x")).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Truncated { what: "cells", .. }
        ));
    }

    #[test]
    fn wire_reader_list_over_budget_is_rejected() {
        // 8 Mi one-byte elements fit the bytes left but would need 8 Mi * 24 bytes of Strings.
        let count = 8 * 1024 * 1024;
        let mut w = WireWriter::new();
        w.u32(count as u32);
        let mut body = w.finish().to_vec();
        body.resize(4 + count, 0);
        let mut r = WireReader::new(Bytes::from(body));
        let err = r
            .list("names", 1, |r| r.u8("x").map(|b| b.to_string()))
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::InvalidValue { what: "names", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn wire_reader_bytes_rejects_length_past_end() {
        let mut r = WireReader::new(Bytes::from_static(&[0, 0, 0, 9, 1, 2]));
        assert!(matches!(
            r.bytes("value"),
            Err(ProtocolError::Truncated {
                needed: 9,
                available: 2,
                ..
            })
        ));
    }

    #[test]
    fn wire_reader_string_rejects_invalid_utf8() {
        let mut r = WireReader::new(Bytes::from_static(&[0, 2, 0xff, 0xfe]));
        assert!(matches!(
            r.string("table"),
            Err(ProtocolError::InvalidUtf8 { what: "table" })
        ));
    }

    #[test]
    fn wire_reader_bool_rejects_two() {
        let mut r = WireReader::new(Bytes::from_static(&[2]));
        assert!(matches!(
            r.bool("flag"),
            Err(ProtocolError::InvalidTag { tag: 2, .. })
        ));
    }

    #[test]
    fn wire_primitives_round_trip() {
        let mut w = WireWriter::new();
        w.u8(7);
        w.u16(0x1234);
        w.i64(-5);
        w.i128(-(1i128 << 100));
        w.bytes("b", b"abc").unwrap();
        w.string("s", "héllo").unwrap();
        w.option(Some(&9u32), |w, v| {
            w.u32(*v);
            Ok(())
        })
        .unwrap();
        let mut r = WireReader::new(w.finish());
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("a").unwrap(), 0x1234);
        assert_eq!(r.i64("a").unwrap(), -5);
        assert_eq!(r.i128("a").unwrap(), -(1i128 << 100));
        assert_eq!(&r.bytes("b").unwrap()[..], b"abc");
        assert_eq!(r.string("s").unwrap(), "héllo");
        assert_eq!(r.option("o", |r| r.u32("v")).unwrap(), Some(9));
        r.finish("all").unwrap();
    }
}
