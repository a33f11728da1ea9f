//! What ends an instance from the inside: the memory limiter (a wasmtime
//! `ResourceLimiter` that remembers when a guest ran into it) and [`LimitHit`], the limit
//! that ended a connection.

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
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Set when a growth was refused.
    pub(crate) hit: bool,
    /// The largest linear memory granted so far, in bytes.
    pub(crate) peak: usize,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory.
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter { limit, hit: false, peak: 0 }
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
