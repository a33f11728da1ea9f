//! [`State`]: what one plugin instance's `Store` holds.

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::closer::Closer;
use crate::hub::Hub;

/// The data of one `Store`: one connection (or one `describe()` call).
pub struct State {
    /// The WASI context: environment from settings, stdout/stderr to the log, nothing else.
    pub wasi: WasiCtx,
    /// Resources handed to the guest (streams, pollables, hub members).
    pub table: ResourceTable,
    /// Memory and instance limits enforced by wasmtime.
    pub limits: StoreLimits,
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
