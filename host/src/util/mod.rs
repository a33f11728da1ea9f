//! Small pieces every layer uses: clocks that fit an atomic, capped backoff, a log-line
//! allowance, printing an error with its causes, and a lock-free duration histogram.

pub mod backoff;
pub mod clock;
pub mod error;
pub mod histogram;
pub mod log_limit;
