//! Per-connection limits: memory (a `ResourceLimiter`), CPU (time spent running the
//! plugin, enforced from the epoch callback), idle time and total duration (a watchdog
//! that asks the connection to close).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Limits applied to every connection of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory: usize,
    /// Time the plugin's code may run on one connection (see [`CpuMeter`]).
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

/// Time a plugin spent running.
///
/// Two measures. [`used`](Self::used), which the CPU budget is about, is the time spent
/// executing the plugin's own code: wasmtime's call hook marks every entry into and exit
/// from WebAssembly ([`enter_wasm`](Self::enter_wasm)/[`leave_wasm`](Self::leave_wasm)),
/// so the host's work for the plugin's calls (socket I/O) and waiting are not counted.
/// [`running`](Self::running) is how long the poll under way has held its thread, the
/// plugin's code and its host calls together, which is what the scheduling cares about.
///
/// Both are timed by the wall clock: cheap, and CPU time on an unloaded machine (under
/// contention they also count time the kernel gave the thread to someone else). A guest
/// suspected of hogging its thread can be [`watched closely`](Self::watch_closely): its
/// polls then also read the thread's own CPU clock (a system call each), which
/// preemption cannot inflate.
#[derive(Debug, Default)]
pub struct CpuMeter {
    guest_nanos: AtomicU64,
    /// When the plugin's code was last entered ([`coarse_clock`] nanos), 0 while it is not running.
    in_wasm_since: AtomicU64,
    /// When the poll under way started ([`clock`] nanos), 0 when none is.
    poll_started: AtomicU64,
    watched: AtomicBool,
    /// The thread's CPU clock when the poll under way started, if it was watched closely.
    poll_started_cpu: AtomicU64,
}

/// Nanoseconds since the first call (never 0): a clock that fits an atomic.
pub fn clock() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Never 0, which means "not polling".
    BASE.get_or_init(Instant::now).elapsed().as_nanos().min(u64::MAX as u128) as u64 + 1
}

/// A clock for the CPU budget, read at every entry into and exit from the plugin's code
/// (several times per message): `CLOCK_MONOTONIC_COARSE`, 7 ns a read here against ~25
/// for the precise clock, which showed as ~4% of the server's time in the rtt profile.
/// Its 1–4 ms resolution does not bias a sum: a stretch shorter than a step is counted
/// as a whole step with the probability of straddling one, so the expected total is the
/// real one, and a budget is seconds.
pub fn coarse_clock() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the local timespec and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64).max(1)
}

/// The calling thread's CPU time in nanoseconds (never 0).
fn thread_cpu() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the local timespec and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64).max(1)
}

impl CpuMeter {
    /// Time spent executing the plugin's code so far.
    pub fn used(&self) -> Duration {
        let current = match self.in_wasm_since.load(Ordering::Relaxed) {
            0 => 0,
            since => coarse_clock().saturating_sub(since),
        };
        Duration::from_nanos(self.guest_nanos.load(Ordering::Relaxed) + current)
    }

    /// Charges `d` as if the plugin's code had run that long (it was ready to run).
    pub fn charge(&self, d: Duration) {
        self.guest_nanos.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The plugin's code is entered (called, or a host call returns to it).
    pub fn enter_wasm(&self) {
        self.in_wasm_since.store(coarse_clock(), Ordering::Relaxed);
    }

    /// The plugin's code is left (it returned, or calls the host).
    pub fn leave_wasm(&self) {
        let since = self.in_wasm_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.guest_nanos.fetch_add(coarse_clock().saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// How long the poll under way has been running by the wall clock (zero between
    /// polls): the time the guest has held its thread without a break.
    pub fn running(&self) -> Duration {
        match self.poll_started.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            started => Duration::from_nanos(clock().saturating_sub(started)),
        }
    }

    /// The CPU time the poll under way has used, if it is watched closely. Call it from
    /// inside the poll (the epoch callback): it reads the calling thread's clock.
    pub fn running_cpu(&self) -> Option<Duration> {
        match self.poll_started_cpu.load(Ordering::Relaxed) {
            0 => None,
            started => Some(Duration::from_nanos(thread_cpu().saturating_sub(started))),
        }
    }

    /// Whether polls from the next one on read the thread's CPU clock too.
    pub fn watch_closely(&self, on: bool) {
        self.watched.store(on, Ordering::Relaxed);
    }

    /// Wraps the future that runs the guest so each poll is timed.
    pub fn meter<F: Future>(self: &Arc<Self>, inner: F) -> Metered<F> {
        Metered { inner, meter: self.clone() }
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls are timed by a [`CpuMeter`].
    pub struct Metered<F> {
        #[pin]
        inner: F,
        meter: Arc<CpuMeter>,
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let meter = &**this.meter;
        if meter.watched.load(Ordering::Relaxed) {
            meter.poll_started_cpu.store(thread_cpu(), Ordering::Relaxed);
        }
        meter.poll_started.store(clock(), Ordering::Relaxed);
        let out = this.inner.poll(cx);
        meter.poll_started.store(0, Ordering::Relaxed);
        meter.poll_started_cpu.store(0, Ordering::Relaxed);
        out
    }
}

/// When a connection was last active (moved a byte, or its plugin ran), and how many
/// bytes it moved; shared by its streams, its watchdog and the epoch callback.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    bytes: AtomicU64,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { start: Instant::now(), last_ms: AtomicU64::new(0), bytes: AtomicU64::new(0) })
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
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
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
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
