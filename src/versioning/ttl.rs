//! TTL: when a value written with a time to live expires.
//!
//! Expiries are stored as whole seconds since the Unix epoch (see [`super::clock`]: a
//! value expiring at `t` is expired once `now_secs() >= t`). To store a second and still
//! never cut a TTL short, the expiry of a write is rounded **up**: a value written at
//! `w` µs with a TTL of `t` seconds expires at `ceil(w / 10^6) + t`, so it is readable for
//! at least `t` seconds and less than `t + 1` (the client wire spec, section 5.5, states
//! this). Rounding down (the old rule, `floor(w / 10^6) + t`) let a `ttl = 1` value live
//! anywhere between a few milliseconds and one second.
//!
//! Pure functions; no threading concerns.

/// Microseconds per second.
const MICROS_PER_SEC: i64 = 1_000_000;

/// The second from which a value written at `now_micros` with a TTL of `ttl_secs` is
/// expired: `ceil(now_micros / 10^6) + ttl_secs`, saturating; times before the Unix epoch
/// count as 0.
pub fn expires_at_secs(now_micros: i64, ttl_secs: u32) -> u64 {
    let whole = now_micros.div_euclid(MICROS_PER_SEC);
    let partial = now_micros.rem_euclid(MICROS_PER_SEC) != 0;
    let ceil = u64::try_from(whole).unwrap_or(0) + u64::from(partial && whole >= 0);
    ceil.saturating_add(u64::from(ttl_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expired at `now_micros` under the clock's rule (`now_secs >= expiry`).
    fn expired(expiry: u64, now_micros: i64) -> bool {
        u64::try_from(now_micros.div_euclid(MICROS_PER_SEC)).unwrap_or(0) >= expiry
    }

    #[test]
    fn ttl_expiry_rounds_up_to_the_next_whole_second() {
        assert_eq!(expires_at_secs(10_000_000, 1), 11);
        assert_eq!(expires_at_secs(10_000_001, 1), 12);
        assert_eq!(expires_at_secs(10_999_999, 1), 12);
        assert_eq!(expires_at_secs(10_500_000, 0), 11);
    }

    #[test]
    fn ttl_value_lives_at_least_ttl_and_less_than_ttl_plus_one() {
        for w in [
            0i64,
            1,
            130_000,
            920_000,
            999_999,
            1_000_000,
            1_700_000_000_123_456,
        ] {
            for t in [1u32, 2, 60] {
                let e = expires_at_secs(w, t);
                let ttl = i64::from(t) * MICROS_PER_SEC;
                assert!(!expired(e, w + ttl - 1), "w {w} t {t}: cut short");
                assert!(
                    expired(e, w + ttl + MICROS_PER_SEC - 1),
                    "w {w} t {t}: too long"
                );
            }
        }
    }

    #[test]
    fn ttl_expiry_saturates_and_clamps_before_the_epoch() {
        assert!(expires_at_secs(i64::MAX, u32::MAX) > u64::from(u32::MAX));
        assert_eq!(expires_at_secs(-5, 3), 3);
        assert_eq!(expires_at_secs(i64::MIN, 3), 3);
    }
}
