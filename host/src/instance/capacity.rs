//! Whether the kernel will hold the instance pool and the connections the limits ask
//! for, checked at start so that a setting the machine cannot honour is refused with the
//! numbers, instead of surfacing later as instantiation failures under load.
//!
//! What one pool costs (wasmtime 48's pooling allocator, measured on Linux 6.18 with a
//! Rust plugin): every slot's async stack is its own mapping with a guard page, two
//! memory-map areas each, taken at start; every live instance adds about four more
//! (its linear memory and table made accessible, split around the guard regions); the
//! process itself needs about a thousand. Every open connection holds one file (its
//! socket); the host needs a few hundred of its own (epoll, the plugins, the log).

/// Memory-map areas the host uses besides the pool.
const MAPS_BASE: u64 = 1024;
/// Memory-map areas per pool slot, taken at start.
const MAPS_PER_SLOT: u64 = 2;
/// Memory-map areas per live instance, on top of its slot's.
const MAPS_PER_INSTANCE: u64 = 4;
/// Open files the host uses besides its connections.
const FILES_BASE: u64 = 256;

/// The kernel limit a setting does not fit in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapacityError {
    /// Too many memory-map areas.
    #[error(
        "--max-connections {connections} needs about {needed} memory-map areas, but vm.max_map_count is {limit}: \
         lower --max-connections to at most {fits}, or raise vm.max_map_count (sysctl -w vm.max_map_count=N)"
    )]
    MapCount {
        /// The connections asked for.
        connections: u64,
        /// Areas they need.
        needed: u64,
        /// The kernel's limit.
        limit: u64,
        /// The most connections that fit.
        fits: u64,
    },
    /// Too many open files.
    #[error(
        "--max-connections {connections} needs about {needed} open files, but this process may open {limit} \
         (RLIMIT_NOFILE): lower --max-connections to at most {fits}, or raise the limit (ulimit -n, LimitNOFILE=)"
    )]
    OpenFiles {
        /// The connections asked for.
        connections: u64,
        /// Files they need.
        needed: u64,
        /// The process's limit.
        limit: u64,
        /// The most connections that fit.
        fits: u64,
    },
}

/// The kernel's limits, where they could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelLimits {
    /// `vm.max_map_count`.
    pub(crate) max_map_count: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub(crate) open_files: Option<u64>,
}

impl KernelLimits {
    /// This machine's limits, now.
    pub(crate) fn read() -> KernelLimits {
        let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok().and_then(|s| s.trim().parse().ok());
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit on a local struct.
        let open_files = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur);
        KernelLimits { max_map_count, open_files }
    }
}

/// Checks that a pool of `slots` instances with `connections` open at once fits in
/// `kernel`'s limits (an unreadable limit is not checked).
pub(crate) fn check(slots: u64, connections: u64, kernel: KernelLimits) -> Result<(), CapacityError> {
    let instances = connections.min(slots);
    if let Some(limit) = kernel.max_map_count {
        let headroom = slots - instances;
        let needed = MAPS_BASE + MAPS_PER_SLOT * slots + MAPS_PER_INSTANCE * instances;
        if needed > limit {
            // The pool grows with the connections (slots = connections + headroom).
            let per_connection = MAPS_PER_SLOT + MAPS_PER_INSTANCE;
            let fits = limit.saturating_sub(MAPS_BASE + MAPS_PER_SLOT * headroom) / per_connection;
            return Err(CapacityError::MapCount { connections, needed, limit, fits });
        }
    }
    if let Some(limit) = kernel.open_files {
        let needed = FILES_BASE + connections;
        if needed > limit {
            return Err(CapacityError::OpenFiles { connections, needed, limit, fits: limit.saturating_sub(FILES_BASE) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: KernelLimits = KernelLimits { max_map_count: Some(65_530), open_files: Some(20_000) };

    #[test]
    fn the_default_fits_and_a_pool_the_kernel_cannot_hold_is_refused_with_the_numbers() {
        assert_eq!(check(10_064, 10_000, HERE), Ok(()));
        let err = check(15_064, 15_000, HERE).unwrap_err();
        let CapacityError::MapCount { fits, .. } = err else { panic!("{err}") };
        assert!(check(fits + 64, fits, HERE).is_ok(), "the suggested {fits} fits");
        assert!(check(fits + 65, fits + 1, HERE).is_err(), "and one more does not");
        assert!(err.to_string().contains("vm.max_map_count is 65530"), "{err}");
    }

    #[test]
    fn open_files_are_checked_and_unknown_limits_are_not() {
        let few = KernelLimits { max_map_count: None, open_files: Some(1024) };
        assert!(matches!(check(1064, 1000, few), Err(CapacityError::OpenFiles { fits: 768, .. })));
        assert_eq!(check(1_000_064, 1_000_000, KernelLimits { max_map_count: None, open_files: None }), Ok(()));
    }
}
