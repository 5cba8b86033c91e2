//! Flags the tools share: how each one is checked, so every binary refuses the same
//! values with the same message.

use std::time::Duration;

/// A `--timeout` that is not a positive, finite number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("--timeout must be a positive number of seconds")]
pub struct InvalidTimeout;

/// The `--timeout SECS` flag (a decimal number of seconds) as a duration.
pub fn timeout(secs: f64) -> Result<Duration, InvalidTimeout> {
    if secs > 0.0 && secs.is_finite() {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(InvalidTimeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_takes_positive_finite_seconds_only() {
        assert_eq!(timeout(1.5), Ok(Duration::from_millis(1500)));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(timeout(bad), Err(InvalidTimeout), "{bad}");
        }
    }
}
