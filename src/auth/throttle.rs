//! Failed logins slowed per source address ([`LoginThrottle`]): the answer to a failed
//! login waits a delay that grows with the failures from that address (none for the
//! first, then 100 ms doubling up to 5 s), forgotten after a minute without one
//! (`doc/wire_format.md`, section 7).
//!
//! The delay is served by the failing connection alone (a tokio sleep on its own task),
//! so a flood of failures from one address slows that address's failing logins and
//! nothing else: other connections, successful logins and other addresses are not
//! delayed, and the flood costs the node no thread.
//!
//! Threading: `Send + Sync`; one short mutex over a bounded map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The delay after the second failure in a row; it doubles per failure after.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay (under the 10 s handshake deadline, so a failing client still hears
/// why).
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address with no failure for this long starts again from no delay.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Most addresses remembered; past it, the ones idle longest are forgotten (memory is
/// bounded whatever the number of sources).
const MAX_SOURCES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failure counts per source address (see the module documentation).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    sources: Mutex<HashMap<IpAddr, Failures>>,
}

/// The delay before answering the `count`-th failure in a row.
pub fn delay_for(count: u32) -> Duration {
    if count <= 1 {
        return Duration::ZERO;
    }
    let doublings = (count - 2).min(16);
    FIRST_DELAY.saturating_mul(1u32 << doublings).min(MAX_DELAY)
}

impl LoginThrottle {
    /// An empty throttle.
    pub fn new() -> LoginThrottle {
        LoginThrottle::default()
    }

    /// Records a failure from `source` at `now`; returns how many failures in a row it
    /// has and the delay to wait before answering.
    pub fn failure(&self, source: IpAddr, now: Instant) -> (u32, Duration) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if sources.len() >= MAX_SOURCES {
                sources.clear();
            }
        }
        let entry = sources.entry(source).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        (entry.count, delay_for(entry.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_delay_grows_per_source_and_is_capped() {
        assert_eq!(delay_for(1), Duration::ZERO);
        assert_eq!(delay_for(2), Duration::from_millis(100));
        assert_eq!(delay_for(3), Duration::from_millis(200));
        assert_eq!(delay_for(7), Duration::from_millis(3200));
        assert_eq!(delay_for(8), MAX_DELAY);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
        let t = LoginThrottle::new();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(t.failure(a, now).1, Duration::ZERO);
        assert_eq!(t.failure(a, now).1, FIRST_DELAY);
        assert_eq!(
            t.failure(b, now).1,
            Duration::ZERO,
            "another source starts afresh"
        );
        let later = now + FORGET_AFTER;
        assert_eq!(
            t.failure(a, later),
            (1, Duration::ZERO),
            "forgotten after a quiet minute"
        );
    }
}
