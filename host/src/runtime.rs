//! [`Runtime`]: the wasmtime engine, linker and shared state every plugin runs on.
//!
//! One engine with the pooling allocator (sized for [`RuntimeOptions::max_instances`]
//! concurrent instances), epoch interruption driven by one ticker thread, a semaphore in
//! front of instantiation so a burst of connections waits for a slot instead of failing,
//! and the [`Lanes`] connections run on. Each `Store` gets the limiter, the CPU meter's
//! call hook and the epoch callback that enforces the budget and decides about lanes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};

use crate::cache::ArtifactCache;
use crate::closer::Closer;
use crate::cpu::{self, CpuMeter};
use crate::grants::{Grants, Stdio};
use crate::hub::{Hub, HubLimits};
use crate::lane::{self, Lanes};
use crate::limits::{LimitHit, Limits, MemoryLimiter};
use crate::logpipe::{Channel, LogOutput};
use crate::metrics::LogLimiter;
use crate::state::State;

/// Bytes of each pool slot (memory, table, stack) kept resident when an instance ends:
/// with PAGEMAP_SCAN, the most dirty bytes reset in place before the rest of a slot is
/// given back to the kernel. Unused slots stay warm only up to wasmtime's
/// `max_unused_warm_slots` (100), so this bounds memory kept after a burst too.
const KEEP_RESIDENT: usize = 256 * 1024;

/// How often the epoch ticks: a running guest yields to other connections at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Sizing of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Most plugin instances alive at once (connections + `describe()` calls).
    pub max_instances: u32,
    /// Largest linear memory any instance may grow to, in bytes (the pool's slot size;
    /// a plugin's own limit may be lower).
    pub memory_limit: usize,
    /// Bounds of the hub's per-member queues.
    pub hub: HubLimits,
    /// Where compiled components are cached.
    pub cache: ArtifactCache,
    /// Threads of the heavy lane (see [`crate::lane`]); 0: no heavy lane.
    pub heavy_lane_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_instances: 10_000,
            memory_limit: 64 << 20,
            hub: HubLimits::default(),
            cache: ArtifactCache::default_dir().map_or_else(ArtifactCache::disabled, ArtifactCache::at),
            // Twice the cores: a heavy thread the kernel preempts in the middle of a slice
            // holds that connection, and the spare threads keep the rest of the lane
            // moving whenever a core frees up. Idle-priority threads cost nothing while
            // the cores have other work.
            heavy_lane_threads: 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// The engine, linker and shared state; one per host process.
pub struct Runtime {
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
    pub fn new(options: RuntimeOptions) -> wasmtime::Result<Arc<Runtime>> {
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
            // and heap all sit above its 1 MiB stack region: every connection paid an
            // madvise, a TLB shootdown on every core and the page faults to bring the
            // pages back (connrate 0.57x tokio without the scan, 0.81x with it, back to back).
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(KEEP_RESIDENT)
            .async_stack_keep_resident(KEEP_RESIDENT);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .memory_reservation(options.memory_limit as u64)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        crate::bindings::switchboard::plugin::hub::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        crate::bindings::switchboard::plugin::types::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;

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
            hub: Hub::new(options.hub),
            cache: options.cache.clone(),
            instances: Arc::new(Semaphore::new(n as usize)),
            next_conn: AtomicU64::new(1),
            options,
            ticker_stop,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with WASI and the hub.
    pub fn linker(&self) -> &Linker<State> {
        &self.linker
    }

    /// The compiled-artifact cache.
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The lanes connections run on: spawn every connection through [`Lanes::run`].
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// The shared hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// A fresh connection id (unique for this process).
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits for an instance slot; hold the permit for the life of the instance.
    pub async fn instance_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.instances.clone().acquire_owned().await.expect("the instance semaphore is never closed")
    }

    /// A new `Store` for one plugin instance with exactly what `grants` gives:
    /// environment, stdio (log lines by default), at most one directory as `/`; never
    /// the network. Memory and CPU limited by `limits`; yielding at every epoch tick.
    /// `output` is the plugin's allowance of log lines for its stdout/stderr, which are
    /// logged in `span`.
    pub fn new_store(
        &self,
        grants: &Grants,
        limits: &Limits,
        output: &Arc<LogLimiter>,
        span: &tracing::Span,
        peer: String,
        closer: Closer,
    ) -> std::io::Result<Store<State>> {
        let mut wasi = WasiCtx::builder();
        wasi.envs(&grants.env).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
        match grants.stdio {
            Stdio::Log => {
                wasi.stdout(LogOutput::new(Channel::Stdout, output.clone(), span.clone())).stderr(LogOutput::new(
                    Channel::Stderr,
                    output.clone(),
                    span.clone(),
                ));
            }
            Stdio::Inherit => {
                wasi.inherit_stdio();
            }
        }
        if let Some(dir) = &grants.dir {
            let perms = if dir.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
            wasi.preopened_dir(&dir.host, "/", perms)
                .map_err(|e| std::io::Error::other(format!("cannot grant directory {}: {e:#}", dir.host.display())))?;
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(limits.memory.min(self.options.memory_limit)),
            cpu: Arc::new(CpuMeter::default()),
            limit_hit: None,
            activity: None,
            bytes_at_last_tick: 0,
            hub: self.hub.clone(),
            peer,
            closer,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.call_hook(|ctx, hook| {
            if hook.entering_host() {
                ctx.data().cpu.leave_wasm();
            } else {
                ctx.data().cpu.enter_wasm();
            }
            Ok(())
        });
        store.set_epoch_deadline(1);
        let budget = limits.cpu_budget;
        store.epoch_deadline_callback(move |mut ctx| {
            let (used, running) = (ctx.data().cpu.used(), ctx.data().cpu.running());
            if let Some(budget) = budget
                && used >= budget
            {
                ctx.data_mut().limit_hit = Some(LimitHit::Cpu);
                wasmtime::bail!("the plugin used its CPU budget of {budget:?}");
            }
            // A running plugin is not idle.
            let bytes = ctx.data().activity.as_ref().map_or(0, |activity| {
                activity.touch();
                activity.bytes()
            });
            let moved_bytes = bytes != std::mem::replace(&mut ctx.data_mut().bytes_at_last_tick, bytes);
            let cpu = ctx.data().cpu.clone();
            let tick = lane::at_tick(running, cpu.running_cpu(), moved_bytes);
            cpu.watch_closely(tick.watch);
            if tick.promote {
                lane::promote();
            }
            // Only a guest that held its thread through the slice is charged for its wait:
            // an I/O-bound one that just woke up (echo, hit by a tick while it waited)
            // would otherwise pay for every queue it sits in on a busy machine.
            let charge_wait = running >= lane::HELD;
            Ok(UpdateDeadline::YieldCustom(1, yield_charged(cpu, charge_wait)))
        });
        Ok(store)
    }
}

/// How a running guest yields at an epoch tick: through `tokio::task::yield_now`, which
/// lets the I/O driver run before the guest resumes (a plain wake would re-poll it at
/// once, and network events would wait ~60 slices).
///
/// With `charge_wait` (a guest that was running through the slice), the time until it
/// runs again is charged to its CPU budget: it was ready to run all along. On an idle
/// machine that is next to nothing; when low-priority (heavy-lane) threads get no CPU
/// because others keep every core busy, it is what lets a spinning plugin still reach
/// its budget in about that much wall time. Waiting for I/O is never charged.
fn yield_charged(cpu: Arc<CpuMeter>, charge_wait: bool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let started = cpu::coarse_clock();
        tokio::task::yield_now().await;
        if charge_wait {
            cpu.charge(Duration::from_nanos(cpu::coarse_clock().saturating_sub(started)));
        }
    })
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
