//! Byte coding shared by every Sibyl format: the storage engine's files, the client
//! protocol, the peer messages and the node's own cell, context and schema encodings.
//!
//! One reader, [`ByteReader`], decodes fixed-width integers (big- or little-endian, named
//! in each method), LEB128 varints and byte runs from a slice without ever panicking or
//! indexing past the end: every read returns `None` on truncated or malformed input, and
//! the caller turns that into its own typed error with the context it knows (which field,
//! which file). The writer functions (`put_*`) are the exact inverses.
//!
//! Which byte order a format uses is that format's decision, written in its spec: the
//! storage engine's on-disk formats are little-endian with varints (LevelDB's
//! `util/coding`), the wire formats (client and peer) are big-endian.
//!
//! Pure functions and a cursor; no threading concerns.
#![no_std]
#![deny(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

extern crate alloc;

use alloc::vec::Vec;

/// Most bytes a varint takes (a `u64` in 7-bit groups).
pub const MAX_VARINT_LEN: usize = 10;

/// Appends `v` as a little-endian u32.
#[inline]
pub fn put_u32_le(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as a little-endian u64.
#[inline]
pub fn put_u64_le(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as a varint (1 to [`MAX_VARINT_LEN`] bytes, low 7-bit group first).
#[inline]
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a varint length followed by the bytes.
#[inline]
pub fn put_varint_prefixed(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

/// Reads `N` bytes at `pos` as an array, `None` when they are not all there.
#[inline]
pub fn array_at<const N: usize>(buf: &[u8], pos: usize) -> Option<[u8; N]> {
    let b = buf.get(pos..pos.checked_add(N)?)?;
    <[u8; N]>::try_from(b).ok()
}

/// Reads a little-endian u32 at `pos`.
#[inline]
pub fn u32_le_at(buf: &[u8], pos: usize) -> Option<u32> {
    array_at(buf, pos).map(u32::from_le_bytes)
}

/// Reads a little-endian u64 at `pos`.
#[inline]
pub fn u64_le_at(buf: &[u8], pos: usize) -> Option<u64> {
    array_at(buf, pos).map(u64::from_le_bytes)
}

/// A cursor over a byte slice that decodes without panicking. A failed read leaves the
/// cursor where it was.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

macro_rules! fixed {
    ($(#[$doc:meta] $name:ident => $ty:ty, $from:ident;)*) => {$(
        #[$doc]
        #[inline]
        pub fn $name(&mut self) -> Option<$ty> {
            self.array().map(<$ty>::$from)
        }
    )*};
}

impl<'a> ByteReader<'a> {
    /// Starts reading `buf` at offset 0.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        ByteReader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when everything has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not read yet (the cursor does not move).
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Reads `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(b)
    }

    /// Reads `N` bytes as an array.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let a = array_at(self.buf, self.pos)?;
        self.pos += N;
        Some(a)
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fixed! {
        /// Reads a big-endian u16.
        u16_be => u16, from_be_bytes;
        /// Reads a big-endian u32.
        u32_be => u32, from_be_bytes;
        /// Reads a big-endian u64.
        u64_be => u64, from_be_bytes;
        /// Reads a big-endian i64.
        i64_be => i64, from_be_bytes;
        /// Reads a big-endian u128.
        u128_be => u128, from_be_bytes;
        /// Reads a big-endian i128.
        i128_be => i128, from_be_bytes;
        /// Reads a little-endian u32.
        u32_le => u32, from_le_bytes;
        /// Reads a little-endian u64.
        u64_le => u64, from_le_bytes;
    }

    /// Reads a varint of at most [`MAX_VARINT_LEN`] bytes; an overlong or truncated one
    /// (or one whose value does not fit a u64) is `None`.
    #[inline]
    pub fn varint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        let mut at = self.pos;
        for shift in (0..70).step_by(7) {
            let b = *self.buf.get(at)?;
            at += 1;
            if shift == 63 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                self.pos = at;
                return Some(v);
            }
        }
        None
    }

    /// Reads a varint length that must fit in `usize` and not exceed what is left.
    #[inline]
    pub fn varint_len(&mut self) -> Option<usize> {
        let start = self.pos;
        let n = self.varint().and_then(|n| usize::try_from(n).ok());
        match n {
            Some(n) if n <= self.remaining() => Some(n),
            _ => {
                self.pos = start;
                None
            }
        }
    }

    /// Reads a varint length and that many bytes.
    #[inline]
    pub fn varint_prefixed(&mut self) -> Option<&'a [u8]> {
        let n = self.varint_len()?;
        self.take(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    #[test]
    fn varint_round_trips_edges() {
        for v in [0u64, 1, 127, 128, 300, 1 << 32, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert!(b.len() <= MAX_VARINT_LEN);
            let mut r = ByteReader::new(&b);
            assert_eq!(r.varint(), Some(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_truncated_or_overlong_is_rejected_and_the_cursor_stays() {
        let mut r = ByteReader::new(&[0x80]);
        assert_eq!(r.varint(), None);
        assert_eq!(r.position(), 0);
        assert_eq!(ByteReader::new(&[0xff; 11]).varint(), None);
        assert_eq!(
            ByteReader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            None
        );
    }

    #[test]
    fn varint_prefixed_length_beyond_buffer_is_rejected() {
        let mut b = Vec::new();
        put_varint(&mut b, 5);
        b.extend_from_slice(b"abc");
        let mut r = ByteReader::new(&b);
        assert_eq!(r.varint_prefixed(), None);
        assert_eq!(r.position(), 0);
        let mut ok = Vec::new();
        put_varint_prefixed(&mut ok, b"abc");
        assert_eq!(ByteReader::new(&ok).varint_prefixed(), Some(&b"abc"[..]));
    }

    #[test]
    fn fixed_width_reads_name_their_byte_order() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut r = ByteReader::new(&b);
        assert_eq!(r.u16_be(), Some(0x0102));
        assert_eq!(r.u32_le(), Some(0x0605_0403));
        assert_eq!(r.u32_be(), None, "two bytes left");
        assert_eq!(r.position(), 6);
        assert_eq!(r.rest(), &[7, 8]);
        assert_eq!(u32_le_at(&b, 4), Some(0x0807_0605));
        assert_eq!(u64_le_at(&b, 1), None);
        assert_eq!(u32_le_at(&b, usize::MAX), None);
    }

    #[test]
    fn take_past_the_end_is_none() {
        let mut r = ByteReader::new(b"abc");
        assert_eq!(r.take(usize::MAX), None);
        assert_eq!(r.take(4), None);
        assert_eq!(r.take(3), Some(&b"abc"[..]));
        assert_eq!(r.u8(), None);
        assert!(r.is_empty());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), ops in proptest::collection::vec(0u8..9, 0..32)) {
            let mut r = ByteReader::new(&bytes);
            for op in ops {
                let before = r.position();
                let ok = match op {
                    0 => r.u8().is_some(),
                    1 => r.u16_be().is_some(),
                    2 => r.u32_be().is_some(),
                    3 => r.u64_be().is_some(),
                    4 => r.i128_be().is_some(),
                    5 => r.u32_le().is_some(),
                    6 => r.varint().is_some(),
                    7 => r.varint_prefixed().is_some(),
                    _ => r.take(5).is_some(),
                };
                prop_assert!(r.position() <= bytes.len());
                if !ok { prop_assert_eq!(r.position(), before); }
            }
        }

        #[test]
        fn writers_and_reader_are_inverse(a in any::<u32>(), b in any::<u64>(), v in any::<u64>(), s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut buf = vec![];
            put_u32_le(&mut buf, a);
            put_u64_le(&mut buf, b);
            put_varint(&mut buf, v);
            put_varint_prefixed(&mut buf, &s);
            let mut r = ByteReader::new(&buf);
            prop_assert_eq!(r.u32_le(), Some(a));
            prop_assert_eq!(r.u64_le(), Some(b));
            prop_assert_eq!(r.varint(), Some(v));
            prop_assert_eq!(r.varint_prefixed(), Some(&s[..]));
            prop_assert!(r.is_empty());
        }
    }
}
