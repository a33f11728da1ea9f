//! Bindings for the `datagram-plugin` world (imports shared with `switchboard-world-full`).
#![allow(missing_docs)]
wit_bindgen::generate!({
    path: "../../../../wit",
    world: "datagram-plugin",
    with: {
        "switchboard:plugin/types@0.1.2": switchboard_world_full::switchboard::plugin::types,
    },
    pub_export_macro: true,
    export_macro_name: "export_world",
    default_bindings_module: "switchboard_sdk::worlds::datagram",
});
