//! The watermark of a load: which items are finished, in order.
//!
//! Items are registered in number order as the dispatcher takes them ([`Tracker::push`])
//! and finish in any order as their batches are answered ([`Tracker::finish`]). The
//! watermark `W` is the highest number such that every item `1..=W` is finished; it
//! only moves forward. Items pass the watermark in number order, and that is when they
//! are counted in the [`Totals`] and when a rejected one is written to the rejects file:
//! so the rejects file holds the rejects of items `1..=W` in number order, and its
//! length at a checkpoint is exactly theirs. Memory: one small slot per item between
//! the watermark and the last item taken (bounded by the requests in flight and the
//! batches being filled).
//!
//! Single-threaded: owned by the dispatcher task.

use std::collections::{BTreeMap, VecDeque};

use crate::load::item::{Reject, RejectKind};

/// Counts over the items below the watermark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// The watermark: items finished, loaded or rejected.
    pub rows_done: u64,
    /// Rows written and acknowledged.
    pub loaded_rows: u64,
    /// Cells written.
    pub cells: u64,
    /// Bytes of keys, names and values written.
    pub bytes: u64,
    /// Rejected items by kind.
    pub rejects: BTreeMap<RejectKind, u64>,
}

impl Totals {
    /// Rejected items of every kind.
    pub fn rejected(&self) -> u64 {
        self.rejects.values().sum()
    }
}

#[derive(Debug)]
enum SlotState {
    Pending,
    Loaded,
    Rejected(Reject),
}

#[derive(Debug)]
struct Slot {
    state: SlotState,
    /// Digest of items `1..=` this one.
    digest: u32,
    cells: u32,
    bytes: u64,
}

/// The finished-item tracker.
#[derive(Debug)]
pub struct Tracker {
    totals: Totals,
    digest: u32,
    /// Items `totals.rows_done + 1 ..`, in order.
    window: VecDeque<Slot>,
}

/// A misuse of the tracker by its caller (a bug, reported rather than panicking).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("load bookkeeping error: item {number}: {reason}")]
pub struct TrackerError {
    /// The item.
    pub number: u64,
    /// What was wrong.
    pub reason: &'static str,
}

impl Tracker {
    /// A tracker starting after `totals.rows_done` items whose digest is `digest` (zero
    /// totals and digest for a new load).
    pub fn new(totals: Totals, digest: u32) -> Tracker {
        Tracker {
            totals,
            digest,
            window: VecDeque::new(),
        }
    }

    /// The next number [`Tracker::push`] expects.
    pub fn next_number(&self) -> u64 {
        self.totals.rows_done + self.window.len() as u64 + 1
    }

    /// Registers the next item: `digest` after it, and for a row its cells and bytes.
    pub fn push(
        &mut self,
        number: u64,
        digest: u32,
        cells: u32,
        bytes: u64,
    ) -> Result<(), TrackerError> {
        if number != self.next_number() {
            return Err(TrackerError {
                number,
                reason: "registered out of order",
            });
        }
        self.window.push_back(Slot {
            state: SlotState::Pending,
            digest,
            cells,
            bytes,
        });
        Ok(())
    }

    /// Marks an item finished: loaded (`None`) or rejected.
    pub fn finish(&mut self, number: u64, reject: Option<Reject>) -> Result<(), TrackerError> {
        let index = number
            .checked_sub(self.totals.rows_done + 1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.window.get_mut(i))
            .ok_or(TrackerError {
                number,
                reason: "finished but not in flight",
            })?;
        if !matches!(index.state, SlotState::Pending) {
            return Err(TrackerError {
                number,
                reason: "finished twice",
            });
        }
        index.state = match reject {
            None => SlotState::Loaded,
            Some(r) => SlotState::Rejected(r),
        };
        Ok(())
    }

    /// Moves the watermark over the finished items at its front; hands each rejected
    /// one to `on_reject` in number order. Returns how many items it passed.
    pub fn advance<E>(
        &mut self,
        mut on_reject: impl FnMut(&Reject) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut passed = 0;
        while let Some(front) = self.window.front() {
            match &front.state {
                SlotState::Pending => break,
                SlotState::Loaded => {
                    self.totals.loaded_rows += 1;
                    self.totals.cells += u64::from(front.cells);
                    self.totals.bytes += front.bytes;
                }
                SlotState::Rejected(r) => {
                    on_reject(r)?;
                    *self.totals.rejects.entry(r.kind).or_default() += 1;
                }
            }
            self.digest = front.digest;
            self.totals.rows_done += 1;
            self.window.pop_front();
            passed += 1;
        }
        Ok(passed)
    }

    /// The totals of the items below the watermark.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The digest after the watermark's item.
    pub fn digest(&self) -> u32 {
        self.digest
    }

    /// Items registered and not yet below the watermark.
    pub fn open_items(&self) -> usize {
        self.window.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(number: u64) -> Reject {
        Reject {
            number,
            line: number + 1,
            kind: RejectKind::Malformed,
            reason: "bad".into(),
            record: String::new(),
        }
    }

    #[test]
    fn tracker_watermark_waits_for_the_lowest_pending_item() {
        let mut t = Tracker::new(Totals::default(), 0);
        for n in 1..=4 {
            t.push(n, 100 + n as u32, 2, 10).unwrap();
        }
        t.finish(2, None).unwrap();
        t.finish(3, Some(reject(3))).unwrap();
        let mut written = Vec::new();
        assert_eq!(
            t.advance(|r| {
                written.push(r.number);
                Ok::<_, ()>(())
            })
            .unwrap(),
            0
        );
        t.finish(1, None).unwrap();
        assert_eq!(
            t.advance(|r| {
                written.push(r.number);
                Ok::<_, ()>(())
            })
            .unwrap(),
            3
        );
        assert_eq!(written, [3]);
        assert_eq!(t.digest(), 103);
        let totals = t.totals();
        assert_eq!(
            (
                totals.rows_done,
                totals.loaded_rows,
                totals.cells,
                totals.bytes
            ),
            (3, 2, 4, 20)
        );
        assert_eq!(totals.rejected(), 1);
        assert_eq!(t.open_items(), 1);
        assert_eq!(t.next_number(), 5);
    }

    #[test]
    fn tracker_refuses_misuse() {
        let mut t = Tracker::new(
            Totals {
                rows_done: 10,
                ..Totals::default()
            },
            7,
        );
        assert!(t.push(12, 0, 0, 0).is_err(), "a gap");
        t.push(11, 0, 0, 0).unwrap();
        assert!(t.finish(10, None).is_err(), "below the watermark");
        assert!(t.finish(12, None).is_err(), "not registered");
        t.finish(11, None).unwrap();
        assert!(t.finish(11, None).is_err(), "twice");
    }
}
