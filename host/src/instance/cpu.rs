//! CPU accounting: [`CpuMeter`] measures what a plugin used (its own code and the host's
//! work in the calls it makes, for the CPU budget) and how long its poll under way has
//! held its thread (for the lanes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use wasmtime::CallHook;

use crate::util::clock::{clock, coarse_clock, thread_cpu};

/// Time a plugin spent running.
///
/// Two measures. [`used`](Self::used), which the CPU budget is about, is the time spent
/// executing the plugin's own code plus the time the host spends in the calls the plugin
/// makes. wasmtime's call hook marks every entry into and exit from WebAssembly and every
/// host call ([`hook`](Self::hook)), so both are timed. Two things are free: a host call
/// during which the connection moved bytes (reading its input, writing its output: the
/// service the host provides, so a flat-out echo or getfile is charged for its own code
/// only), and waiting (a host call that suspends, e.g. a `poll` with nothing ready, is
/// charged only for the stretches it is actually being run). A spinning guest's wait for
/// a core after an epoch yield is [`charge`](Self::charge)d on top.
/// [`running`](Self::running) is how long the poll under way has held its thread, the
/// plugin's code and its host calls together, which is what the scheduling cares about.
///
/// Both are timed by the wall clock: cheap, and CPU time on an unloaded machine (under
/// contention they also count time the kernel gave the thread to someone else). The
/// plugin's stretches are read off the coarse clock (1–4 ms steps): a stretch shorter
/// than a step is counted as a whole step or as nothing, as often as its length says, so
/// the sum is right on average. A guest suspected of hogging its thread can be
/// [`watched closely`](Self::watch_closely): its polls then also read the thread's own
/// CPU clock (a system call each), which preemption cannot inflate.
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    guest_nanos: AtomicU64,
    /// When the plugin's code was last entered ([`coarse_clock`] nanos), 0 while it is not running.
    in_wasm_since: AtomicU64,
    /// When the poll under way started ([`clock`] nanos), 0 when none is.
    poll_started: AtomicU64,
    watched: AtomicBool,
    /// The thread's CPU clock when the poll under way started, if it was watched closely.
    poll_started_cpu: AtomicU64,
    /// Host time charged so far (calls that moved none of the connection's bytes).
    host_nanos: AtomicU64,
    /// How many host calls are under way: a host call may call back into the plugin (to
    /// allocate room for its result), which may call the host again.
    host_depth: AtomicU32,
    /// When the host stretch under way started ([`coarse_clock`] nanos), 0 when none is
    /// being timed (no host call, the plugin's code runs, or the call is suspended).
    host_since: AtomicU64,
    /// Host time of the outermost call under way, charged when it returns.
    host_pending: AtomicU64,
    /// The connection's byte count when the outermost call under way began.
    bytes_at_call: AtomicU64,
}

impl CpuMeter {
    /// Time charged so far: the plugin's code and the host calls it paid for.
    pub(crate) fn used(&self) -> Duration {
        let current = match self.in_wasm_since.load(Ordering::Relaxed) {
            0 => 0,
            since => coarse_clock().saturating_sub(since),
        };
        Duration::from_nanos(self.guest_nanos.load(Ordering::Relaxed) + self.host_nanos.load(Ordering::Relaxed) + current)
    }

    /// Of [`used`](Self::used), the part the host spent in the plugin's calls.
    pub(crate) fn host_used(&self) -> Duration {
        Duration::from_nanos(self.host_nanos.load(Ordering::Relaxed))
    }

    /// Follows one of wasmtime's call hooks. `bytes` reads the connection's byte count
    /// (0 for a datagram or describe(), whose host calls are all charged). The clock is
    /// read once per transition, so every moment is either the plugin's or the host's.
    pub(crate) fn hook(&self, hook: CallHook, bytes: impl Fn() -> u64) {
        let now = coarse_clock();
        match hook {
            CallHook::CallingHost => {
                self.leave_wasm(now);
                if self.host_depth.fetch_add(1, Ordering::Relaxed) == 0 {
                    self.bytes_at_call.store(bytes(), Ordering::Relaxed);
                    self.host_pending.store(0, Ordering::Relaxed);
                }
                self.host_since.store(now, Ordering::Relaxed);
            }
            CallHook::ReturningFromHost => {
                self.pause_host(now);
                if self.host_depth.fetch_sub(1, Ordering::Relaxed) == 1 {
                    let pending = self.host_pending.swap(0, Ordering::Relaxed);
                    if bytes() == self.bytes_at_call.load(Ordering::Relaxed) {
                        self.host_nanos.fetch_add(pending, Ordering::Relaxed);
                    }
                }
                self.enter_wasm(now);
            }
            CallHook::CallingWasm => {
                self.pause_host(now);
                self.enter_wasm(now);
            }
            CallHook::ReturningFromWasm => {
                self.leave_wasm(now);
                self.resume_host(now);
            }
        }
    }

    /// Stops timing the host stretch under way, if one is, adding it to the call's time.
    fn pause_host(&self, now: u64) {
        let since = self.host_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.host_pending.fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// Times the host again if a host call is under way (and the plugin's code is not
    /// running inside it).
    fn resume_host(&self, now: u64) {
        if self.host_depth.load(Ordering::Relaxed) > 0 && self.in_wasm_since.load(Ordering::Relaxed) == 0 {
            self.host_since.store(now, Ordering::Relaxed);
        }
    }

    /// Charges `d` as if the plugin's code had run that long (it was ready to run).
    pub(crate) fn charge(&self, d: Duration) {
        self.guest_nanos.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The plugin's code is entered (called, or a host call returns to it).
    fn enter_wasm(&self, now: u64) {
        // 0 means "not running": a clock that reads 0 is taken as 1.
        self.in_wasm_since.store(now.max(1), Ordering::Relaxed);
    }

    /// The plugin's code is left (it returned, or calls the host).
    fn leave_wasm(&self, now: u64) {
        let since = self.in_wasm_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.guest_nanos.fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
    }

    /// How long the poll under way has been running by the wall clock (zero between
    /// polls): the time the guest has held its thread without a break.
    pub(crate) fn running(&self) -> Duration {
        match self.poll_started.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            started => Duration::from_nanos(clock().saturating_sub(started)),
        }
    }

    /// The CPU time the poll under way has used, if it is watched closely. Call it from
    /// inside the poll (the epoch callback): it reads the calling thread's clock.
    pub(crate) fn running_cpu(&self) -> Option<Duration> {
        match self.poll_started_cpu.load(Ordering::Relaxed) {
            0 => None,
            started => Some(Duration::from_nanos(thread_cpu().saturating_sub(started))),
        }
    }

    /// Whether polls from the next one on read the thread's CPU clock too.
    pub(crate) fn watch_closely(&self, on: bool) {
        self.watched.store(on, Ordering::Relaxed);
    }

    /// Wraps the future that runs the guest so each poll is timed.
    pub(crate) fn meter<F: Future>(self: &Arc<Self>, inner: F) -> Metered<F> {
        Metered { inner, meter: self.clone() }
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls are timed by a [`CpuMeter`].
    pub(crate) struct Metered<F> {
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
        // A host call suspended at the end of the previous poll runs again now.
        meter.resume_host(coarse_clock());
        let out = this.inner.poll(cx);
        // Waiting is free: a suspended host call is not charged until it is polled again.
        meter.pause_host(coarse_clock());
        meter.poll_started.store(0, Ordering::Relaxed);
        meter.poll_started_cpu.store(0, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One host call that takes `d` while the connection's byte count goes from 0 to `after`.
    fn host_call(meter: &CpuMeter, d: Duration, after: u64) {
        meter.hook(CallHook::CallingWasm, || 0);
        meter.hook(CallHook::CallingHost, || 0);
        std::thread::sleep(d);
        meter.hook(CallHook::ReturningFromHost, || after);
        meter.hook(CallHook::ReturningFromWasm, || after);
    }

    #[test]
    fn a_host_call_that_moves_no_bytes_is_charged() {
        let meter = CpuMeter::default();
        host_call(&meter, Duration::from_millis(40), 0);
        assert!(meter.host_used() >= Duration::from_millis(30), "{:?}", meter.host_used());
        assert!(meter.used() >= meter.host_used());
    }

    #[test]
    fn a_host_call_that_moves_the_connections_bytes_is_free() {
        let meter = CpuMeter::default();
        host_call(&meter, Duration::from_millis(40), 5);
        assert_eq!(meter.host_used(), Duration::ZERO);
    }

    #[test]
    fn the_plugin_code_a_host_call_runs_is_not_host_time_and_the_call_is_charged_once() {
        let meter = CpuMeter::default();
        meter.hook(CallHook::CallingWasm, || 0);
        meter.hook(CallHook::CallingHost, || 0);
        // The host calls back into the plugin (to allocate its result) …
        meter.hook(CallHook::CallingWasm, || 0);
        std::thread::sleep(Duration::from_millis(40));
        meter.hook(CallHook::ReturningFromWasm, || 0);
        // … which is no host time; the outer call still returns and is charged.
        meter.hook(CallHook::ReturningFromHost, || 0);
        assert!(meter.host_used() < Duration::from_millis(20), "{:?}", meter.host_used());
        assert_eq!(meter.host_depth.load(Ordering::Relaxed), 0);
        meter.hook(CallHook::ReturningFromWasm, || 0);
        assert!(meter.used() >= Duration::from_millis(30), "the callback ran plugin code: {:?}", meter.used());
    }

    #[test]
    fn a_suspended_host_call_is_not_charged_for_its_wait() {
        let meter = Arc::new(CpuMeter::default());
        meter.hook(CallHook::CallingWasm, || 0);
        meter.hook(CallHook::CallingHost, || 0);
        // The poll that ran into the call ends (the call waits for I/O) …
        meter.pause_host(coarse_clock());
        std::thread::sleep(Duration::from_millis(40));
        // … and the next poll resumes it.
        meter.resume_host(coarse_clock());
        meter.hook(CallHook::ReturningFromHost, || 0);
        assert!(meter.host_used() < Duration::from_millis(20), "{:?}", meter.host_used());
    }
}
