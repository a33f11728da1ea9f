//! [`Runtime`]: the wasmtime engine, linker and shared state every plugin runs on.
//!
//! One engine with the pooling allocator (sized for [`RuntimeOptions::max_instances`]
//! concurrent instances), epoch interruption driven by one ticker thread, a semaphore in
//! front of instantiation so a burst of connections waits for a slot instead of failing,
//! and the [`Lanes`] connections run on. (What each `Store` gets is `store`'s job.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::ArtifactCache;
use super::lane::{EPOCH_TICK, Lanes};
use super::store::State;
use crate::config::defaults;
use crate::guest::bindings::{TypesAccess, TypesHost, switchboard::plugin};
use crate::guest::files::{self, FilesView};
use crate::guest::hub::{Hub, HubAccess, HubView};
use crate::guest::tls::{TlsAccess, TlsView};

/// Bytes of each pool slot (memory, table, stack) kept resident when an instance ends:
/// with PAGEMAP_SCAN, the most dirty bytes reset in place before the rest of a slot is
/// given back to the kernel. Unused slots stay warm only up to wasmtime's
/// `max_unused_warm_slots` (100), so this bounds memory kept after a burst too.
const KEEP_RESIDENT: usize = 256 * 1024;

/// Sizing of the runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeOptions {
    /// Most plugin instances alive at once (connections + `describe()` calls).
    pub(crate) max_instances: u32,
    /// Largest linear memory any instance may grow to, in bytes (the pool's slot size;
    /// a plugin's own limit may be lower).
    pub(crate) memory_limit: usize,
    /// The hub every instance's rooms are in (with its bounds and backplane).
    pub(crate) hub: Hub,
    /// Where compiled components are cached.
    pub(crate) cache: ArtifactCache,
    /// Threads of the heavy lane (see [`crate::lane`]); 0: no heavy lane.
    pub(crate) heavy_lane_threads: usize,
    /// Linear memories start as copy-on-write mappings of their memory image; false:
    /// images are copied in (fewer memory-map areas: see [`super::capacity::plan`]).
    pub(crate) memory_images: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_instances: u32::try_from(defaults::MAX_CONNECTIONS.0).unwrap_or(u32::MAX),
            memory_limit: defaults::MEMORY_LIMIT.0,
            hub: Hub::default(),
            cache: ArtifactCache::default_dir().map_or_else(ArtifactCache::disabled, ArtifactCache::at),
            // Twice the cores: a heavy thread the kernel preempts in the middle of a slice
            // holds that connection, and the spare threads keep the rest of the lane
            // moving whenever a core frees up. Idle-priority threads cost nothing while
            // the cores have other work.
            heavy_lane_threads: 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_images: true,
        }
    }
}

/// The engine, linker and shared state; one per host process.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    hub: Hub,
    instances: Arc<Semaphore>,
    next_conn: AtomicU64,
    options: RuntimeOptions,
    ticker_stop: Arc<AtomicBool>,
    cache: ArtifactCache,
    lanes: Lanes,
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub(crate) fn new(options: RuntimeOptions) -> wasmtime::Result<Arc<Runtime>> {
        let n = options.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            // Components made by other toolchains hold several core instances and memories.
            .total_core_instances(n.saturating_mul(4))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(options.memory_limit)
            // A slot reused by the next connection keeps its pages instead of giving them
            // back and faulting them in again.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            // Find the pages an instance really dirtied (PAGEMAP_SCAN, Linux 6.7+) and
            // reset just those in place. Without it the first KEEP_RESIDENT bytes are
            // reset and the rest given back with madvise, and a Rust plugin's stack, data
            // and heap all sit above its 1 MiB stack region: every connection would pay an
            // madvise, a TLB shootdown on every core and the page faults to bring the
            // pages back.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .memory_init_cow(options.memory_images)
            .memory_reservation(options.memory_limit as u64)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        files::add_to_linker(&mut linker, |s| FilesView { table: &mut s.table, spliceable: &mut s.spliceable })?;
        plugin::hub::add_to_linker::<State, HubAccess>(&mut linker, |s| HubView { table: &mut s.table, ctx: s.hub.as_ref() })?;
        plugin::types::add_to_linker::<State, TypesAccess>(&mut linker, |_| TypesHost)?;
        plugin::tls::add_to_linker::<State, TlsAccess>(&mut linker, |s| TlsView(s.tls.as_ref()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        }

        let lanes = match options.heavy_lane_threads {
            0 => Lanes::single(),
            n => Lanes::new(n)?,
        };
        Ok(Arc::new(Runtime {
            lanes,
            engine,
            linker,
            hub: options.hub.clone(),
            cache: options.cache.clone(),
            instances: Arc::new(Semaphore::new(n as usize)),
            next_conn: AtomicU64::new(1),
            options,
            ticker_stop,
        }))
    }

    /// The wasmtime engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with WASI and the hub.
    pub(crate) fn linker(&self) -> &Linker<State> {
        &self.linker
    }

    /// The compiled-artifact cache.
    pub(crate) fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The lanes connections run on: spawn every connection through [`Lanes::run`].
    pub(crate) fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// The shared hub.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The pool's memory slot size: no instance's limit can exceed it.
    pub(crate) fn memory_limit(&self) -> usize {
        self.options.memory_limit
    }

    /// A fresh connection id (unique for this process).
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for an instance slot; hold the permit for the life of the instance.
    pub(crate) async fn instance_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.instances.clone().acquire_owned().await.expect("the instance semaphore is never closed")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
