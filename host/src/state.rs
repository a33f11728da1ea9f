//! [`State`]: what one plugin instance's `Store` holds.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::closer::Closer;
use crate::cpu::CpuMeter;
use crate::hub::Hub;
use crate::limits::{Activity, LimitHit, MemoryLimiter};

/// The data of one `Store`: one connection (or one `describe()` call).
pub struct State {
    /// The WASI context: environment from settings, stdout/stderr to the log, nothing else.
    pub wasi: WasiCtx,
    /// Resources handed to the guest (streams, pollables, hub members).
    pub table: ResourceTable,
    /// Enforces the memory limit and notes when it was hit.
    pub memory: MemoryLimiter,
    /// Time the plugin has spent running.
    pub cpu: Arc<CpuMeter>,
    /// The limit that ended the instance, if one did (set by the CPU check).
    pub limit_hit: Option<LimitHit>,
    /// The connection's traffic clock: a plugin that is running is not idle, so every
    /// epoch tick it runs through counts as activity.
    pub activity: Option<Arc<Activity>>,
    /// Bytes the connection had moved at the previous epoch tick that found the plugin
    /// running (see [`crate::lane::at_tick`]).
    pub bytes_at_last_tick: u64,
    /// The rooms this instance may join.
    pub hub: Hub,
    /// The peer address: a hub member's initial name.
    pub peer: String,
    /// Ends this connection gracefully (used by the hub to drop members that fall behind).
    pub closer: Closer,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl crate::bindings::switchboard::plugin::types::Host for State {}
