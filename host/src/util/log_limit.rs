//! [`LogLimiter`]: an allowance of log lines per second, so a flood of events (failing
//! connections, a plugin printing in a loop) cannot become a flood of log lines.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
        let mut state = self.state.lock();
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
        limiter.state.lock().0 -= Duration::from_secs(2);
        assert_eq!(limiter.allow(), Some(1000 - u64::from(LogLimiter::PER_SECOND)));
    }
}
