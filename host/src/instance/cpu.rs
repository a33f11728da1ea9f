//! CPU accounting: [`CpuMeter`] measures what a plugin's code used (for the CPU budget)
//! and how long its poll under way has held its thread (for the lanes).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::util::clock::{clock, coarse_clock, thread_cpu};

/// Time a plugin spent running.
///
/// Two measures. [`used`](Self::used), which the CPU budget is about, is the time spent
/// executing the plugin's own code: wasmtime's call hook marks every entry into and exit
/// from WebAssembly ([`enter_wasm`](Self::enter_wasm)/[`leave_wasm`](Self::leave_wasm)),
/// so the host's work for the plugin's calls (socket I/O) and waiting are not counted;
/// a spinning guest's wait for a core after an epoch yield is [`charge`](Self::charge)d
/// on top.
/// [`running`](Self::running) is how long the poll under way has held its thread, the
/// plugin's code and its host calls together, which is what the scheduling cares about.
///
/// Both are timed by the wall clock: cheap, and CPU time on an unloaded machine (under
/// contention they also count time the kernel gave the thread to someone else). A guest
/// suspected of hogging its thread can be [`watched closely`](Self::watch_closely): its
/// polls then also read the thread's own CPU clock (a system call each), which
/// preemption cannot inflate.
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
}

impl CpuMeter {
    /// Time spent executing the plugin's code so far.
    pub(crate) fn used(&self) -> Duration {
        let current = match self.in_wasm_since.load(Ordering::Relaxed) {
            0 => 0,
            since => coarse_clock().saturating_sub(since),
        };
        Duration::from_nanos(self.guest_nanos.load(Ordering::Relaxed) + current)
    }

    /// Charges `d` as if the plugin's code had run that long (it was ready to run).
    pub(crate) fn charge(&self, d: Duration) {
        self.guest_nanos.fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The plugin's code is entered (called, or a host call returns to it).
    pub(crate) fn enter_wasm(&self) {
        self.in_wasm_since.store(coarse_clock(), Ordering::Relaxed);
    }

    /// The plugin's code is left (it returned, or calls the host).
    pub(crate) fn leave_wasm(&self) {
        let since = self.in_wasm_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.guest_nanos.fetch_add(coarse_clock().saturating_sub(since), Ordering::Relaxed);
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
        let out = this.inner.poll(cx);
        meter.poll_started.store(0, Ordering::Relaxed);
        meter.poll_started_cpu.store(0, Ordering::Relaxed);
        out
    }
}
