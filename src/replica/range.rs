//! Token ranges of the ring as engine-key ranges, and the ordered scan of one.
//!
//! A [`TokenRange`] `(start, end]` is Cassandra's and riak_core's range: the tokens after
//! `start` up to and including `end`, going clockwise. `start == end` is the whole ring;
//! `start > end` wraps past the largest token to the smallest. Because engine keys begin
//! with the row's token in sortable form ([`super::keys`]), a range that does not wrap is
//! one contiguous span of engine keys and a wrapping one is two: `(start, max]` then
//! `[min, end]`. [`RangeScan`] yields the raw stored entries of a range in ring order
//! starting after `start` (token order within each span); rows of equal tokens come out
//! in partition-key byte order (length first), columns of a row in column order, the row
//! tombstone first.
//!
//! Threading: a [`RangeScan`] holds engine snapshots (see `sibyl_storage::ScanIter`); it
//! is `Send` and used by one thread at a time.

use std::ops::Bound;

use sibyl_storage::{Direction, Engine, ScanIter};

use super::keys::{successor_prefix, token_prefix};
use crate::ring::{Partitioner, Token};

/// A range of the ring: the tokens in `(start, end]`, clockwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRange {
    /// Exclusive start.
    pub start: Token,
    /// Inclusive end.
    pub end: Token,
}

/// One contiguous span of engine keys: `[lower, upper)`, `None` = unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpan {
    /// Inclusive lower bound; `None` = from the first key.
    pub lower: Option<Vec<u8>>,
    /// Exclusive upper bound; `None` = to the last key.
    pub upper: Option<Vec<u8>>,
}

impl KeySpan {
    /// The lower bound as an engine scan bound.
    pub fn lower_bound(&self) -> Bound<&[u8]> {
        self.lower
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Included)
    }

    /// The upper bound as an engine scan bound.
    pub fn upper_bound(&self) -> Bound<&[u8]> {
        self.upper
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded)
    }
}

impl TokenRange {
    /// True when `token` lies in `(start, end]`.
    pub fn contains(&self, token: Token) -> bool {
        let (s, e) = (self.start, self.end);
        match s.cmp(&e) {
            std::cmp::Ordering::Less => s < token && token <= e,
            // Wrap-around: after start, or up to end.
            std::cmp::Ordering::Greater => token > s || token <= e,
            std::cmp::Ordering::Equal => true,
        }
    }

    /// The engine-key spans of the range, in ring order from `start` (one, or two for a
    /// range that wraps). Keys whose token is `t` are exactly those in
    /// `[prefix(t), successor(prefix(t)))`.
    pub fn key_spans(&self, partitioner: Partitioner) -> Vec<KeySpan> {
        // Keys after every key of token `t`: the successor of its prefix; `None` when `t`
        // is the largest token (nothing follows).
        let after = |t: Token| successor_prefix(&token_prefix(t));
        let min = partitioner.min_token();
        if self.start < self.end {
            return vec![KeySpan {
                lower: after(self.start),
                upper: after(self.end),
            }];
        }
        // Wraps (or whole ring, start == end): (start, max] then [min, end].
        let first = KeySpan {
            lower: after(self.start),
            upper: None,
        };
        let second = KeySpan {
            lower: Some(token_prefix(min)),
            upper: after(self.end),
        };
        // A start at the maximum token leaves the first span empty; a successor of
        // `None` means the span is empty too.
        let mut out = Vec::with_capacity(2);
        if first.lower.is_some() {
            out.push(first);
        }
        out.push(second);
        out
    }
}

/// The raw entries of a token range, in ring order: `(engine key, stored bytes)`, every
/// version of a key merged by the table's policy but not filtered by its read (lww
/// tombstones, causal cells of tombstones and expired versions included), so a replica
/// that receives them by apply learns every delete. An undecodable stored value is
/// yielded too; [`super::Replica::check_cell`] tells a sender which ones a receiver's
/// apply would refuse.
pub struct RangeScan {
    /// The span after `start` (absent when `start` is the largest token).
    first: Option<ScanIter>,
    first_done: bool,
    /// The wrapped span from the smallest token (absent for a range that does not wrap).
    second: Option<ScanIter>,
}

impl std::fmt::Debug for RangeScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeScan")
            .field("first_done", &self.first_done)
            .finish_non_exhaustive()
    }
}

impl RangeScan {
    /// Opens the scans of every span of `range` (snapshots taken now).
    pub fn new(
        engine: &Engine,
        table: &str,
        partitioner: Partitioner,
        range: TokenRange,
    ) -> Result<RangeScan, sibyl_storage::Error> {
        RangeScan::after(engine, table, partitioner, range, None)
    }

    /// [`RangeScan::new`] resuming in ring order after the engine key `after` (a key the
    /// range's scan yielded before: a stream's checkpoint). `None` scans the whole range;
    /// a key outside every span of the range scans nothing.
    pub fn after(
        engine: &Engine,
        table: &str,
        partitioner: Partitioner,
        range: TokenRange,
        after: Option<&[u8]>,
    ) -> Result<RangeScan, sibyl_storage::Error> {
        let spans = range.key_spans(partitioner);
        // Spans are in ring order: those before the one holding `after` are done, the one
        // holding it resumes past it, those after it are whole.
        let holder = after.map(|k| {
            spans
                .iter()
                .position(|s| {
                    s.lower.as_deref().is_none_or(|l| l <= k)
                        && s.upper.as_deref().is_none_or(|u| k < u)
                })
                .unwrap_or(spans.len())
        });
        let mut scans = Vec::with_capacity(2);
        for (i, span) in spans.iter().enumerate() {
            let lower = match (holder, after) {
                (Some(h), _) if i < h => continue,
                (Some(h), Some(k)) if i == h => Bound::Excluded(k),
                _ => span.lower_bound(),
            };
            scans.push(engine.scan(table, lower, span.upper_bound(), Direction::Forward)?);
        }
        let mut it = scans.into_iter();
        let first = it.next();
        Ok(RangeScan {
            first_done: first.is_none(),
            first,
            second: it.next(),
        })
    }

    /// The next `(engine key, stored bytes)`, borrowing the scan's buffers; `None` at the
    /// end of the range.
    #[allow(clippy::should_implement_trait)]
    pub fn next_entry(&mut self) -> sibyl_storage::Result<Option<(&[u8], &[u8])>> {
        if !self.first_done {
            if let Some(scan) = self.first.as_mut() {
                if let Some(entry) = scan.next_merged()? {
                    return Ok(Some(entry));
                }
            }
            self.first_done = true;
        }
        match self.second.as_mut() {
            Some(scan) => scan.next_merged(),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m3(v: i64) -> Token {
        Token::Murmur3(v)
    }

    #[test]
    fn token_range_contains_follows_the_ring() {
        let r = TokenRange {
            start: m3(-5),
            end: m3(10),
        };
        assert!(!r.contains(m3(-5)) && r.contains(m3(-4)) && r.contains(m3(10)));
        assert!(!r.contains(m3(11)));
        let wrap = TokenRange {
            start: m3(10),
            end: m3(-5),
        };
        assert!(wrap.contains(m3(i64::MAX)) && wrap.contains(m3(i64::MIN)));
        assert!(wrap.contains(m3(-5)) && !wrap.contains(m3(0)) && !wrap.contains(m3(10)));
        let all = TokenRange {
            start: m3(3),
            end: m3(3),
        };
        assert!(all.contains(m3(3)) && all.contains(m3(0)));
    }

    #[test]
    fn token_range_spans_bound_exactly_the_tokens() {
        let p = Partitioner::Murmur3;
        let key_of = |t: i64| {
            let mut k = token_prefix(m3(t));
            k.extend_from_slice(&[0, 1, b'k', b'c']);
            k
        };
        let in_spans = |spans: &[KeySpan], k: &[u8]| {
            spans.iter().any(|s| {
                s.lower.as_deref().is_none_or(|l| l <= k)
                    && s.upper.as_deref().is_none_or(|u| k < u)
            })
        };
        let ranges = [
            TokenRange {
                start: m3(-5),
                end: m3(10),
            },
            TokenRange {
                start: m3(10),
                end: m3(-5),
            },
            TokenRange {
                start: m3(i64::MAX),
                end: m3(0),
            },
            TokenRange {
                start: m3(0),
                end: m3(i64::MAX),
            },
            TokenRange {
                start: m3(7),
                end: m3(7),
            },
        ];
        for r in ranges {
            let spans = r.key_spans(p);
            for t in [
                i64::MIN,
                i64::MIN + 1,
                -6,
                -5,
                -4,
                0,
                7,
                9,
                10,
                11,
                i64::MAX,
            ] {
                assert_eq!(in_spans(&spans, &key_of(t)), r.contains(m3(t)), "{r:?} {t}");
            }
        }
    }
}
