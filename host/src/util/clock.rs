//! Clocks as nanosecond counts that fit an atomic: [`clock`] (monotonic, precise),
//! [`coarse_clock`] (monotonic, cheap, 1–4 ms steps) and [`thread_cpu`] (the calling
//! thread's CPU time).

use std::time::Instant;

/// Nanoseconds since the first call (never 0, so 0 can mean "not set").
pub fn clock() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos().min(u64::MAX as u128) as u64 + 1
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds (never 0): a few nanoseconds a read, for
/// clocks read several times per message (the CPU budget, the traffic clock).
///
/// Its 1–4 ms resolution does not bias a sum: a stretch shorter than a step is counted as
/// a whole step with the probability of straddling one, so the expected total is the real
/// one, and the budgets and timeouts it serves are seconds.
pub fn coarse_clock() -> u64 {
    read(libc::CLOCK_MONOTONIC_COARSE)
}

/// The calling thread's CPU time in nanoseconds (never 0): a system call, but preemption
/// cannot inflate it.
pub fn thread_cpu() -> u64 {
    read(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn read(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the local timespec and nothing else.
    unsafe { libc::clock_gettime(clock, &mut t) };
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64).max(1)
}
