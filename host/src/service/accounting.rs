//! Failure accounting: per-plugin counters of how connections ended or were refused, and
//! an allowance of failure log lines, so a flood of failures cannot flood the log.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::util::log_limit::LogLimiter;

/// Everything counted for one plugin.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections served (admitted and started).
    pub(crate) served: AtomicU64,
    /// `handle-connection` returned `err`.
    pub(crate) errors: AtomicU64,
    /// The plugin trapped (panics included).
    pub(crate) traps: AtomicU64,
    /// Connections ended by a limit (memory, CPU, idle, duration).
    pub(crate) limit_hits: AtomicU64,
    /// Connections the host failed to start (its own failure, not the plugin's).
    pub(crate) host_failures: AtomicU64,
    /// Connections refused at admission.
    pub(crate) refused: AtomicU64,
    log: LogLimiter,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Snapshot {
    /// See [`Counters::served`].
    pub(crate) served: u64,
    /// See [`Counters::errors`].
    pub(crate) errors: u64,
    /// See [`Counters::traps`].
    pub(crate) traps: u64,
    /// See [`Counters::limit_hits`].
    pub(crate) limit_hits: u64,
    /// See [`Counters::host_failures`].
    pub(crate) host_failures: u64,
    /// See [`Counters::refused`].
    pub(crate) refused: u64,
}

impl Counters {
    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            served: get(&self.served),
            errors: get(&self.errors),
            traps: get(&self.traps),
            limit_hits: get(&self.limit_hits),
            host_failures: get(&self.host_failures),
            refused: get(&self.refused),
        }
    }

    /// Whether a failure log line may be written now; see [`LogLimiter`].
    pub(crate) fn may_log(&self) -> Option<u64> {
        self.log.allow()
    }
}
