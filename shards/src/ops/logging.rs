//! Log lines, through `tracing`, to standard error.
//!
//! `log.format = "human"` writes one line per event (timestamp, level, the
//! module, the message and its fields); `"json"` writes one JSON object per
//! line with the same content (`timestamp`, `level`, `target`, `fields`),
//! for a log shipper. `log.level` sets the least severe level written.
//!
//! Errors on the data plane can come thousands of times a second (a
//! misconfigured exporter, a flood of garbage), so they go through a
//! `Limiter`: at most `log.data_plane_lines_per_minute` lines per shard
//! and kind, each saying how many were left out since the previous one.
//! The counters in `/metrics` count every occurrence regardless.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tracing::level_filters::LevelFilter;
use weir_core::config::{LogConfig, LogFormat, LogLevel};

/// Installs the subscriber for the whole process; a second call (tests)
/// leaves the first in place.
pub fn init(config: &LogConfig) {
    let level = match config.level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level);
    let _ = match config.format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

/// At most `limit` events pass per window; a window opens with the first
/// event that passes, so with a limit of 1 an event passes when the last
/// one that passed is a window old.
pub struct Limiter {
    limit: u32,
    window: Duration,
    window_start: Instant,
    passed: u32,
    held_back: u64,
}

impl Limiter {
    /// At most `per_minute` a minute (the data-plane logs).
    pub fn new(per_minute: u32) -> Limiter {
        Limiter::per_window(per_minute, Duration::from_secs(60))
    }

    pub fn per_window(limit: u32, window: Duration) -> Limiter {
        Limiter { limit, window, window_start: Instant::now(), passed: 0, held_back: 0 }
    }

    /// An event happened at `now`: `Some(n)` when it may be logged, `n`
    /// being how many were held back since the last one logged; `None`
    /// when it is to be held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.passed > 0 && now.saturating_duration_since(self.window_start) >= self.window {
            self.passed = 0;
        }
        if self.passed >= self.limit {
            self.held_back += 1;
            return None;
        }
        if self.passed == 0 {
            self.window_start = now;
        }
        self.passed += 1;
        Some(std::mem::take(&mut self.held_back))
    }

    /// How many were held back since the last one logged, counting afresh.
    pub fn take_held_back(&mut self) -> u64 {
        std::mem::take(&mut self.held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_limit_and_the_next_line_tells_how_much_was_left_out() {
        let start = Instant::now();
        let mut limiter = Limiter::new(3);
        let passed: Vec<_> = (0..1000).filter_map(|_| limiter.allow(start)).collect();
        assert_eq!(passed, vec![0, 0, 0]);
        // A minute on, the first line counts the 997 held back.
        let later = start + Duration::from_secs(61);
        assert_eq!(limiter.allow(later), Some(997));
        assert_eq!(limiter.allow(later), Some(0));
    }

    #[test]
    fn one_per_window_counts_from_the_last_line_logged() {
        let t0 = Instant::now();
        let mut limiter = Limiter::per_window(1, Duration::from_secs(10));
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(limiter.allow(at(9)), Some(0));
        // 2 s after the line, not 11 s after the limiter was made: held back.
        assert_eq!(limiter.allow(at(11)), None);
        assert_eq!(limiter.allow(at(18)), None);
        assert_eq!(limiter.allow(at(19)), Some(2));
        assert_eq!(limiter.allow(at(20)), None);
        assert_eq!(limiter.take_held_back(), 1);
        assert_eq!(limiter.take_held_back(), 0);
        assert_eq!(limiter.allow(at(25)), None, "taking the count leaves the window as it is");
    }
}
