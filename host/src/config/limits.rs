//! [`Limits`]: what bounds one connection of a plugin (memory, CPU, idle time, age).

use std::time::Duration;

use super::defaults;
use super::units::{Size, ValueError};

/// Limits applied to every connection of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory: usize,
    /// Time the plugin's code may run on one connection.
    pub cpu_budget: Option<Duration>,
    /// A connection with no bytes in either direction, and a plugin waiting rather than
    /// running, for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A connection is closed after this long, busy or not.
    pub max_duration: Option<Duration>,
    /// TCP connections send keepalive probes after this long without traffic (and then
    /// at this interval), so a peer that vanished is noticed even with the idle timeout
    /// off; `None`: no probes.
    pub keepalive: Option<Duration>,
}

/// The `serve` flags' defaults.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: defaults::MEMORY_LIMIT.0,
            cpu_budget: defaults::CPU_BUDGET.0,
            idle_timeout: defaults::IDLE_TIMEOUT.0,
            max_duration: defaults::MAX_DURATION.0,
            keepalive: defaults::KEEPALIVE.0,
        }
    }
}

/// Checks a memory limit against what an instance can use: at least
/// [`defaults::MEMORY_LIMIT_MIN`], at most [`defaults::MEMORY_LIMIT_MAX`].
pub fn check_memory_limit(size: Size) -> Result<usize, ValueError> {
    let (min, max) = (defaults::MEMORY_LIMIT_MIN, defaults::MEMORY_LIMIT_MAX);
    if size.0 < min.0 || size.0 > max.0 {
        return Err(ValueError::new(&size.to_string(), format!("a memory limit must be from {min} to {max}")));
    }
    Ok(size.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_outside_what_an_instance_can_use_are_refused_with_the_range() {
        assert_eq!(check_memory_limit(Size(64 << 20)), Ok(64 << 20));
        for bad in [Size(64), Size(64 << 10), Size(1 << 40)] {
            let err = check_memory_limit(bad).unwrap_err().to_string();
            assert!(err.contains("from 1MiB to 4GiB"), "{err}");
        }
    }
}
