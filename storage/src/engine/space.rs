//! Disk space: the engine's free-space reserve and its degraded states.
//!
//! A full disk is an expected condition, not a fatal one:
//! - Writes are refused with [`Error::DiskFull`] (nothing applied) while the file
//!   system's free space is below [`EngineOptions::min_free_bytes`], or when the commit
//!   log's `write(2)` finds the disk full. They are accepted again by themselves once
//!   space is back: the reserve is probed again, the log append succeeds.
//! - A flush or compaction that finds the disk full gives up that job (removing its
//!   partial files), is logged once with the space it needed and the space free, and is
//!   tried again with a backoff ([`Backoff`]); the engine meanwhile keeps taking writes
//!   while the commit log has room and memtables may still freeze.
//!
//! Each condition is recorded in [`Pressure`] when it starts (logged at `warn` once) and
//! cleared when the same kind of work succeeds again (logged at `info`); the engine
//! publishes it through [`EngineHealth`] for `sibyl-admin status` and metrics.
//!
//! Threading: the probe and the pressure record each sit behind their own mutex, held
//! only for a few assignments (the probe's also across one `statvfs`). An atomic flag lets
//! the write path skip the pressure mutex while nothing is degraded.
//!
//! [`EngineOptions::min_free_bytes`]: super::EngineOptions::min_free_bytes

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::lock;
use crate::error::{Error, Result};
use crate::fault::Faults;

/// How long a free-space figure is trusted before `statvfs` is asked again (minus what
/// was appended since). Ten probes a second cost nothing next to the writes they guard,
/// and a burst can only overrun the reserve by what it appends in 100 ms.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// First wait before a background job that found the disk full tries again.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Longest wait between two tries of a background job blocked by a full disk.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(30);

/// A shortage of space: what some work needed against what was free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceShortage {
    /// Bytes the work needed (for a flush the memtable's size, for a compaction the size
    /// of its inputs, for a write its record).
    pub needed: u64,
    /// Bytes free on the file system when it last failed.
    pub free: u64,
    /// The reserve in force (0 when the disk itself was full).
    pub reserve: u64,
    /// When the condition began.
    pub since: SystemTime,
}

/// What the engine can and cannot do right now: the accessor that `sibyl-admin status`
/// and a metrics exporter read ([`super::Engine::health`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineHealth {
    /// The first failure, once an fsync (or a write other than a full disk's) failed: the
    /// engine takes no writes until it is reopened.
    pub poisoned: Option<String>,
    /// Writes are refused: the disk is full or below the reserve.
    pub writes_refused: Option<SpaceShortage>,
    /// Flushes are failing for want of space (retried with backoff).
    pub flush_blocked: Option<SpaceShortage>,
    /// Compactions are failing for want of space (retried with backoff).
    pub compaction_blocked: Option<SpaceShortage>,
}

impl EngineHealth {
    /// True when anything is wrong: poisoned, or short of space in any way.
    pub fn is_degraded(&self) -> bool {
        self.poisoned.is_some()
            || self.writes_refused.is_some()
            || self.flush_blocked.is_some()
            || self.compaction_blocked.is_some()
    }
}

/// Which kind of work a shortage blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    Writes,
    Flush,
    Compaction,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Writes => "writes",
            Work::Flush => "flush",
            Work::Compaction => "compaction",
        }
    }
}

/// The shortages in force.
#[derive(Debug, Default)]
pub(crate) struct Pressure {
    writes: Option<SpaceShortage>,
    flush: Option<SpaceShortage>,
    compaction: Option<SpaceShortage>,
}

impl Pressure {
    fn slot(&mut self, work: Work) -> &mut Option<SpaceShortage> {
        match work {
            Work::Writes => &mut self.writes,
            Work::Flush => &mut self.flush,
            Work::Compaction => &mut self.compaction,
        }
    }

    fn is_empty(&self) -> bool {
        self.writes.is_none() && self.flush.is_none() && self.compaction.is_none()
    }
}

/// The last free-space figure and what was appended since.
struct Probe {
    at: Option<Instant>,
    free: u64,
    appended: u64,
}

/// Free-space reserve and shortage record of one engine.
pub(crate) struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
    probe: Mutex<Probe>,
    pressure: Mutex<Pressure>,
    /// True while `pressure` holds anything (lets the write path skip its mutex).
    degraded: AtomicBool,
}

impl DiskSpace {
    /// Watches the file system of `dir` and keeps `reserve` bytes free of writes.
    pub(crate) fn new(dir: &Path, reserve: u64) -> Self {
        DiskSpace {
            dir: dir.to_path_buf(),
            reserve,
            probe: Mutex::new(Probe {
                at: None,
                free: 0,
                appended: 0,
            }),
            pressure: Mutex::new(Pressure::default()),
            degraded: AtomicBool::new(false),
        }
    }

    /// Bytes free now (0 when the file system cannot be asked).
    pub(crate) fn free_now(&self, faults: &Faults) -> u64 {
        faults.free_bytes(&self.dir).unwrap_or(0)
    }

    /// Refuses a write of `len` bytes with [`Error::DiskFull`] when it would leave less
    /// than the reserve free. Free space is asked of the file system at most every
    /// [`PROBE_INTERVAL`], and whenever the estimate (last figure minus what was appended
    /// since) comes near the reserve, so refusals end as soon as space is back.
    pub(crate) fn check_reserve(&self, faults: &Faults, len: usize) -> Result<()> {
        if self.reserve == 0 {
            return Ok(());
        }
        let len = len as u64;
        let mut p = lock(&self.probe);
        let wanted = self.reserve.saturating_add(len);
        let stale = p.at.is_none_or(|at| at.elapsed() >= PROBE_INTERVAL);
        if stale || p.free.saturating_sub(p.appended) < wanted {
            p.free = self.free_now(faults);
            p.at = Some(Instant::now());
            p.appended = 0;
        }
        let free = p.free.saturating_sub(p.appended);
        if free < wanted {
            return Err(Error::DiskFull {
                path: self.dir.clone(),
                needed: len,
                free,
                reserve: self.reserve,
            });
        }
        p.appended = p.appended.saturating_add(len);
        Ok(())
    }

    /// Records that `work` is blocked by `e` (an [`Error::DiskFull`]; `needed` overrides
    /// its estimate when given). Logs once, when the condition begins.
    pub(crate) fn blocked(&self, work: Work, e: &Error, needed: Option<u64>) {
        let Error::DiskFull {
            path,
            needed: e_needed,
            free,
            reserve,
        } = e
        else {
            return;
        };
        let needed = needed.unwrap_or(*e_needed);
        let mut p = lock(&self.pressure);
        let slot = p.slot(work);
        match slot {
            Some(s) => {
                s.needed = needed;
                s.free = *free;
            }
            None => {
                let what = match work {
                    Work::Writes => "writes refused until space is freed",
                    Work::Flush => "flush stopped, retried with backoff",
                    Work::Compaction => "compaction stopped, retried with backoff",
                };
                tracing::warn!(
                    work = work.name(),
                    path = %path.display(),
                    needed,
                    free,
                    reserve,
                    "disk full: {what}"
                );
                *slot = Some(SpaceShortage {
                    needed,
                    free: *free,
                    reserve: *reserve,
                    since: SystemTime::now(),
                });
            }
        }
        self.degraded.store(true, Ordering::Release);
    }

    /// Records that `work` succeeded: ends its shortage, if any (logged once).
    #[inline]
    pub(crate) fn cleared(&self, work: Work) {
        if !self.degraded.load(Ordering::Acquire) {
            return;
        }
        let mut p = lock(&self.pressure);
        if p.slot(work).take().is_some() {
            tracing::info!(
                work = work.name(),
                "disk space available again: {} resumed",
                work.name()
            );
        }
        self.degraded.store(!p.is_empty(), Ordering::Release);
    }

    /// The shortage blocking `work`, if any.
    pub(crate) fn shortage(&self, work: Work) -> Option<SpaceShortage> {
        if !self.degraded.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.pressure).slot(work).clone()
    }

    /// The shortages as the public health record (`poisoned` left to the caller).
    pub(crate) fn health(&self) -> EngineHealth {
        let p = lock(&self.pressure);
        EngineHealth {
            poisoned: None,
            writes_refused: p.writes.clone(),
            flush_blocked: p.flush.clone(),
            compaction_blocked: p.compaction.clone(),
        }
    }

    /// The typed refusal for a write while `work` is blocked by a shortage.
    pub(crate) fn refusal(&self, s: &SpaceShortage) -> Error {
        Error::DiskFull {
            path: self.dir.clone(),
            needed: s.needed,
            free: s.free,
            reserve: s.reserve,
        }
    }
}

/// Exponential backoff of a background job blocked by a full disk: [`FIRST_RETRY`],
/// doubling up to [`MAX_RETRY`]; reset when the job succeeds.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The deadline of the next try after a failure.
    pub(crate) fn failed(&mut self) -> Instant {
        let wait = self
            .next
            .map_or(FIRST_RETRY, |d| d.saturating_mul(2).min(MAX_RETRY));
        self.next = Some(wait);
        Instant::now() + wait
    }

    /// The job succeeded: the next failure starts the backoff over.
    pub(crate) fn reset(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let mut waits = Vec::new();
        for _ in 0..8 {
            b.failed();
            waits.push(b.next.unwrap());
        }
        assert_eq!(waits[0], FIRST_RETRY);
        assert_eq!(waits[1], FIRST_RETRY * 2);
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        b.reset();
        b.failed();
        assert_eq!(b.next, Some(FIRST_RETRY));
    }

    #[test]
    fn reserve_refuses_below_it_and_accepts_again_once_space_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let space = DiskSpace::new(dir.path(), 1000);
        faults.set_free_bytes(Some(1050));
        let e = space.check_reserve(&faults, 100).unwrap_err();
        assert!(
            matches!(
                e,
                Error::DiskFull {
                    free: 1050,
                    reserve: 1000,
                    needed: 100,
                    ..
                }
            ),
            "{e}"
        );
        // The estimate is below the reserve, so the file system is asked again at once.
        faults.set_free_bytes(Some(1_000_000));
        space.check_reserve(&faults, 100).unwrap();
        assert!(DiskSpace::new(dir.path(), 0)
            .check_reserve(&faults, 1 << 40)
            .is_ok());
    }

    #[test]
    fn pressure_is_recorded_and_cleared_per_kind_of_work() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path(), 0);
        let e = Error::DiskFull {
            path: dir.path().to_path_buf(),
            needed: 10,
            free: 3,
            reserve: 0,
        };
        space.blocked(Work::Compaction, &e, Some(99));
        let h = space.health();
        assert_eq!(
            h.compaction_blocked.as_ref().map(|s| (s.needed, s.free)),
            Some((99, 3))
        );
        assert!(h.is_degraded());
        space.cleared(Work::Flush);
        assert!(space.shortage(Work::Compaction).is_some());
        space.cleared(Work::Compaction);
        assert!(!space.health().is_degraded());
    }
}
