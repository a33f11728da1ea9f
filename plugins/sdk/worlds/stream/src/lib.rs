//! Bindings for the `tls-stream-plugin` world: stream-plugin's exports, its imports and
//! `tls` (all shared with `switchboard-world-full`).
#![allow(missing_docs)]
wit_bindgen::generate!({
    path: "../../../../wit",
    world: "tls-stream-plugin",
    with: {
        "switchboard:plugin/types@0.1.2": switchboard_world_full::switchboard::plugin::types,
        "switchboard:plugin/hub@0.1.2": switchboard_world_full::switchboard::plugin::hub,
        "switchboard:plugin/tls@0.1.2": switchboard_world_full::switchboard::plugin::tls,
        "wasi:io/poll@0.2.12": switchboard_world_full::wasi::io::poll,
        "wasi:io/streams@0.2.12": switchboard_world_full::wasi::io::streams,
        "wasi:io/error@0.2.12": switchboard_world_full::wasi::io::error,
    },
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "switchboard_sdk::worlds::stream",
});
