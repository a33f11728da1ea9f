//! Whether the kernel will hold the instance pool and the connections the limits ask
//! for, checked at start so that a setting the machine cannot honour is refused with the
//! numbers, instead of surfacing later as instantiation failures under load.
//!
//! What one pool costs (wasmtime 48's pooling allocator, measured on Linux 6.18 with a
//! Rust plugin): every slot's async stack is its own mapping with a guard page, two
//! memory-map areas each, taken at start; every live instance adds four more when its
//! linear memory starts as a copy-on-write mapping of the module's memory image (the
//! accessible part split around the image), two when the image is copied in instead;
//! the process itself needs about a thousand. Every open connection holds one file (its
//! socket); the host needs a few hundred of its own (epoll, the plugins, the log).
//!
//! So [`plan`] keeps the copy-on-write images (what makes a plugin with a large data
//! image, such as a Python interpreter's 19 MB snapshot, quick to instantiate) while the
//! pool fits with them, and copies images in when only that fits: on this project's
//! machine (`vm.max_map_count` 65,530) that takes `--max-connections` from at most
//! 10,729 to at most 16,094.

/// Memory-map areas the host uses besides the pool.
const MAPS_BASE: u64 = 1024;
/// Memory-map areas per pool slot, taken at start.
const MAPS_PER_SLOT: u64 = 2;
/// Memory-map areas per live instance, on top of its slot's, with copy-on-write memory
/// images.
const MAPS_PER_INSTANCE: u64 = 4;
/// Memory-map areas per live instance when memory images are copied in.
const MAPS_PER_INSTANCE_COPIED: u64 = 2;
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

/// How the instance pool is set up to fit the kernel's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Linear memories start as copy-on-write mappings of their module's memory image
    /// (wasmtime's `memory_init_cow`); false: the image is copied in at instantiation,
    /// which takes two memory-map areas less per live instance.
    pub(crate) memory_images: bool,
}

impl Layout {
    /// Says so in the log when memory images are copied in, and what that costs.
    pub(crate) fn log(&self, connections: u64) {
        if !self.memory_images {
            tracing::info!(
                max_connections = connections,
                "memory images are copied into each instance: copy-on-write images would need more memory-map areas \
                 than vm.max_map_count allows for this many connections (a plugin with a large data image starts slower \
                 and holds all of it per connection)"
            );
        }
    }
}

/// The layout in which a pool of `slots` instances with `connections` open at once fits
/// in `kernel`'s limits, preferring copy-on-write memory images; an error with the
/// numbers if none does (an unreadable limit is not checked).
pub(crate) fn plan(slots: u64, connections: u64, kernel: KernelLimits) -> Result<Layout, CapacityError> {
    if let Some(limit) = kernel.open_files {
        let needed = FILES_BASE + connections;
        if needed > limit {
            return Err(CapacityError::OpenFiles { connections, needed, limit, fits: limit.saturating_sub(FILES_BASE) });
        }
    }
    let Some(limit) = kernel.max_map_count else { return Ok(Layout { memory_images: true }) };
    let instances = connections.min(slots);
    let needed = |per_instance: u64| MAPS_BASE + MAPS_PER_SLOT * slots + per_instance * instances;
    if needed(MAPS_PER_INSTANCE) <= limit {
        return Ok(Layout { memory_images: true });
    }
    if needed(MAPS_PER_INSTANCE_COPIED) <= limit {
        return Ok(Layout { memory_images: false });
    }
    // The pool grows with the connections (slots = connections + headroom).
    let headroom = slots - instances;
    let per_connection = MAPS_PER_SLOT + MAPS_PER_INSTANCE_COPIED;
    let fits = limit.saturating_sub(MAPS_BASE + MAPS_PER_SLOT * headroom) / per_connection;
    Err(CapacityError::MapCount { connections, needed: needed(MAPS_PER_INSTANCE_COPIED), limit, fits })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: KernelLimits = KernelLimits { max_map_count: Some(65_530), open_files: Some(20_000) };

    const IMAGES: Layout = Layout { memory_images: true };
    const COPIED: Layout = Layout { memory_images: false };

    #[test]
    fn the_default_fits_with_images_more_fit_copied_and_a_pool_the_kernel_cannot_hold_is_refused_with_the_numbers() {
        assert_eq!(plan(10_064, 10_000, HERE), Ok(IMAGES));
        assert_eq!(plan(10_793, 10_729, HERE), Ok(IMAGES), "the most that fit with images");
        assert_eq!(plan(10_794, 10_730, HERE), Ok(COPIED));
        assert_eq!(plan(15_064, 15_000, HERE), Ok(COPIED));
        let err = plan(17_064, 17_000, HERE).unwrap_err();
        let CapacityError::MapCount { fits, .. } = err else { panic!("{err}") };
        assert_eq!(fits, 16_094);
        assert_eq!(plan(fits + 64, fits, HERE), Ok(COPIED), "the suggested {fits} fits");
        assert!(plan(fits + 65, fits + 1, HERE).is_err(), "and one more does not");
        assert!(err.to_string().contains("vm.max_map_count is 65530"), "{err}");
    }

    #[test]
    fn open_files_are_checked_and_unknown_limits_are_not() {
        let few = KernelLimits { max_map_count: None, open_files: Some(1024) };
        assert!(matches!(plan(1064, 1000, few), Err(CapacityError::OpenFiles { fits: 768, .. })));
        assert_eq!(plan(1_000_064, 1_000_000, KernelLimits { max_map_count: None, open_files: None }), Ok(IMAGES));
        let files_first = KernelLimits { max_map_count: Some(65_530), open_files: Some(1024) };
        assert!(matches!(plan(100_064, 100_000, files_first), Err(CapacityError::OpenFiles { .. })));
    }
}
