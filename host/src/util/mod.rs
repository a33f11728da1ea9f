//! Small pieces every layer uses: clocks that fit an atomic, capped backoff, a log-line
//! allowance, and printing an error with its causes.

pub mod backoff;
pub mod clock;
pub mod error;
pub mod log_limit;
