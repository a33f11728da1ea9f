//! [`State`], what one instance's `Store` holds, and [`new_store`], which builds a Store
//! with exactly what a plugin was granted and the meters every instance runs under.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::cpu::CpuMeter;
use super::grants::{Grants, Stdio};
use super::lane;
use super::limits::{LimitHit, MemoryLimiter};
use crate::config::Limits;
use crate::guest::bindings::TlsSession;
use crate::guest::files::Spliceable;
use crate::guest::hub::HubCtx;
use crate::guest::logpipe::{Channel, LogOutput};
use crate::guest::traffic::Activity;
use crate::util::clock::coarse_clock;
use crate::util::log_limit::LogLimiter;

/// The data of one `Store`: one connection, one datagram or one `describe()` call.
pub(crate) struct State {
    /// The WASI context: environment from settings, stdout/stderr to the log, nothing else.
    pub(crate) wasi: WasiCtx,
    /// Resources handed to the guest (streams, pollables, hub members).
    pub(crate) table: ResourceTable,
    /// Enforces the memory limit and notes when it was hit.
    pub(crate) memory: MemoryLimiter,
    /// Time the plugin has spent running.
    pub(crate) cpu: Arc<CpuMeter>,
    /// The limit that ended the instance, if one did (set by the CPU check).
    pub(crate) limit_hit: Option<LimitHit>,
    /// The connection's traffic clock: a plugin that is running is not idle, so every
    /// epoch tick it runs through counts as activity.
    pub(crate) activity: Option<Arc<Activity>>,
    /// Bytes the connection had moved at the previous epoch tick that found the plugin
    /// running (see [`lane::at_tick`]).
    bytes_at_last_tick: u64,
    /// What the hub needs to let this instance join rooms (connections only).
    pub(crate) hub: Option<HubCtx>,
    /// The TLS session its connection arrived over, for `switchboard:plugin/tls`.
    pub(crate) tls: Option<TlsSession>,
    /// The granted files' streams, which `blocking-splice` moves into the connection.
    pub(crate) spliceable: Spliceable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// What a new Store is made of.
pub(crate) struct StoreSpec<'a> {
    /// What the plugin may touch.
    pub(crate) grants: &'a Grants,
    /// The plugin's limits.
    pub(crate) limits: &'a Limits,
    /// The pool's memory slot size: no limit can exceed it.
    pub(crate) pool_memory: usize,
    /// The plugin's allowance of log lines for stdout/stderr.
    pub(crate) output: &'a Arc<LogLimiter>,
    /// The span its output lines are logged in.
    pub(crate) span: &'a tracing::Span,
    /// Hub access, for a connection.
    pub(crate) hub: Option<HubCtx>,
    /// The connection's traffic clock, for a connection.
    pub(crate) activity: Option<Arc<Activity>>,
    /// The TLS session of a connection that came over a `tls:` listener.
    pub(crate) tls: Option<TlsSession>,
}

/// A new Store with exactly what `spec.grants` gives: environment, stdio (log lines by
/// default), at most one directory as `/`; never the network. Memory and CPU limited by
/// `spec.limits`; yielding at every epoch tick.
pub(crate) fn new_store(engine: &Engine, spec: StoreSpec<'_>) -> std::io::Result<Store<State>> {
    let state = State {
        wasi: wasi_ctx(spec.grants, spec.output, spec.span)?.build(),
        table: resource_table(),
        memory: MemoryLimiter::new(spec.limits.memory.min(spec.pool_memory)),
        cpu: Arc::new(CpuMeter::default()),
        limit_hit: None,
        activity: spec.activity,
        bytes_at_last_tick: 0,
        hub: spec.hub,
        tls: spec.tls,
        spliceable: Spliceable::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.memory);
    store.call_hook(|ctx, hook| {
        let state = ctx.data();
        state.cpu.hook(hook, || state.activity.as_ref().map_or(0, |a| a.bytes()));
        Ok(())
    });
    store.set_epoch_deadline(1);
    let budget = spec.limits.cpu_budget;
    store.epoch_deadline_callback(move |mut ctx| at_epoch(ctx.data_mut(), budget));
    Ok(store)
}

/// Most resources (streams, pollables, hub members, files…) one instance may hold at once:
/// a plugin that leaks handles traps at this many instead of growing the host.
pub(crate) const MAX_RESOURCES: usize = 1024;

/// An empty resource table holding at most [`MAX_RESOURCES`].
fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    table
}

/// The WASI context `grants` describe.
fn wasi_ctx(grants: &Grants, output: &Arc<LogLimiter>, span: &tracing::Span) -> std::io::Result<WasiCtxBuilder> {
    let mut wasi = WasiCtx::builder();
    wasi.envs(&grants.env).allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    match grants.stdio {
        Stdio::Log => {
            let out = |channel| LogOutput::new(channel, output.clone(), span.clone());
            wasi.stdout(out(Channel::Stdout)).stderr(out(Channel::Stderr));
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
    Ok(wasi)
}

/// What happens at every epoch tick that finds the guest running: the CPU budget is
/// enforced, the connection counts as active, the lanes decide, and the guest yields.
fn at_epoch(state: &mut State, budget: Option<Duration>) -> wasmtime::Result<UpdateDeadline> {
    let (used, running) = (state.cpu.used(), state.cpu.running());
    if let Some(budget) = budget
        && used >= budget
    {
        state.limit_hit = Some(LimitHit::Cpu);
        wasmtime::bail!("the plugin used its CPU budget of {budget:?}");
    }
    // A running plugin is not idle.
    let bytes = state.activity.as_ref().map_or(0, |activity| {
        activity.touch();
        activity.bytes()
    });
    let moved_bytes = bytes != std::mem::replace(&mut state.bytes_at_last_tick, bytes);
    let cpu = state.cpu.clone();
    let tick = lane::at_tick(running, cpu.running_cpu(), moved_bytes);
    cpu.watch_closely(tick.watch);
    if tick.promote {
        lane::promote();
    }
    if !tick.yields {
        // Resumed just now after a wait: the tick came while it was suspended.
        return Ok(UpdateDeadline::Continue(1));
    }
    Ok(UpdateDeadline::YieldCustom(1, yield_charged(cpu, state.activity.clone())))
}

/// How a running guest yields at an epoch tick: through `tokio::task::yield_now`, which
/// lets the I/O driver run before the guest resumes (a plain wake would re-poll it at
/// once, and network events would wait many slices).
///
/// The time until it runs again is charged to its CPU budget: it was running through
/// the slice, so it was ready to run all along (a guest that just woke up does not yield:
/// see [`lane::Tick::yields`], so waiting for I/O is never charged). On an idle
/// machine that is next to nothing; when low-priority (heavy-lane) threads get no CPU
/// because others keep every core busy, it is what lets a spinning plugin still reach
/// its budget in about that much wall time.
///
/// While it waits, its connection's `activity` knows it is not idle.
fn yield_charged(cpu: Arc<CpuMeter>, activity: Option<Arc<Activity>>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let started = coarse_clock();
        let waiting = activity.as_ref().map(Activity::yielded);
        tokio::task::yield_now().await;
        drop(waiting);
        cpu.charge(Duration::from_nanos(coarse_clock().saturating_sub(started)));
    })
}
