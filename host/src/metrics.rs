//! Failure accounting: per-plugin counters of how connections ended or were refused, and
//! logging that a flood cannot turn into a log flood.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Everything counted for one plugin.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections served (admitted and started).
    pub served: AtomicU64,
    /// `handle-connection` returned `err`.
    pub errors: AtomicU64,
    /// The plugin trapped (panics included).
    pub traps: AtomicU64,
    /// Connections ended by a limit (memory, CPU, idle, duration).
    pub limit_hits: AtomicU64,
    /// Connections refused at admission.
    pub refused: AtomicU64,
    log: LogLimiter,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// See [`Counters::served`].
    pub served: u64,
    /// See [`Counters::errors`].
    pub errors: u64,
    /// See [`Counters::traps`].
    pub traps: u64,
    /// See [`Counters::limit_hits`].
    pub limit_hits: u64,
    /// See [`Counters::refused`].
    pub refused: u64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            served: get(&self.served),
            errors: get(&self.errors),
            traps: get(&self.traps),
            limit_hits: get(&self.limit_hits),
            refused: get(&self.refused),
        }
    }

    /// Whether a failure log line may be written now; see [`LogLimiter`].
    pub fn may_log(&self) -> Option<u64> {
        self.log.allow()
    }
}

/// Lets at most `per_second` lines through per second; the first line after a
/// suppressed stretch reports how many were dropped.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter::new(Self::PER_SECOND)
    }
}

impl LogLimiter {
    /// Failure lines allowed per second per plugin (the default).
    pub const PER_SECOND: u32 = 10;
    /// Plugin output lines (stdout/stderr) allowed per second per plugin.
    pub const OUTPUT_PER_SECOND: u32 = 100;

    /// A limiter letting `per_second` lines through each second.
    pub fn new(per_second: u32) -> Self {
        LogLimiter { per_second, state: Mutex::new((Instant::now(), 0, 0)) }
    }

    /// `Some(suppressed_since_last)` if a line may be logged now, else `None`.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (window, in_window, suppressed) = &mut *state;
        if window.elapsed() >= Duration::from_secs(1) {
            *window = Instant::now();
            *in_window = 0;
        }
        if *in_window < self.per_second {
            *in_window += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_summarised_not_logged() {
        let limiter = LogLimiter::default();
        let allowed = (0..1000).filter(|_| limiter.allow().is_some()).count();
        assert_eq!(allowed, LogLimiter::PER_SECOND as usize);
        // Pretend a second passed: the next line carries the count of the dropped ones.
        limiter.state.lock().unwrap().0 -= Duration::from_secs(2);
        assert_eq!(limiter.allow(), Some(1000 - u64::from(LogLimiter::PER_SECOND)));
    }
}
