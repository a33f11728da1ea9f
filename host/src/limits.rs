//! Per-connection limits: memory (a `ResourceLimiter`), CPU (measured by `cpu`,
//! enforced from the epoch callback), idle time and total duration (a watchdog that asks
//! the connection to close).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cpu::coarse_clock;

/// Limits applied to every connection of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory: usize,
    /// Time the plugin's code may run on one connection (see [`crate::cpu::CpuMeter`]).
    pub cpu_budget: Option<Duration>,
    /// A connection with no bytes in either direction, and a plugin waiting rather than
    /// running, for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A connection is closed after this long, busy or not.
    pub max_duration: Option<Duration>,
}

/// The defaults match the `serve` flags' (`--memory-limit 64MiB --cpu-budget 60s
/// --idle-timeout 5m --max-duration off`).
impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 64 << 20,
            cpu_budget: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(300)),
            max_duration: None,
        }
    }
}

/// Which limit ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory could not grow past the limit.
    Memory,
    /// The CPU budget was used up.
    Cpu,
    /// No traffic for the idle timeout.
    Idle,
    /// The maximum duration passed.
    Duration,
}

impl LimitHit {
    /// A short name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            LimitHit::Memory => "memory limit",
            LimitHit::Cpu => "cpu budget",
            LimitHit::Idle => "idle timeout",
            LimitHit::Duration => "max duration",
        }
    }
}

/// Enforces the memory limit and remembers when a guest ran into it.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: usize,
    /// Set when a growth was refused.
    pub hit: bool,
    /// The largest linear memory granted so far, in bytes.
    pub peak: usize,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory.
    pub fn new(limit: usize) -> Self {
        MemoryLimiter { limit, hit: false, peak: 0 }
    }
}

/// An instance whose memory grew past this is dropped on the blocking pool: returning
/// tens of MiB to the kernel takes milliseconds no epoch tick can interrupt.
pub const BIG_INSTANCE: usize = 8 << 20;

/// Drops a `Store` without stalling the async worker when its instance grew big.
pub async fn drop_store<T: Send + 'static>(store: wasmtime::Store<T>, peak_memory: usize) {
    if peak_memory > BIG_INSTANCE {
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    } else {
        drop(store);
    }
}

/// Most table elements an instance may have (function tables; generous).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = desired <= self.limit;
        self.hit |= !ok;
        if ok {
            self.peak = self.peak.max(desired);
        }
        Ok(ok)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// When a connection was last active (moved a byte, or its plugin ran), and how many
/// bytes it moved; shared by its streams, its watchdog and the epoch callback.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// [`coarse_clock`] at the start: every read and write touches the clock, and the
    /// idle timeout needs no finer steps than its 1–4 ms.
    start_coarse: u64,
    /// The last activity, coarse nanoseconds after the start.
    last: AtomicU64,
    bytes: AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), start_coarse: coarse_clock(), last: AtomicU64::new(0), bytes: AtomicU64::new(0) })
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last.store(coarse_clock().saturating_sub(self.start_coarse), Ordering::Relaxed);
    }

    /// Records `n` bytes moved (read or written) now.
    pub fn moved(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    /// Bytes moved so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The instant of the last traffic (or the start).
    pub fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// When the connection started.
    pub fn started(&self) -> Instant {
        self.start
    }
}

/// Resolves with the first of the idle timeout or the maximum duration to expire.
pub async fn watchdog(activity: &Activity, limits: &Limits) -> LimitHit {
    loop {
        let idle_at = limits.idle_timeout.map(|t| activity.last() + t);
        let max_at = limits.max_duration.map(|t| activity.started() + t);
        let next = match (idle_at, max_at) {
            (None, None) => return std::future::pending().await,
            (Some(i), Some(m)) => i.min(m),
            (Some(i), None) => i,
            (None, Some(m)) => m,
        };
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        if max_at.is_some_and(|m| now >= m) {
            return LimitHit::Duration;
        }
        // Traffic may have moved the idle deadline while we slept.
        if limits.idle_timeout.is_some_and(|t| now >= activity.last() + t) {
            return LimitHit::Idle;
        }
    }
}
