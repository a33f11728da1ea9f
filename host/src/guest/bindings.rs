//! Host-side bindings generated from `wit/switchboard.wit` (world `tls-full-plugin`, the
//! union of all plugin worlds). Each exported interface is looked up on its own
//! (`GuestIndices::new`), so a component may export any of the three worlds.

#![allow(missing_docs)]

use wasmtime::component::HasData;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "tls-full-plugin",
    imports: { default: trappable },
    exports: { default: async },
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::io,
        "switchboard:plugin/hub.member": crate::guest::hub::Member,
    },
});

pub use exports::switchboard::plugin::{datagram_handler, handler, meta};
pub use switchboard::plugin::tls::TlsSession;
pub use switchboard::plugin::types::{ConnectionInfo, PluginInfo, Role, Transport};

/// The `types` interface has no functions: its host side holds nothing.
pub(crate) struct TypesHost;

impl switchboard::plugin::types::Host for TypesHost {}

/// Names [`TypesHost`] as the data the `types` bindings are added to the linker with.
pub(crate) struct TypesAccess;

impl HasData for TypesAccess {
    type Data<'a> = TypesHost;
}
