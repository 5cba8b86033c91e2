//! The time seam: write timestamps and TTL expiry read the clock only through [`Clock`], so
//! tests and the cluster simulation control time.
//!
//! Timestamps are microseconds since the Unix epoch (`i64`, Cassandra's unit); expiries are
//! whole seconds since the Unix epoch (`u64`). A value expiring at `t` is expired when
//! `now_secs() >= t`.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time. Implementations are shared between threads.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;

    /// Whole seconds since the Unix epoch (0 for times before it).
    fn now_secs(&self) -> u64 {
        u64::try_from(self.now_micros().div_euclid(1_000_000)).unwrap_or(0)
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // Before 1970: negative microseconds.
            Err(e) => i64::try_from(e.duration().as_micros())
                .map(|m| -m)
                .unwrap_or(i64::MIN),
        }
    }
}

/// A clock that moves only when told to (tests, simulation).
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock reading `micros`.
    pub fn new(micros: i64) -> Self {
        ManualClock {
            micros: AtomicI64::new(micros),
        }
    }

    /// A clock reading `secs` whole seconds.
    pub fn at_secs(secs: i64) -> Self {
        Self::new(secs.saturating_mul(1_000_000))
    }

    /// Sets the time.
    pub fn set_micros(&self, micros: i64) {
        self.micros.store(micros, Ordering::SeqCst);
    }

    /// Moves the time forward (or back, if negative) by `micros`.
    pub fn advance_micros(&self, micros: i64) {
        self.micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// Moves the time forward by `secs` seconds.
    pub fn advance_secs(&self, secs: i64) {
        self.advance_micros(secs.saturating_mul(1_000_000));
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances() {
        let c = ManualClock::at_secs(10);
        assert_eq!(c.now_secs(), 10);
        c.advance_micros(999_999);
        assert_eq!(c.now_secs(), 10);
        c.advance_micros(1);
        assert_eq!(c.now_secs(), 11);
        c.set_micros(-5);
        assert_eq!(c.now_secs(), 0);
    }

    #[test]
    fn system_clock_is_after_2020() {
        // 2020-01-01T00:00:00Z; a clock before that is misconfigured.
        assert!(SystemClock.now_secs() > 1_577_836_800);
    }
}
