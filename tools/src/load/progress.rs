//! Progress of a running load on standard error: an indicatif bar on a terminal (input
//! share, rows, rows/s, ETA when the input's size is known), else a plain line every
//! `interval` (`sibyl-load: 120000 rows, 40000 rows/s, 35% of input, eta 12s`), or
//! nothing.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// Nothing.
    Off,
}

/// The progress display.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    interval: Duration,
    last_line: Instant,
    started: Instant,
    size: Option<u64>,
    rows_at_start: u64,
}

impl Progress {
    /// A display for an input of `size` bytes (if known), starting after `rows_at_start`
    /// rows (a resumed load).
    pub fn new(
        mode: ProgressMode,
        size: Option<u64>,
        interval: Duration,
        rows_at_start: u64,
    ) -> Progress {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let (bar, plain) = match mode {
            ProgressMode::Off => (None, false),
            ProgressMode::Auto if terminal => (Some(new_bar(size)), false),
            ProgressMode::Auto | ProgressMode::Plain => (None, true),
        };
        let now = Instant::now();
        Progress {
            bar,
            plain,
            interval,
            last_line: now,
            started: now,
            size,
            rows_at_start,
        }
    }

    /// Shows `rows` finished and `consumed` input bytes.
    pub fn update(&mut self, rows: u64, consumed: u64) {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = rows.saturating_sub(self.rows_at_start) as f64 / elapsed;
        if let Some(bar) = &self.bar {
            if self.size.is_some() {
                bar.set_position(consumed);
            }
            bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
            return;
        }
        if !self.plain || self.last_line.elapsed() < self.interval {
            return;
        }
        self.last_line = Instant::now();
        let mut line = format!("sibyl-load: {rows} rows, {rate:.0} rows/s");
        if let Some(size) = self.size.filter(|s| *s > 0) {
            let share = (consumed as f64 / size as f64).min(1.0);
            line.push_str(&format!(", {:.0}% of input", share * 100.0));
            let byte_rate = consumed as f64 / elapsed;
            if byte_rate > 0.0 {
                let eta = size.saturating_sub(consumed) as f64 / byte_rate;
                line.push_str(&format!(", eta {}", human_secs(eta)));
            }
        }
        eprintln!("{line}");
    }

    /// Removes the bar (before the final report).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn new_bar(size: Option<u64>) -> ProgressBar {
    let bar = match size {
        Some(size) => {
            let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}, eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
                bar.set_style(style);
            }
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `12s`, `3m05s`, `2h10m`.
pub fn human_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_secs_picks_units() {
        assert_eq!(human_secs(12.4), "12s");
        assert_eq!(human_secs(185.0), "3m05s");
        assert_eq!(human_secs(7800.0), "2h10m");
        assert_eq!(human_secs(-1.0), "0s");
    }
}
